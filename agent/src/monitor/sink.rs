//! Where sealed events go: the spool, with the uplink woken on each append.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::event::EventDraft;
use crate::identity::Identity;
use crate::spool::Spool;

/// Where sealed events go.
#[derive(Clone)]
pub struct EventSink {
    pub identity: Arc<Identity>,
    pub spool: Arc<Mutex<Spool>>,
    pub appended: Arc<Notify>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSink")
    }
}

impl EventSink {
    pub fn append(&self, draft: EventDraft) {
        let result = self
            .spool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(&self.identity, draft);
        match result {
            Ok(seq) => {
                tracing::debug!(seq, "event spooled");
                self.appended.notify_one();
            }
            Err(e) => {
                // Counted, so the next event spooled reports it as dropped.
                self.spool
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .count_lost();
                tracing::error!(error = %e, "could not spool an event; it is lost and counted as dropped");
            }
        }
    }
}
