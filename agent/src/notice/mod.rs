//! The school's monitoring notice and acceptable use policy, shown to the
//! pupil at session start in a window they must acknowledge.
//!
//! The collector sends the notice of this device's group on the rules stream,
//! signed with its bundle key; it is applied only when it verifies, is for
//! this group and was issued no earlier than the one held (its `issue`, or
//! its version from an older collector), and is kept on disk (signed bytes,
//! checked again on load) so the next session shows it before the collector
//! is reached. It is shown at start (every sign-in, or once per pupil and
//! version, as the school chose) and again when another version arrives: a
//! newer one, or an older-numbered one the collector issued again for a
//! device moved to another school. The same version issued again is kept
//! but not shown again. Each acknowledgement is signed with the agent's key and kept in a
//! small queue on disk until the collector has it.

mod acks;
#[cfg(windows)]
mod window_windows;
#[cfg(target_os = "linux")]
mod window_x11;

pub use acks::Acknowledger;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use prost::Message;
use ring::signature::{UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tutela_proto::limits::{MAX_NOTICE_TEXT_BYTES, MAX_NOTICE_URL_BYTES};
use tutela_proto::v1::{Notice, NoticeMode, SignedNotice, SignedNoticeAck};

use crate::identity::write_private;

const NOTICE_FILE: &str = "notice.toml";
const SEEN_FILE: &str = "notice-seen.toml";
/// Most (pupil, version) pairs remembered for once-per-version notices.
const MAX_SEEN: usize = 5000;

/// Why a notice from the collector was refused; the one held stays in force.
#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    #[error("the notice's signature does not verify against the collector's bundle key")]
    BadSignature,
    #[error("the notice is not a valid tutela.v1.Notice")]
    Malformed,
    #[error("the notice is for group {offered:?}, not this device's group {own:?}")]
    OtherGroup { offered: String, own: String },
    #[error("the notice was issued before the one held (issue {offered}, held {held}): a replayed notice")]
    Older { offered: u64, held: u64 },
    #[error("the notice's text or address is over its limit")]
    TooLong,
}

/// What accepting a notice from the collector did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The very notice held: nothing changed.
    Unchanged,
    /// The version held, issued again (for a device moved in): kept, and
    /// not shown again.
    Reissued,
    /// Another version: kept and shown.
    Shown,
}

/// Where `notice` stands in its group's order of issue (see [`Notice::issue_order`]).
pub fn issue_of(notice: &Notice) -> u64 {
    notice.issue_order()
}

/// What the window shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub text: String,
    pub concern_url: String,
    pub version: u32,
}

/// Why the window could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum DisplayError {
    #[error("no desktop to show the notice on: {0}")]
    NoDisplay(String),
    #[error("showing the notice failed: {0}")]
    Failed(String),
}

/// Shows `text` in the notice's window and blocks until it is closed (used
/// to tell the pupil why 'Report a concern' could not open).
pub fn show_message(text: &str) -> Result<(), DisplayError> {
    show_blocking(&Shown {
        text: text.to_owned(),
        concern_url: String::new(),
        version: 0,
    })
}

/// Shows the notice and blocks until the pupil acknowledges it.
fn show_blocking(shown: &Shown) -> Result<(), DisplayError> {
    #[cfg(target_os = "linux")]
    return window_x11::show(shown);
    #[cfg(windows)]
    return window_windows::show(shown);
    #[cfg(not(any(target_os = "linux", windows)))]
    {
        let _ = shown;
        Err(DisplayError::NoDisplay(
            "this platform has no notice window yet".into(),
        ))
    }
}

/// Signed bytes as kept on disk, hex-encoded.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Signed {
    body: String,
    signature: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Seen {
    /// `group`, `version` and `user`, acknowledged on this station.
    #[serde(default)]
    seen: Vec<(String, u32, String)>,
}

#[derive(Debug, Default)]
struct Held {
    notice: Option<Notice>,
    /// SHA-256 of the held notice's body bytes, as signed.
    sha256: Vec<u8>,
}

/// The notice this agent holds and its acknowledgements.
#[derive(Clone)]
pub struct Notices {
    dir: PathBuf,
    /// This device's group (changed by a signed group assignment).
    group: Arc<Mutex<String>>,
    key: Vec<u8>,
    held: Arc<Mutex<Held>>,
    /// Signalled when a newer version is applied.
    changed: Arc<Notify>,
    /// Signalled when an acknowledgement is queued.
    queued: Arc<Notify>,
    /// Serialises the queue file's read-modify-write.
    files: Arc<Mutex<()>>,
    /// Where the notice's 'Report a concern' address is published for the
    /// pupil's desktop entry (see [`crate::concern`]).
    concern_link: Option<PathBuf>,
}

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notices")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_toml<T: for<'de> Deserialize<'de> + Default>(path: &Path) -> T {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| toml::from_str(&t).ok())
        .unwrap_or_default()
}

fn write_toml<T: Serialize>(path: &Path, value: &T) {
    match toml::to_string(value) {
        Ok(text) => {
            if let Err(e) = write_private(path, text.as_bytes()) {
                tracing::warn!(file = %path.display(), error = %e, "cannot keep the notice state on disk");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot encode the notice state"),
    }
}

impl Notices {
    /// Loads the saved notice for `group` from `dir`, checking its signature
    /// with `bundle_key` (none if absent or if it does not verify).
    pub fn load(dir: &Path, group: &str, bundle_key: &[u8]) -> Self {
        let this = Self {
            dir: dir.to_owned(),
            group: Arc::new(Mutex::new(group.to_owned())),
            key: bundle_key.to_vec(),
            held: Arc::default(),
            changed: Arc::default(),
            queued: Arc::default(),
            files: Arc::default(),
            concern_link: None,
        };
        let saved: Signed = read_toml(&dir.join(NOTICE_FILE));
        let signed = hex::decode(&saved.body)
            .ok()
            .zip(hex::decode(&saved.signature).ok());
        if let Some((body, signature)) = signed.filter(|(b, _)| !b.is_empty()) {
            match this.check(&SignedNotice { body, signature }) {
                Ok((notice, sha)) => {
                    *lock(&this.held) = Held {
                        notice: Some(notice),
                        sha256: sha,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring the saved notice; the collector sends it again")
                }
            }
        }
        this
    }

    /// The device moved to `group`: the notice held (the old group's) is
    /// dropped, and the new group's is accepted (and shown) from now.
    pub fn move_to(&self, group: &str) {
        *lock(&self.group) = group.to_owned();
        *lock(&self.held) = Held::default();
        let _ = std::fs::remove_file(self.dir.join(NOTICE_FILE));
        tracing::info!(group, "the monitoring notice now follows the new group");
    }

    /// Publishes the held notice's 'Report a concern' address at `file`, now
    /// and whenever a new notice is applied.
    pub fn publish_concern_link(mut self, file: PathBuf) -> Self {
        let url = lock(&self.held)
            .notice
            .as_ref()
            .map(|n| n.concern_url.clone())
            .unwrap_or_default();
        crate::concern::publish(&file, &url);
        self.concern_link = Some(file);
        self
    }

    fn check(&self, signed: &SignedNotice) -> Result<(Notice, Vec<u8>), NoticeError> {
        UnparsedPublicKey::new(&ED25519, &self.key)
            .verify(
                &tutela_proto::notice_message(&signed.body),
                &signed.signature,
            )
            .map_err(|_| NoticeError::BadSignature)?;
        let notice = Notice::decode(signed.body.as_slice()).map_err(|_| NoticeError::Malformed)?;
        let own = lock(&self.group).clone();
        if own.is_empty() || notice.group != own {
            return Err(NoticeError::OtherGroup {
                offered: notice.group,
                own,
            });
        }
        if notice.text.len() > MAX_NOTICE_TEXT_BYTES
            || notice.concern_url.len() > MAX_NOTICE_URL_BYTES
        {
            return Err(NoticeError::TooLong);
        }
        let held = lock(&self.held).notice.as_ref().map_or(0, issue_of);
        if issue_of(&notice) < held {
            return Err(NoticeError::Older {
                offered: issue_of(&notice),
                held,
            });
        }
        let sha = ring::digest::digest(&ring::digest::SHA256, &signed.body)
            .as_ref()
            .to_vec();
        Ok((notice, sha))
    }

    /// Applies a notice the collector sent, if it verifies and was issued
    /// no earlier than the one held: it is kept on disk and, when it is
    /// another version (versions count up per group across the trust and
    /// its schools, so a version names one text), shown. A refused notice
    /// leaves the held one.
    pub fn accept(&self, signed: SignedNotice) -> Result<Applied, NoticeError> {
        let (notice, sha) = self.check(&signed)?;
        let mut held = lock(&self.held);
        if held.sha256 == sha {
            return Ok(Applied::Unchanged);
        }
        let applied = match &held.notice {
            Some(n) if n.version == notice.version => Applied::Reissued,
            _ => Applied::Shown,
        };
        tracing::info!(
            version = notice.version,
            issue = issue_of(&notice),
            ?applied,
            "monitoring notice received"
        );
        if let Some(file) = &self.concern_link {
            crate::concern::publish(file, &notice.concern_url);
        }
        *held = Held {
            notice: Some(notice),
            sha256: sha,
        };
        drop(held);
        write_toml(
            &self.dir.join(NOTICE_FILE),
            &Signed {
                body: hex::encode(&signed.body),
                signature: hex::encode(&signed.signature),
            },
        );
        if applied == Applied::Shown {
            self.changed.notify_one();
        }
        Ok(applied)
    }

    /// The notice held, as its window shows it (none before the first).
    pub fn held(&self) -> Option<Shown> {
        lock(&self.held).notice.as_ref().map(|n| Shown {
            text: n.text.clone(),
            concern_url: n.concern_url.clone(),
            version: n.version,
        })
    }

    /// Whether the held notice is to be shown to `user` now (at session
    /// start when `session_start`): see [`Self::show`].
    pub fn due_for(&self, user: &str, session_start: bool) -> bool {
        self.due(user, session_start).is_some()
    }

    /// Signs `user`'s acknowledgement of the held notice with `ackr` and
    /// remembers it as the window does (the window aside, for tests and
    /// tools): the signed acknowledgement, none when nothing is held.
    pub fn acknowledge(&self, ackr: &Acknowledger) -> Option<SignedNoticeAck> {
        let (notice, sha) = {
            let held = lock(&self.held);
            (held.notice.clone()?, held.sha256.clone())
        };
        self.remember(&notice.group, notice.version, &ackr.user);
        Some(ackr.sign(&notice, sha))
    }

    /// The notice held, if it is to be shown to `user` now: any non-empty
    /// notice at session start in every-sign-in mode; otherwise one whose
    /// version `user` has not acknowledged on this station.
    fn due(&self, user: &str, session_start: bool) -> Option<(Notice, Vec<u8>)> {
        let held = lock(&self.held);
        let notice = held.notice.clone().filter(|n| !n.text.trim().is_empty())?;
        let every = notice.mode != NoticeMode::OncePerVersion as i32;
        if every && session_start {
            return Some((notice, held.sha256.clone()));
        }
        let seen: Seen = read_toml(&self.dir.join(SEEN_FILE));
        let acknowledged = seen
            .seen
            .iter()
            .any(|(g, v, u)| g == &notice.group && *v == notice.version && u == user);
        (!acknowledged).then(|| (notice, held.sha256.clone()))
    }

    fn remember(&self, group: &str, version: u32, user: &str) {
        let _guard = lock(&self.files);
        let path = self.dir.join(SEEN_FILE);
        let mut seen: Seen = read_toml(&path);
        seen.seen
            .retain(|(g, v, u)| !(g == group && u == user && *v <= version));
        seen.seen.push((group.to_owned(), version, user.to_owned()));
        let excess = seen.seen.len().saturating_sub(MAX_SEEN);
        seen.seen.drain(..excess);
        write_toml(&path, &seen);
    }

    /// Shows the notice at session start and whenever a newer version
    /// arrives, for as long as the agent runs. Each acknowledgement is signed
    /// and queued for [`Self::send`].
    pub async fn show(self, ackr: Acknowledger) {
        let mut session_start = true;
        loop {
            if let Some((notice, sha)) = self.due(&ackr.user, session_start) {
                let shown = Shown {
                    text: notice.text.clone(),
                    concern_url: notice.concern_url.clone(),
                    version: notice.version,
                };
                tracing::info!(version = notice.version, "showing the monitoring notice");
                // Its own thread, not a blocking task: a window left open
                // must not hold up the agent's exit when the session ends.
                let (done, answered) = tokio::sync::oneshot::channel();
                let spawned = std::thread::Builder::new()
                    .name("notice-window".into())
                    .spawn(move || {
                        let _ = done.send(show_blocking(&shown));
                    });
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "cannot start the notice window's thread");
                }
                match answered.await {
                    Ok(Ok(())) => {
                        let signed = ackr.sign(&notice, sha);
                        self.remember(&notice.group, notice.version, &ackr.user);
                        self.queue(signed);
                        tracing::info!(version = notice.version, "monitoring notice acknowledged");
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "the monitoring notice could not be shown; it is shown when the next version arrives or the agent starts again");
                    }
                    Err(_) => tracing::error!("the notice window ended unexpectedly"),
                }
            } else if session_start {
                tracing::info!("no monitoring notice to show at sign-in");
            }
            session_start = false;
            self.changed.notified().await;
        }
    }
}

#[cfg(test)]
mod tests;
