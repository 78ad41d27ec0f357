//! Delivery between connections: the core publishes what happened in a conversation, and the
//! bus brings it back to every node that has a connection subscribed to it. One node today,
//! so [`LocalBus`] hands events straight back to this node's hub, in the order published; a
//! networked bus (NATS) plugs in behind the same trait.

use tokio::sync::mpsc;

use crate::core::{BusEvent, Topic};

/// Carries conversation events between relay nodes.
pub trait Bus: Send + Sync + 'static {
    /// Sends `event` to every node subscribed to one of its topics. Events of one
    /// conversation arrive in the order they were published.
    fn publish(&self, event: BusEvent);
    /// This node needs `topic`'s events.
    fn subscribe(&self, topic: Topic);
    /// ...no longer.
    fn unsubscribe(&self, topic: Topic);
    /// Whether events reach the other nodes now (`/readyz`); the in-process bus always does.
    fn ready(&self) -> bool {
        true
    }
    /// This node's number among the nodes (call ends name it); 0 when it runs alone.
    fn node(&self) -> u64 {
        0
    }
}

/// The topics an event is for.
pub fn topics(event: &BusEvent) -> Vec<Topic> {
    match event {
        BusEvent::Message { site, message, .. } => vec![
            Topic::Conversation(message.conversation.clone()),
            Topic::Site(site.clone()),
            Topic::AllSites,
        ],
        // A call also rings the site's agents when it waits in the queue.
        BusEvent::Call {
            conversation, call, ..
        } => vec![
            Topic::Conversation(conversation.clone()),
            Topic::Site(call.site().clone()),
            Topic::AllSites,
        ],
        BusEvent::NodeGone { .. } => Vec::new(),
        BusEvent::Presence { .. } | BusEvent::Desk { .. } => vec![Topic::Cluster],
        BusEvent::AgentJoined { conversation, .. }
        | BusEvent::Signal { conversation, .. }
        | BusEvent::Closed { conversation }
        | BusEvent::Typing { conversation, .. }
        | BusEvent::Read { conversation, .. } => {
            vec![Topic::Conversation(conversation.clone())]
        }
    }
}

/// The in-process bus: every event comes back on the receiver returned by [`LocalBus::new`],
/// in the order published. Every connection is on this node, and the core fans events out
/// only to the connections that joined, so there is nothing to filter here; the topics are
/// what a networked bus subscribes to.
pub struct LocalBus {
    tx: mpsc::UnboundedSender<BusEvent>,
}

impl LocalBus {
    /// A bus and the receiving end this node reads.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<BusEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, rx)
    }
}

impl Bus for LocalBus {
    fn publish(&self, event: BusEvent) {
        let _ = self.tx.send(event);
    }

    fn subscribe(&self, _topic: Topic) {}

    fn unsubscribe(&self, _topic: Topic) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use escalera_protocol::ConversationId;

    #[test]
    fn events_come_back_in_the_order_published() {
        let (bus, mut rx) = LocalBus::new();
        let closed = |c: &str| BusEvent::Closed {
            conversation: ConversationId::from(c),
        };
        for c in ["a", "b", "a"] {
            bus.publish(closed(c));
        }
        for c in ["a", "b", "a"] {
            assert_eq!(rx.try_recv().unwrap(), closed(c));
        }
        assert!(rx.try_recv().is_err());
        assert_eq!(topics(&closed("a")), vec![Topic::Conversation("a".into())]);
    }
}
