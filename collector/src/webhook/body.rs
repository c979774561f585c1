//! What a webhook message says, in each format. By default: severity, time,
//! the school and a console link per alert, nothing about who or what; the
//! pupil (account and station) and the match (category and matched words)
//! only when the school opts in for that target.

use serde_json::{json, Map, Value};

use super::outbox::AlertFacts;
use crate::config::{WebhookAudience, WebhookFormat, WebhookTarget};
use crate::console::tz::Zone;

/// The most alerts listed in one message; the rest are counted.
pub const MAX_LISTED: usize = 20;

/// What every message is built from.
#[derive(Debug)]
pub struct Batch<'a> {
    pub school: &'a str,
    /// The console's base URL, without a trailing slash.
    pub console: &'a str,
    pub zone: &'a Zone,
    pub alerts: &'a [AlertFacts],
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn title(n: usize) -> String {
    format!(
        "Tutela: {n} urgent alert{} to review",
        if n == 1 { "" } else { "s" }
    )
}

/// The message body for `target`.
pub fn render(target: &WebhookTarget, batch: &Batch<'_>) -> Vec<u8> {
    let value = match target.format {
        WebhookFormat::Json => generic(target, batch),
        WebhookFormat::Teams => teams(target, batch),
        WebhookFormat::Slack => slack(target, batch),
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

fn generic(target: &WebhookTarget, b: &Batch<'_>) -> Value {
    let alerts: Vec<Value> = b
        .alerts
        .iter()
        .take(MAX_LISTED)
        .map(|a| {
            let mut o = Map::new();
            o.insert("id".into(), json!(a.id));
            o.insert("severity".into(), json!(a.severity));
            o.insert("time".into(), json!(rfc3339(a.time_ms)));
            o.insert(
                "link".into(),
                json!(format!("{}/alerts/{}", b.console, a.id)),
            );
            if target.include_pupil {
                o.insert("pupil".into(), json!(a.user));
                o.insert("station".into(), json!(a.station));
            }
            if target.include_match {
                o.insert("category".into(), json!(a.category));
                o.insert("matched".into(), json!(a.term));
            }
            Value::Object(o)
        })
        .collect();
    let mut body = Map::new();
    body.insert("type".into(), json!("tutela.urgent_alerts"));
    if !b.school.is_empty() {
        body.insert("school".into(), json!(b.school));
    }
    body.insert(
        "audience".into(),
        json!(match target.audience {
            WebhookAudience::Pupils => "pupils",
            WebhookAudience::Staff => "staff",
        }),
    );
    body.insert("count".into(), json!(b.alerts.len()));
    body.insert("alerts".into(), Value::Array(alerts));
    body.insert(
        "more".into(),
        json!(b.alerts.len().saturating_sub(MAX_LISTED)),
    );
    body.insert("queue".into(), json!(format!("{}/queue", b.console)));
    Value::Object(body)
}

/// Text from the alert for a chat line (only what the target opted into).
fn details(target: &WebhookTarget, a: &AlertFacts, escape: fn(&str) -> String) -> String {
    let mut out = String::new();
    if target.include_match {
        out.push_str(&format!(
            ", {} (\"{}\")",
            escape(&a.category),
            escape(&a.term)
        ));
    }
    if target.include_pupil {
        out.push_str(&format!(", {} at {}", escape(&a.user), escape(&a.station)));
    }
    out
}

/// Adaptive Card markdown has no escapes: text from alerts is kept from
/// becoming a link (no square brackets) or emphasis (no `*`, `_`, `~`, `` ` ``).
fn teams_escape(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() && !"*_~`".contains(*c))
        .map(|c| match c {
            '[' => '(',
            ']' => ')',
            c => c,
        })
        .collect()
}

/// Slack mrkdwn: `&`, `<` and `>` are its control characters.
fn slack_escape(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn teams(target: &WebhookTarget, b: &Batch<'_>) -> Value {
    let n = b.alerts.len();
    let mut body = vec![json!({
        "type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true, "text": title(n),
    })];
    if !b.school.is_empty() {
        body.push(json!({"type": "TextBlock", "wrap": true, "isSubtle": true, "text": teams_escape(b.school)}));
    }
    let facts: Vec<Value> = b
        .alerts
        .iter()
        .take(MAX_LISTED)
        .map(|a| {
            json!({
                "title": format!("Severity {}", a.severity),
                "value": format!(
                    "{}{}: [alert {}]({}/alerts/{})",
                    b.zone.format(a.time_ms),
                    details(target, a, teams_escape),
                    a.id,
                    b.console,
                    a.id
                ),
            })
        })
        .collect();
    body.push(json!({"type": "FactSet", "facts": facts}));
    let more = n.saturating_sub(MAX_LISTED);
    if more > 0 {
        body.push(json!({"type": "TextBlock", "wrap": true, "text": format!("and {more} more")}));
    }
    body.push(json!({"type": "TextBlock", "wrap": true, "isSubtle": true,
        "text": "Sign in to the console to see the details."}));
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "actions": [{"type": "Action.OpenUrl", "title": "Open the review queue",
                    "url": format!("{}/queue", b.console)}],
            },
        }],
    })
}

fn slack(target: &WebhookTarget, b: &Batch<'_>) -> Value {
    let n = b.alerts.len();
    let mut text = title(n);
    if !b.school.is_empty() {
        text.push_str(&format!(" ({})", slack_escape(b.school)));
    }
    for a in b.alerts.iter().take(MAX_LISTED) {
        text.push_str(&format!(
            "\n• Severity {}, {}{}: <{}/alerts/{}|alert {}>",
            a.severity,
            b.zone.format(a.time_ms),
            details(target, a, slack_escape),
            b.console,
            a.id,
            a.id
        ));
    }
    let more = n.saturating_sub(MAX_LISTED);
    if more > 0 {
        text.push_str(&format!(
            "\n• and {more} more: <{}/queue|the review queue>",
            b.console
        ));
    }
    text.push_str("\nSign in to the console to see the details.");
    json!({ "text": text })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(format: WebhookFormat, opt_in: bool) -> WebhookTarget {
        WebhookTarget {
            name: "t".into(),
            format,
            url: "https://hooks.school.test/x".into(),
            url_file: String::new(),
            url_env: String::new(),
            secret_file: String::new(),
            secret_env: String::new(),
            audience: WebhookAudience::Pupils,
            min_severity: 4,
            include_pupil: opt_in,
            include_match: opt_in,
            school: String::new(),
        }
    }

    #[test]
    fn nothing_about_who_or_what_unless_opted_in_and_alert_text_cannot_make_links() {
        let alerts = vec![AlertFacts {
            id: 7,
            time_ms: 1_765_000_000_000,
            severity: 5,
            category: "self-harm".into(),
            term: "[click](https://evil.test) <https://evil.test|x> *hurt*".into(),
            user: "pupil.dara".into(),
            station: "LAB-07".into(),
        }];
        let zone = Zone::utc();
        let batch = Batch {
            school: "Hill School",
            console: "https://console.school.test",
            zone: &zone,
            alerts: &alerts,
        };
        for format in [
            WebhookFormat::Json,
            WebhookFormat::Teams,
            WebhookFormat::Slack,
        ] {
            let plain = String::from_utf8(render(&target(format, false), &batch)).unwrap();
            for secret in ["pupil.dara", "LAB-07", "self-harm", "evil", "hurt"] {
                assert!(
                    !plain.contains(secret),
                    "{format:?} carries {secret}: {plain}"
                );
            }
            for needed in ["https://console.school.test/alerts/7", "Hill School"] {
                assert!(plain.contains(needed), "{format:?} lacks {needed}: {plain}");
            }
            let opted = String::from_utf8(render(&target(format, true), &batch)).unwrap();
            assert!(
                opted.contains("pupil.dara") && opted.contains("self-harm"),
                "{opted}"
            );
            match format {
                WebhookFormat::Teams => {
                    assert!(
                        opted.contains("(click)(https") && !opted.contains("*hurt"),
                        "{opted}"
                    )
                }
                WebhookFormat::Slack => {
                    assert!(opted.contains("&lt;https://evil.test|x&gt;"), "{opted}")
                }
                WebhookFormat::Json => {}
            }
        }
    }
}
