//! The conversations' messages as a browser holds them: per conversation, the stored ones by
//! seq and the outbox of ones sent but not yet acknowledged, resent after every reconnect.
//! Pure logic, tested natively.

use std::collections::{BTreeMap, HashMap};

use escalera_protocol::{Author, ClientMsg, ClientMsgId, ConversationId, Message, ServerMsg};
use serde::{Deserialize, Serialize};

/// A message this browser sent that the relay has not acknowledged yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The id it is (re)sent with.
    pub client_id: ClientMsgId,
    /// Its text.
    pub text: String,
    /// An agent's private note rather than a chat message.
    #[serde(default)]
    pub note: bool,
}

impl Pending {
    /// The frame that sends it to `conversation`.
    fn frame(&self, conversation: &ConversationId) -> ClientMsg {
        let (conversation, client_id, text) = (
            conversation.clone(),
            self.client_id.clone(),
            self.text.clone(),
        );
        if self.note {
            ClientMsg::Note {
                conversation,
                client_id,
                text,
            }
        } else {
            ClientMsg::Chat {
                conversation,
                client_id,
                text,
            }
        }
    }
}

/// A conversation's messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Thread {
    stored: BTreeMap<u64, Message>,
    pending: Vec<Pending>,
    /// The relay said nothing this side may see is missing up to here (a visitor's history
    /// skips the agents' notes, so their seqs are gaps).
    upto: u64,
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
        let mut last = self.upto;
        for seq in self.stored.range(self.upto + 1..).map(|(s, _)| s) {
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

/// Every conversation this browser holds, with their outboxes: what the widget and the console
/// share, fed by the relay's frames.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Threads(HashMap<ConversationId, Thread>);

impl Threads {
    /// One conversation's messages, if any are held.
    pub fn get(&self, id: &ConversationId) -> Option<&Thread> {
        self.0.get(id)
    }

    /// Takes in a frame from the relay: history, a live message, an ack. Returns whether
    /// anything it holds changed; other frames are not its business.
    pub fn apply(&mut self, msg: &ServerMsg) -> bool {
        match msg {
            ServerMsg::History {
                conversation,
                messages,
                upto,
            } => {
                let thread = self.0.entry(conversation.clone()).or_default();
                let before = thread.clone();
                thread.merge(messages.iter().cloned());
                thread.upto = thread.upto.max(*upto);
                *thread != before
            }
            ServerMsg::Message(m) => {
                let thread = self.0.entry(m.conversation.clone()).or_default();
                let before = thread.clone();
                thread.merge([m.clone()]);
                *thread != before
            }
            ServerMsg::Ack {
                conversation,
                client_id,
                ..
            } => self
                .0
                .get_mut(conversation)
                .is_some_and(|t| t.ack(client_id).is_some()),
            _ => false,
        }
    }

    /// Puts one of our messages in `id`'s outbox; returns the frame that sends it.
    pub fn queue(&mut self, id: &ConversationId, pending: Pending) -> ClientMsg {
        let msg = pending.frame(id);
        self.0.entry(id.clone()).or_default().push_pending(pending);
        msg
    }

    /// What a new connection sends to follow `id`: a join after the last seq held with no gap,
    /// then every message still unacknowledged, oldest first. The relay stores each
    /// `client_id` once, so one that was stored before the drop is acknowledged, not repeated.
    pub fn rejoin(&self, id: &ConversationId) -> Vec<ClientMsg> {
        let thread = self.0.get(id);
        let join = ClientMsg::Join {
            conversation: id.clone(),
            after_seq: thread.map_or(0, Thread::last_seq),
        };
        let resend = thread
            .into_iter()
            .flat_map(|t| t.pending())
            .map(|p| p.frame(id));
        std::iter::once(join).chain(resend).collect()
    }

    /// The frame that sends our message `client_id` of `id` again, if it is still unacknowledged.
    pub fn resend(&self, id: &ConversationId, client_id: &ClientMsgId) -> Option<ClientMsg> {
        let p = self
            .0
            .get(id)?
            .pending()
            .iter()
            .find(|p| &p.client_id == client_id)?;
        Some(p.frame(id))
    }

    /// The relay refused our message for good (it said why): it leaves the outbox.
    pub fn refused(&mut self, id: &ConversationId, client_id: &ClientMsgId) -> Option<Pending> {
        self.0.get_mut(id)?.ack(client_id)
    }

    /// Conversations with messages still to deliver.
    pub fn with_outbox(&self) -> impl Iterator<Item = &ConversationId> {
        self.0
            .iter()
            .filter(|(_, t)| !t.pending().is_empty())
            .map(|(id, _)| id)
    }

    /// Everything unacknowledged, over all conversations, oldest first per conversation.
    pub fn outbox(&self) -> Vec<Pending> {
        self.0
            .values()
            .flat_map(|t| t.pending().iter().cloned())
            .collect()
    }

    /// The widget holds one conversation: if the relay starts a new one (it forgot the old
    /// token), the other threads go, and what they still had to send moves to `id`.
    pub fn only(&mut self, id: &ConversationId) {
        let moved: Vec<Pending> = self
            .0
            .iter()
            .filter(|(other, _)| *other != id)
            .flat_map(|(_, t)| t.pending().iter().cloned())
            .collect();
        self.0.retain(|other, _| other == id);
        let thread = self.0.entry(id.clone()).or_default();
        moved.into_iter().for_each(|p| thread.push_pending(p));
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
            event: None,
            attachment: None,
            at: 0,
        }
    }

    fn pending(id: &str) -> Pending {
        Pending {
            client_id: id.into(),
            text: id.into(),
            note: false,
        }
    }

    #[test]
    fn a_visitors_history_that_skips_notes_still_says_what_is_complete() {
        let mut threads = Threads::default();
        let c = ConversationId::from("c");
        // Seq 2 was a note: the visitor gets 1 and 3, and `upto` 3.
        threads.apply(&ServerMsg::History {
            conversation: c.clone(),
            messages: vec![msg(1, None), msg(3, None)],
            upto: 3,
        });
        assert!(matches!(
            threads.rejoin(&c)[0],
            ClientMsg::Join { after_seq: 3, .. }
        ));
        // Live, past another note (4): 5 leaves a gap until the next history says otherwise.
        threads.apply(&ServerMsg::Message(msg(5, None)));
        assert!(matches!(
            threads.rejoin(&c)[0],
            ClientMsg::Join { after_seq: 3, .. }
        ));
        threads.apply(&ServerMsg::History {
            conversation: c.clone(),
            messages: vec![msg(5, None)],
            upto: 5,
        });
        assert!(matches!(
            threads.rejoin(&c)[0],
            ClientMsg::Join { after_seq: 5, .. }
        ));
    }

    #[test]
    fn a_note_is_sent_and_resent_as_a_note() {
        let mut threads = Threads::default();
        let c = ConversationId::from("c");
        let note = Pending {
            note: true,
            ..pending("n")
        };
        assert!(matches!(threads.queue(&c, note), ClientMsg::Note { .. }));
        assert!(matches!(threads.rejoin(&c)[1], ClientMsg::Note { .. }));
        assert!(matches!(
            threads.resend(&c, &"n".into()),
            Some(ClientMsg::Note { .. })
        ));
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

    fn ack(conversation: &str, client_id: &str, seq: u64) -> ServerMsg {
        ServerMsg::Ack {
            conversation: conversation.into(),
            client_id: client_id.into(),
            seq,
        }
    }

    #[test]
    fn a_message_queued_offline_is_resent_after_the_join_until_acknowledged() {
        let mut threads = Threads::default();
        let c = ConversationId::from("c");
        assert!(threads.apply(&ServerMsg::History {
            conversation: c.clone(),
            messages: vec![msg(1, None), msg(2, None)],
            upto: 2,
        }));
        threads.queue(&c, pending("a"));
        let rejoin = threads.rejoin(&c);
        assert_eq!(rejoin.len(), 2);
        assert!(matches!(&rejoin[0], ClientMsg::Join { after_seq: 2, .. }));
        assert!(matches!(&rejoin[1], ClientMsg::Chat { client_id, .. } if client_id.0 == "a"));
        // Acknowledged: the next connection only joins.
        assert!(threads.apply(&ack("c", "a", 3)));
        assert_eq!(threads.rejoin(&c).len(), 1);
        assert!(threads.with_outbox().next().is_none());
        // The same ack again (a resend the relay had stored already) changes nothing.
        assert!(!threads.apply(&ack("c", "a", 3)));
    }

    #[test]
    fn each_conversation_has_its_own_outbox() {
        let mut threads = Threads::default();
        let (a, b) = (ConversationId::from("a"), ConversationId::from("b"));
        threads.queue(&a, pending("1"));
        threads.queue(&b, pending("2"));
        assert_eq!(threads.rejoin(&a).len(), 2);
        assert!(
            !threads.apply(&ack("a", "2", 1)),
            "an ack names its conversation"
        );
        assert!(threads.apply(&ack("b", "2", 1)));
        assert_eq!(threads.with_outbox().collect::<Vec<_>>(), [&a]);
        assert_eq!(threads.outbox(), [pending("1")]);
    }

    #[test]
    fn a_new_conversation_takes_over_what_the_old_one_had_to_send() {
        let mut threads = Threads::default();
        let (old, new) = (ConversationId::from("old"), ConversationId::from("new"));
        threads.apply(&ServerMsg::Message(msg(1, None)));
        threads.queue(&old, pending("x"));
        threads.only(&new);
        assert!(threads.get(&old).is_none());
        assert!(threads.get(&"c".into()).is_none());
        assert_eq!(threads.get(&new).unwrap().pending(), &[pending("x")]);
    }
}
