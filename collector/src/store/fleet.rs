//! Stations as the console's Fleet page lists and changes them.

/// One enrolled, unrevoked station.
#[derive(Debug, Clone)]
pub struct Station {
    pub agent_id: String,
    pub station: String,
    pub grp: String,
    pub last_seen_ms: Option<i64>,
    pub agent_version: String,
    pub rules_version: i64,
    pub spool_backlog: i64,
    pub spool_dropped: i64,
    pub flag: String,
    /// Quiet for longer than the school allows (worked out by the caller).
    pub silent: bool,
    /// What the agent's last heartbeat reported wrong with it, one per line.
    pub problems: String,
    /// The school the station is enrolled in (its times show in its zone).
    pub school: String,
}

/// What the console does to a station.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StationChange {
    ClearFlag,
    Revoke,
}

/// An enrolled agent as `agents list` shows it, revoked ones included.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub agent_id: String,
    pub station: String,
    pub grp: String,
    pub revoked: bool,
    pub last_seq: i64,
    /// 0 before its first heartbeat.
    pub last_seen_ms: i64,
    pub flag: String,
    pub problems: String,
}

/// A recorded sequence gap: events `from_seq..=to_seq` of `agent_id` were
/// numbered but never delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub agent_id: String,
    pub from_seq: i64,
    pub to_seq: i64,
}

/// Which of a revoked identity's re-keyed descendants go with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Refuse when there are descendants (the caller must choose).
    Ask,
    /// The identity and everything re-keyed from it.
    WithDescendants,
    /// The identity alone.
    Only,
}

/// What a family revocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// These identities were revoked (the first is the one asked for).
    Done(Vec<String>),
    /// Nothing changed: the identity has these descendants and the caller
    /// did not say whether they go too.
    HasDescendants(Vec<String>),
    /// Nothing changed: no such agent.
    NoAgent,
}

/// A fleet listing row, read by column position, from either database:
/// each backend implements it for its own row type, so both map rows to
/// [`Station`] and [`Enrolled`] through the same functions.
pub(crate) trait ListingRow {
    type Error;
    fn text(&self, column: usize) -> Result<String, Self::Error>;
    fn int(&self, column: usize) -> Result<i64, Self::Error>;
    fn maybe_int(&self, column: usize) -> Result<Option<i64>, Self::Error>;
    fn flag(&self, column: usize) -> Result<bool, Self::Error>;
}

/// The columns [`Station::from_row`] reads, in order.
pub(crate) const STATION_COLUMNS: &str =
    "agent_id, station, grp, last_seen_ms, agent_version, rules_version,
     spool_backlog, spool_dropped, COALESCE(flag, ''), problems, school";

/// The columns [`Enrolled::from_row`] reads, in order.
pub(crate) const ENROLLED_COLUMNS: &str =
    "agent_id, station, grp, revoked, last_seq, COALESCE(last_seen_ms, 0),
     COALESCE(flag, ''), problems";

impl Station {
    /// A station from a row of [`STATION_COLUMNS`] (not yet judged silent).
    pub(crate) fn from_row<R: ListingRow>(r: &R) -> Result<Self, R::Error> {
        Ok(Station {
            agent_id: r.text(0)?,
            station: r.text(1)?,
            grp: r.text(2)?,
            last_seen_ms: r.maybe_int(3)?,
            agent_version: r.text(4)?,
            rules_version: r.int(5)?,
            spool_backlog: r.int(6)?,
            spool_dropped: r.int(7)?,
            flag: r.text(8)?,
            silent: false,
            problems: r.text(9)?,
            school: r.text(10)?,
        })
    }
}

impl Enrolled {
    /// An enrolled agent from a row of [`ENROLLED_COLUMNS`].
    pub(crate) fn from_row<R: ListingRow>(r: &R) -> Result<Self, R::Error> {
        Ok(Enrolled {
            agent_id: r.text(0)?,
            station: r.text(1)?,
            grp: r.text(2)?,
            revoked: r.flag(3)?,
            last_seq: r.int(4)?,
            last_seen_ms: r.int(5)?,
            flag: r.text(6)?,
            problems: r.text(7)?,
        })
    }
}
