//! Size limits of the protocol, shared by agents (which cut what they send to
//! fit) and the collector (which refuses anything over them).

/// Default limit for a capture carried by one event (2 MiB).
pub const DEFAULT_MAX_CAPTURE_BYTES: usize = 2 * 1024 * 1024;
/// Default limit for the signed body of one event (64 KiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest free-text observation field (context, program name and path,
/// window title, URL, search query), in bytes.
pub const MAX_FIELD_BYTES: usize = 2048;
/// Longest rule id, category or term of a match, login or station name, and
/// capture MIME type, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest event id, `repeat_of` and agent id, in bytes.
pub const MAX_ID_BYTES: usize = 64;
/// Most matches one event carries.
pub const MAX_MATCHES: usize = 32;
/// Largest signed heartbeat body, in bytes.
pub const MAX_HEARTBEAT_BYTES: usize = DEFAULT_MAX_BODY_BYTES;
/// Largest signed subscription body, in bytes.
pub const MAX_SUBSCRIBE_BYTES: usize = 4096;
/// How far a heartbeat's `time_ms` may be from the collector's clock, either
/// way, before it is refused as stale (10 minutes).
pub const HEARTBEAT_WINDOW_MS: i64 = 10 * 60_000;
/// How far a re-key request's `time_ms` may be from the collector's clock.
pub const REKEY_WINDOW_MS: i64 = 10 * 60_000;
/// Longest monitoring notice text, in characters (what the console accepts).
pub const MAX_NOTICE_CHARS: usize = 4000;
/// Longest monitoring notice text, in bytes (what an agent accepts).
pub const MAX_NOTICE_TEXT_BYTES: usize = 16 * 1024;
/// Longest 'Report a concern' address in a notice, in bytes.
pub const MAX_NOTICE_URL_BYTES: usize = 512;
/// Largest signed notice acknowledgement body, in bytes.
pub const MAX_NOTICE_ACK_BYTES: usize = 4096;
/// Most problems a heartbeat's `problems` carries that the collector keeps.
pub const MAX_AGENT_PROBLEMS: usize = 8;
