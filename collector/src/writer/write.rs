//! Other writes through the single writer (heartbeats, enrolments): each
//! runs in a savepoint of the writer's next transaction and is answered once
//! that transaction has committed.

use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;
use tokio::sync::oneshot;
use tonic::Status;

use super::{Job, Writer};
use crate::store::{StoreError, Tx};

/// A write handed to the writer: runs in the batch's transaction, and
/// returns what to do once that has committed (or not).
pub(super) type Write =
    Box<dyn for<'t, 'c> FnOnce(&'t mut Tx<'c>) -> LocalBoxFuture<'t, Delivery> + Send>;
/// Delivers a write's result: given `Ok` when the batch committed, else the failure.
pub(super) type Delivery = Box<dyn FnOnce(Result<(), Status>) + Send>;

impl Writer {
    /// Runs `f` in a savepoint of the writer's next transaction, and returns
    /// its result once that transaction has committed. When `f` returns an
    /// error, what it wrote is undone (alone). `what` names the write in logs
    /// and messages. `f` must be quick: every event of the batch waits for it.
    pub async fn write<T, F>(&self, what: &'static str, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: for<'t, 'c> FnOnce(&'t mut Tx<'c>) -> LocalBoxFuture<'t, Result<T, Status>>
            + Send
            + 'static,
    {
        self.write_job(what, None, f).await
    }

    /// [`Writer::write`] for a write that changes `agent_id`'s row (a
    /// heartbeat): the batch locks that row in order with the others.
    pub async fn write_for<T, F>(
        &self,
        agent_id: &str,
        what: &'static str,
        f: F,
    ) -> Result<T, Status>
    where
        T: Send + 'static,
        F: for<'t, 'c> FnOnce(&'t mut Tx<'c>) -> LocalBoxFuture<'t, Result<T, Status>>
            + Send
            + 'static,
    {
        self.write_job(what, Some(agent_id.to_owned()), f).await
    }

    async fn write_job<T, F>(
        &self,
        what: &'static str,
        agent: Option<String>,
        f: F,
    ) -> Result<T, Status>
    where
        T: Send + 'static,
        F: for<'t, 'c> FnOnce(&'t mut Tx<'c>) -> LocalBoxFuture<'t, Result<T, Status>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T, Status>>();
        let job: Write = Box::new(move |tx| {
            async move {
                let result = in_savepoint(tx, what, f).await;
                Box::new(move |committed: Result<(), Status>| {
                    let _ = reply.send(committed.and(result));
                }) as Delivery
            }
            .boxed_local()
        });
        self.tx
            .send(Job::Write(job, agent))
            .await
            .map_err(|_| Status::unavailable("the collector's writer has stopped; retry later"))?;
        // Dropped unrun: the batch's transaction could not begin.
        answer.await.map_err(|_| {
            Status::unavailable(format!(
                "the collector could not store the {what}; retry later"
            ))
        })?
    }
}

/// Runs a write in a savepoint: undone alone when it fails or panics.
async fn in_savepoint<T, F>(tx: &mut Tx<'_>, what: &'static str, f: F) -> Result<T, Status>
where
    F: for<'t, 'c> FnOnce(&'t mut Tx<'c>) -> LocalBoxFuture<'t, Result<T, Status>>,
{
    let failed = store_failed(what);
    tx.savepoint("write").await.map_err(failed)?;
    let result = std::panic::AssertUnwindSafe(f(tx))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            tracing::error!(write = what, "store write panicked");
            Err(Status::internal(format!(
                "the collector failed storing the {what}; retry later"
            )))
        });
    if result.is_ok() {
        tx.release("write").await.map_err(failed)?;
    } else {
        tx.rollback_to("write").await.map_err(failed)?;
    }
    result
}

/// What a store error in a write is told as, after logging it.
pub fn store_failed(what: &'static str) -> impl Fn(StoreError) -> Status + Copy {
    move |e| {
        tracing::error!(write = what, error = %e, "store write failed");
        Status::unavailable(format!(
            "the collector could not store the {what}; retry later"
        ))
    }
}
