//! One conversation's messages as a browser holds them: the stored ones by seq, and the ones
//! sent but not yet acknowledged. Pure logic, tested natively.

use std::collections::BTreeMap;

use escalera_protocol::{Author, ClientMsgId, Message};
use serde::{Deserialize, Serialize};

/// A message this browser sent that the relay has not acknowledged yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The id it is (re)sent with.
    pub client_id: ClientMsgId,
    /// Its text.
    pub text: String,
}

/// A conversation's messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Thread {
    stored: BTreeMap<u64, Message>,
    pending: Vec<Pending>,
}

/// One line to show: stored, or still on its way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// Stored by the relay.
    Stored(Message),
    /// Sent, waiting for the ack.
    Pending(Pending),
}

impl Thread {
    /// Adds stored messages (history or live); duplicates are ignored. A stored message that
    /// carries the id of a pending one replaces it.
    pub fn merge(&mut self, messages: impl IntoIterator<Item = Message>) {
        for m in messages {
            if let Some(id) = &m.client_id {
                self.pending.retain(|p| &p.client_id != id);
            }
            self.stored.entry(m.seq).or_insert(m);
        }
    }

    /// Queues a message of ours until the relay acknowledges it.
    pub fn push_pending(&mut self, pending: Pending) {
        self.pending.push(pending);
    }

    /// The relay stored our message `client_id`; the stored copy arrives as a message, but the
    /// ack alone is enough to stop resending it.
    pub fn ack(&mut self, client_id: &ClientMsgId) -> Option<Pending> {
        let i = self
            .pending
            .iter()
            .position(|p| &p.client_id == client_id)?;
        Some(self.pending.remove(i))
    }

    /// Messages still waiting for an ack, oldest first: to resend after a reconnect.
    pub fn pending(&self) -> &[Pending] {
        &self.pending
    }

    /// The highest seq up to which nothing is missing: what to ask history after.
    pub fn last_seq(&self) -> u64 {
        let mut last = 0;
        for seq in self.stored.keys() {
            if *seq == last + 1 {
                last = *seq;
            } else if *seq > last + 1 {
                break;
            }
        }
        last
    }

    /// The newest stored seq (gaps or not).
    pub fn newest_seq(&self) -> u64 {
        self.stored.keys().next_back().copied().unwrap_or(0)
    }

    /// Stored messages after `seq` written by `author`.
    pub fn count_after(&self, seq: u64, author: Author) -> usize {
        self.stored
            .range(seq + 1..)
            .filter(|(_, m)| m.author == author)
            .count()
    }

    /// Whether there is nothing to show.
    pub fn is_empty(&self) -> bool {
        self.stored.is_empty() && self.pending.is_empty()
    }

    /// Everything to show: stored by seq, then pending in sending order.
    pub fn lines(&self) -> Vec<Line> {
        self.stored
            .values()
            .cloned()
            .map(Line::Stored)
            .chain(self.pending.iter().cloned().map(Line::Pending))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64, cid: Option<&str>) -> Message {
        Message {
            conversation: "c".into(),
            seq,
            client_id: cid.map(ClientMsgId::from),
            author: Author::Visitor,
            author_name: None,
            text: format!("m{seq}"),
            attachment: None,
            at: 0,
        }
    }

    fn pending(id: &str) -> Pending {
        Pending {
            client_id: id.into(),
            text: id.into(),
        }
    }

    #[test]
    fn last_seq_stops_at_the_first_gap() {
        let mut t = Thread::default();
        assert_eq!(t.last_seq(), 0);
        t.merge([msg(1, None), msg(2, None), msg(4, None)]);
        assert_eq!((t.last_seq(), t.newest_seq()), (2, 4));
        t.merge([msg(3, None)]);
        assert_eq!(t.last_seq(), 4);
    }

    #[test]
    fn duplicates_are_ignored() {
        let mut t = Thread::default();
        t.merge([msg(1, None), msg(1, None), msg(2, None)]);
        t.merge([msg(2, None)]);
        assert_eq!(t.lines().len(), 2);
    }

    #[test]
    fn stored_copy_replaces_pending() {
        let mut t = Thread::default();
        t.push_pending(pending("a"));
        t.push_pending(pending("b"));
        assert_eq!(t.lines().len(), 2);
        t.merge([msg(1, Some("a"))]);
        assert_eq!(t.pending(), &[pending("b")]);
        assert_eq!(t.lines().len(), 2);
        assert_eq!(t.ack(&"b".into()), Some(pending("b")));
        assert!(t.pending().is_empty());
        assert_eq!(t.ack(&"b".into()), None);
    }

    #[test]
    fn unread_counts_only_the_other_side() {
        let mut t = Thread::default();
        let mut agent = msg(3, None);
        agent.author = Author::Agent;
        t.merge([msg(1, None), msg(2, None), agent]);
        assert_eq!(t.count_after(0, Author::Visitor), 2);
        assert_eq!(t.count_after(1, Author::Agent), 1);
        assert_eq!(t.count_after(3, Author::Agent), 0);
    }
}
