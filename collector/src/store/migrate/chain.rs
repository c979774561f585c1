//! Each agent's event hash chain, summarised the same way from either
//! backend: every stored body still hashes to its stored hash, every event
//! ingest accepted as following the one before still does, and a digest of
//! the whole sequence (seq, body hash, signature, verdict) that must be
//! equal on both sides.

use prost::Message;
use tutela_proto::v1::EventBody;

/// One stored event, as the chain check reads it.
#[derive(Debug)]
pub struct EventRow {
    pub agent_id: String,
    pub seq: i64,
    pub body: Vec<u8>,
    pub body_hash: Vec<u8>,
    pub signature: Vec<u8>,
    pub chain_ok: bool,
}

/// What one agent's chain comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub events: u64,
    pub first_seq: i64,
    pub last_seq: i64,
    pub digest: Vec<u8>,
}

/// Walks one backend's events, agent by agent, each in seq order.
#[derive(Default)]
pub struct Walk {
    done: std::collections::BTreeMap<String, Summary>,
    current: Option<(String, Current)>,
}

struct Current {
    events: u64,
    first_seq: i64,
    last_seq: i64,
    last_hash: Vec<u8>,
    digest: ring::digest::Context,
}

/// A chain that does not hold: the agent and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub agent_id: String,
    pub what: String,
}

impl Walk {
    /// Takes the next event (rows ordered by agent, then seq).
    pub fn next(&mut self, row: EventRow) -> Result<(), Broken> {
        let broken = |what: String| Broken {
            agent_id: row.agent_id.clone(),
            what,
        };
        if ring::digest::digest(&ring::digest::SHA256, &row.body).as_ref() != row.body_hash {
            return Err(broken(format!(
                "event {} no longer matches its stored hash",
                row.seq
            )));
        }
        let body = EventBody::decode(row.body.as_slice())
            .map_err(|_| broken(format!("event {}'s signed body does not decode", row.seq)))?;
        if body.seq as i64 != row.seq || body.agent_id != row.agent_id {
            return Err(broken(format!(
                "event {} is stored under another agent or number than it was signed with",
                row.seq
            )));
        }
        if self.current.as_ref().map(|(a, _)| a) != Some(&row.agent_id) {
            self.finish_current();
            self.current = Some((
                row.agent_id.clone(),
                Current {
                    events: 0,
                    first_seq: row.seq,
                    last_seq: 0,
                    last_hash: Vec::new(),
                    digest: ring::digest::Context::new(&ring::digest::SHA256),
                },
            ));
        }
        let (_, c) = self.current.as_mut().expect("set above");
        if c.events > 0 && row.seq <= c.last_seq {
            return Err(broken(format!("event {} is stored twice", row.seq)));
        }
        // The same link ingest checked: an event that follows the one
        // before names its hash. Accepted links must still hold.
        if c.events > 0
            && row.seq == c.last_seq + 1
            && row.chain_ok
            && body.prev_hash != c.last_hash
        {
            return Err(broken(format!(
                "event {} no longer follows from event {}",
                row.seq, c.last_seq
            )));
        }
        c.digest.update(&row.seq.to_be_bytes());
        c.digest.update(&row.body_hash);
        c.digest.update(&(row.signature.len() as u64).to_be_bytes());
        c.digest.update(&row.signature);
        c.digest.update(&[u8::from(row.chain_ok)]);
        c.events += 1;
        c.last_seq = row.seq;
        c.last_hash = row.body_hash;
        Ok(())
    }

    fn finish_current(&mut self) {
        if let Some((agent, c)) = self.current.take() {
            self.done.insert(
                agent,
                Summary {
                    events: c.events,
                    first_seq: c.first_seq,
                    last_seq: c.last_seq,
                    digest: c.digest.finish().as_ref().to_vec(),
                },
            );
        }
    }

    /// Every agent's summary.
    pub fn finish(mut self) -> std::collections::BTreeMap<String, Summary> {
        self.finish_current();
        self.done
    }
}

/// The first agent whose chain differs between `source` and `target`, and how.
pub fn compare(
    source: &std::collections::BTreeMap<String, Summary>,
    target: &std::collections::BTreeMap<String, Summary>,
) -> Result<(), Broken> {
    for (agent, s) in source {
        match target.get(agent) {
            None => {
                return Err(Broken {
                    agent_id: agent.clone(),
                    what: "its events are missing in PostgreSQL".into(),
                })
            }
            Some(t) if t != s => {
                return Err(Broken {
                    agent_id: agent.clone(),
                    what: format!(
                        "SQLite has {} events (seq {}..{}), PostgreSQL {} (seq {}..{}){}",
                        s.events,
                        s.first_seq,
                        s.last_seq,
                        t.events,
                        t.first_seq,
                        t.last_seq,
                        if t.events == s.events {
                            ", with different contents"
                        } else {
                            ""
                        }
                    ),
                })
            }
            Some(_) => {}
        }
    }
    if let Some(agent) = target.keys().find(|a| !source.contains_key(*a)) {
        return Err(Broken {
            agent_id: agent.clone(),
            what: "PostgreSQL has events SQLite does not".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Agent `a`'s events 1..=n, each naming the one before.
    fn chain(n: i64) -> Vec<EventRow> {
        let mut prev = vec![0; 32];
        (1..=n)
            .map(|seq| {
                let body = EventBody {
                    agent_id: "a".into(),
                    seq: seq as u64,
                    prev_hash: prev.clone(),
                    ..Default::default()
                }
                .encode_to_vec();
                let hash = ring::digest::digest(&ring::digest::SHA256, &body)
                    .as_ref()
                    .to_vec();
                prev = hash.clone();
                EventRow {
                    agent_id: "a".into(),
                    seq,
                    body,
                    body_hash: hash,
                    signature: vec![seq as u8; 64],
                    chain_ok: true,
                }
            })
            .collect()
    }

    fn walk(rows: Vec<EventRow>) -> Result<BTreeMap<String, Summary>, Broken> {
        let mut walk = Walk::default();
        for row in rows {
            walk.next(row)?;
        }
        Ok(walk.finish())
    }

    use std::collections::BTreeMap;

    #[test]
    fn an_intact_chain_summarises_the_same_each_time() {
        let a = walk(chain(5)).unwrap();
        assert_eq!(a["a"].events, 5);
        assert_eq!((a["a"].first_seq, a["a"].last_seq), (1, 5));
        assert_eq!(compare(&a, &walk(chain(5)).unwrap()), Ok(()));
    }

    #[test]
    fn a_changed_signature_or_a_missing_event_is_a_difference() {
        let source = walk(chain(4)).unwrap();
        let mut rows = chain(4);
        rows[2].signature[0] ^= 1;
        let e = compare(&source, &walk(rows).unwrap()).unwrap_err();
        assert!(e.what.contains("different contents"), "{}", e.what);
        let mut rows = chain(4);
        rows.remove(3);
        let e = compare(&source, &walk(rows).unwrap()).unwrap_err();
        assert!(e.what.contains("SQLite has 4 events"), "{}", e.what);
        assert_eq!(e.agent_id, "a");
    }

    #[test]
    fn an_edited_body_or_a_broken_accepted_link_is_refused() {
        let mut rows = chain(3);
        rows[1].body.push(0);
        let e = walk(rows).unwrap_err();
        assert!(e.what.contains("event 2 no longer matches"), "{}", e.what);

        // Event 3 re-signed over a different event 2: its link no longer holds.
        let mut rows = chain(3);
        let other = chain(3);
        rows[2] = EventRow {
            body: EventBody {
                agent_id: "a".into(),
                seq: 3,
                prev_hash: vec![7; 32],
                ..Default::default()
            }
            .encode_to_vec(),
            ..other.into_iter().nth(2).unwrap()
        };
        rows[2].body_hash = ring::digest::digest(&ring::digest::SHA256, &rows[2].body)
            .as_ref()
            .to_vec();
        let e = walk(rows).unwrap_err();
        assert!(
            e.what.contains("event 3 no longer follows from event 2"),
            "{}",
            e.what
        );

        // Ingest recorded the same break (chain_ok false): kept as it was.
        let mut rows = chain(3);
        rows[2].body = EventBody {
            agent_id: "a".into(),
            seq: 3,
            prev_hash: vec![7; 32],
            ..Default::default()
        }
        .encode_to_vec();
        rows[2].body_hash = ring::digest::digest(&ring::digest::SHA256, &rows[2].body)
            .as_ref()
            .to_vec();
        rows[2].chain_ok = false;
        assert!(walk(rows).is_ok());
    }
}
