//! The protocol's limits on an event's content (see `tutela_proto::limits`),
//! enforced at ingest: agents cut what they send to fit, and the collector
//! refuses whatever does not, naming the field and the limit.

use tutela_proto::limits::{MAX_FIELD_BYTES, MAX_ID_BYTES, MAX_MATCHES, MAX_NAME_BYTES};
use tutela_proto::v1::EventBody;

/// Checks every bounded field of `event`; the error names the first one over
/// its limit.
pub fn check_event(event: &EventBody) -> Result<(), String> {
    let within = |what: &str, value: &str, max: usize| -> Result<(), String> {
        if value.len() > max {
            Err(format!(
                "its {what} is {} bytes, over the limit of {max}",
                value.len()
            ))
        } else {
            Ok(())
        }
    };
    within("event id", &event.event_id, MAX_ID_BYTES)?;
    within("repeat_of", &event.repeat_of, MAX_ID_BYTES)?;
    within("user", &event.user, MAX_NAME_BYTES)?;
    within("station", &event.station, MAX_NAME_BYTES)?;
    let context_len = match &event.observation {
        Some(o) => {
            within("context", &o.context, MAX_FIELD_BYTES)?;
            within("app", &o.app, MAX_FIELD_BYTES)?;
            within("app path", &o.app_path, MAX_FIELD_BYTES)?;
            within("window title", &o.window_title, MAX_FIELD_BYTES)?;
            within("URL", &o.url, MAX_FIELD_BYTES)?;
            within("search query", &o.search_query, MAX_FIELD_BYTES)?;
            o.context.len()
        }
        None => 0,
    };
    if event.matches.len() > MAX_MATCHES {
        return Err(format!(
            "it carries {} matches, over the limit of {MAX_MATCHES}",
            event.matches.len()
        ));
    }
    for (i, m) in event.matches.iter().enumerate() {
        within(&format!("match {i}'s rule id"), &m.rule_id, MAX_NAME_BYTES)?;
        within(
            &format!("match {i}'s category"),
            &m.category,
            MAX_NAME_BYTES,
        )?;
        within(&format!("match {i}'s term"), &m.term, MAX_NAME_BYTES)?;
        if m.start > m.end || m.end as usize > context_len {
            return Err(format!(
                "match {i}'s span {}..{} is not within its context of {context_len} bytes",
                m.start, m.end
            ));
        }
    }
    if let Some(c) = &event.capture {
        if c.sha256.len() != 32 {
            return Err(format!(
                "its capture's SHA-256 is {} bytes, not 32",
                c.sha256.len()
            ));
        }
        within("capture MIME type", &c.mime, MAX_NAME_BYTES)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tutela_proto::v1::{Observation, RuleMatch};

    fn event() -> EventBody {
        EventBody {
            event_id: "e".into(),
            observation: Some(Observation {
                context: "a context".into(),
                ..Default::default()
            }),
            matches: vec![RuleMatch {
                end: 9,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn an_event_within_the_limits_passes_and_each_excess_is_named() {
        assert_eq!(check_event(&event()), Ok(()));
        let mut e = event();
        e.matches = vec![RuleMatch::default(); MAX_MATCHES + 1];
        assert!(check_event(&e).unwrap_err().contains("33 matches"));
        let mut e = event();
        e.observation.as_mut().unwrap().url = "u".repeat(MAX_FIELD_BYTES + 1);
        assert!(check_event(&e).unwrap_err().contains("URL"));
        let mut e = event();
        e.station = "s".repeat(MAX_NAME_BYTES + 1);
        assert!(check_event(&e).unwrap_err().contains("station"));
        let mut e = event();
        e.matches[0].end = 10;
        assert!(check_event(&e).unwrap_err().contains("span"));
    }
}
