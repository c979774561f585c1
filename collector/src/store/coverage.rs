//! When each station was last heard from, for the Fleet page's silent
//! stations (the rules of school time are in `coverage`).

use super::{Store, StoreError};

/// An enrolled, unrevoked station and when it was last heard from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    pub agent_id: String,
    pub station: String,
    pub grp: String,
    pub last_seen_ms: Option<i64>,
    pub enrolled_ms: i64,
}

impl Store {
    /// Every unrevoked station, least recently heard from first.
    pub async fn sightings(&self) -> Result<Vec<Sighting>, StoreError> {
        backend!(self, s => super::sqlite::fleet::sightings(&s.conn()), s.sightings().await)
    }
}
