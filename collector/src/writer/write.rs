//! Other writes through the single writer (heartbeats, enrolments): each
//! runs in a savepoint of the writer's next transaction and is answered once
//! that transaction has committed.

use rusqlite::Connection;
use tokio::sync::oneshot;
use tonic::Status;

use super::{Job, Writer};

/// A write handed to the writer: runs on the writer's connection inside the
/// batch's transaction, and returns what to do once that has committed (or not).
pub(super) type Write = Box<dyn FnOnce(&Connection) -> Delivery + Send>;
/// Delivers a write's result: given `Ok` when the batch committed, else the failure.
pub(super) type Delivery = Box<dyn FnOnce(Result<(), Status>) + Send>;

impl Writer {
    /// Runs `f` on the writer's connection, in a savepoint of the writer's
    /// next transaction, and returns its result once that transaction has
    /// committed. When `f` returns an error, what it wrote is undone (alone).
    /// `what` names the write in logs and messages. `f` must be quick:
    /// every event of the batch waits for it.
    pub async fn write<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Connection) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let (tx, rx) = oneshot::channel::<Result<T, Status>>();
        let job: Write = Box::new(move |conn: &Connection| -> Delivery {
            let result = in_savepoint(conn, what, f);
            Box::new(move |committed: Result<(), Status>| {
                let _ = tx.send(committed.and(result));
            })
        });
        self.tx
            .send(Job::Write(job))
            .await
            .map_err(|_| Status::unavailable("the collector's writer has stopped; retry later"))?;
        // Dropped unrun: the batch's transaction could not begin.
        rx.await.map_err(|_| {
            Status::unavailable(format!(
                "the collector could not store the {what}; retry later"
            ))
        })?
    }
}

/// Runs a write in a savepoint: undone alone when it fails or panics.
fn in_savepoint<T>(
    conn: &Connection,
    what: &'static str,
    f: impl FnOnce(&Connection) -> Result<T, Status>,
) -> Result<T, Status> {
    let failed = store_failed(what);
    conn.execute_batch("SAVEPOINT write").map_err(failed)?;
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn))).unwrap_or_else(|_| {
            tracing::error!(write = what, "store write panicked");
            Err(Status::internal(format!(
                "the collector failed storing the {what}; retry later"
            )))
        });
    let end = if result.is_ok() {
        "RELEASE write"
    } else {
        "ROLLBACK TO write; RELEASE write"
    };
    conn.execute_batch(end).map_err(failed)?;
    result
}

/// What a store error in a write is told as, after logging it.
pub fn store_failed(what: &'static str) -> impl Fn(rusqlite::Error) -> Status + Copy {
    move |e| {
        tracing::error!(write = what, error = %e, "store write failed");
        Status::unavailable(format!(
            "the collector could not store the {what}; retry later"
        ))
    }
}
