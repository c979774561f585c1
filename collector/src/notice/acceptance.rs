//! Who has and has not accepted a group's monitoring notice: the pupils
//! known on its stations (of every school, or of one) against the current
//! version those stations show.

use rusqlite::Connection;

use super::{current, ensure_schema};
use crate::store::notice::Standing;
use crate::store::{sqlite, Store, StoreError};

/// Who has and has not accepted `group`'s current version.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Acceptance {
    pub group: String,
    pub version: u32,
    pub accepted: Vec<Standing>,
    pub pending: Vec<Standing>,
}

/// Who has and has not accepted `group`'s current version: every pupil
/// who acknowledged any of its notices on a station, and everyone an alert
/// from one of its stations names.
pub fn acceptance(conn: &Connection, group: &str) -> rusqlite::Result<Acceptance> {
    ensure_schema(conn)?;
    let version = current(conn, group)?.map_or(0, |n| n.version);
    Ok(split(
        group,
        version,
        sqlite::notice::standings(conn, group)?,
    ))
}

/// As [`acceptance`], in `store` (either backend).
pub async fn acceptance_in(store: &Store, group: &str) -> Result<Acceptance, StoreError> {
    acceptance_at(store, group, "").await
}

/// As [`acceptance_in`], on the stations of `school` ('' for every
/// school), against the notice they show (their school's, else the
/// trust's).
pub async fn acceptance_at(
    store: &Store,
    group: &str,
    school: &str,
) -> Result<Acceptance, StoreError> {
    let shown = crate::store::notice::shown_at(store.current_notices().await?, school)
        .into_iter()
        .find(|n| n.grp == group);
    let version = shown.as_ref().map_or(0, |n| n.version);
    let notice_school = shown.as_ref().map_or("", |n| n.school.as_str());
    let standings = if school.is_empty() {
        store.notice_standings(group).await?
    } else {
        store
            .notice_standings_at(group, school, notice_school)
            .await?
    };
    Ok(split(group, version, standings))
}

pub(crate) fn split(group: &str, version: u32, standings: Vec<Standing>) -> Acceptance {
    let mut out = Acceptance {
        group: group.to_owned(),
        version,
        ..Acceptance::default()
    };
    for standing in standings {
        if version > 0 && standing.version >= version {
            out.accepted.push(standing);
        } else {
            out.pending.push(standing);
        }
    }
    out
}
