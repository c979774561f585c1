//! Where a stream's acknowledgements and its refusal go: a channel from the
//! writer to the stream that sends them to the agent.
//!
//! Every connected agent's event stream holds one for as long as the agent
//! stays connected, so thousands are open at once and nearly all are empty.
//! This is futures' unbounded channel (about 150 bytes, and a small node per
//! message in flight) rather than tokio's, which allocates a block of 32
//! slots when it is made: 1.8 KiB per connected agent, measured.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_channel::mpsc;
use tokio_stream::Stream;
use tonic::Status;
use tutela_proto::v1::Ack;

/// An acknowledgement, or the refusal that ends the stream.
pub type Sent = Result<Ack, Status>;

/// The writer's end: cloned into every event of the stream.
#[derive(Debug, Clone)]
pub struct Reply(mpsc::UnboundedSender<Sent>);

/// The stream's end; also the gRPC response stream.
#[derive(Debug)]
pub struct Replies(mpsc::UnboundedReceiver<Sent>);

/// A new channel for one stream (or one batch).
pub fn channel() -> (Reply, Replies) {
    let (tx, rx) = mpsc::unbounded();
    (Reply(tx), Replies(rx))
}

impl Reply {
    /// Sends `sent`; gives it back if the stream has gone.
    pub fn send(&self, sent: Sent) -> Result<(), Box<Sent>> {
        self.0
            .unbounded_send(sent)
            .map_err(|e| Box::new(e.into_inner()))
    }

    /// Whether the stream has gone (the agent disconnected).
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// Whether both go to the same stream.
    pub fn same_channel(&self, other: &Reply) -> bool {
        self.0.same_receiver(&other.0)
    }
}

impl Replies {
    /// The next acknowledgement or refusal; `None` once every `Reply` is gone.
    pub async fn recv(&mut self) -> Option<Sent> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// What has been sent already, without waiting.
    pub fn try_recv(&mut self) -> Option<Sent> {
        self.0.try_recv().ok()
    }
}

impl Stream for Replies {
    type Item = Sent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Sent>> {
        Pin::new(&mut self.0).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn acknowledgements_arrive_in_order_and_the_stream_ends_when_the_writer_lets_go() {
        let (reply, mut replies) = channel();
        let other = reply.clone();
        assert!(reply.same_channel(&other));
        assert!(!reply.same_channel(&channel().0));
        for seq in 1..=3 {
            let ack = Ack {
                seq,
                ..Ack::default()
            };
            reply.send(Ok(ack)).unwrap();
        }
        other.send(Err(Status::aborted("refused"))).unwrap();
        assert!(replies.try_recv().is_some_and(|a| a.unwrap().seq == 1));
        assert_eq!(replies.recv().await.unwrap().unwrap().seq, 2);
        assert_eq!(replies.recv().await.unwrap().unwrap().seq, 3);
        assert!(replies.recv().await.unwrap().is_err());
        assert!(replies.try_recv().is_none());
        drop((reply, other));
        assert!(replies.recv().await.is_none());
    }

    #[test]
    fn a_stream_that_went_is_closed_and_gives_the_message_back() {
        let (reply, replies) = channel();
        drop(replies);
        assert!(reply.is_closed());
        let back = reply.send(Ok(Ack::default())).unwrap_err();
        assert!(back.is_ok());
    }
}
