//! What the console knows: the agent's conversations and read marks (their threads are the
//! link's, passed in). Pure logic.

use std::collections::HashMap;

use escalera_protocol::{
    AgentId, Author, ConversationId, ConversationStatus, ConversationSummary, ReadMark,
};

use crate::chat::{Thread, Threads};
use crate::i18n::t;

/// Which conversations the list shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Everything not closed: the queue, mine and my colleagues' (the default).
    Open,
    /// Mine, not closed.
    Mine,
    /// Waiting for an agent.
    Queue,
    /// Everything, closed ones too.
    All,
}

impl Filter {
    /// Every filter, in the order of the tabs, with its name.
    pub const TABS: [(Filter, &'static str); 4] = [
        (Filter::Open, "open"),
        (Filter::Mine, "mine"),
        (Filter::Queue, "queue"),
        (Filter::All, "all"),
    ];

    /// The tab's label, in the agent's language.
    pub fn label(self) -> &'static str {
        match self {
            Filter::Open => t("Open"),
            Filter::Mine => t("Mine"),
            Filter::Queue => t("Queue"),
            Filter::All => t("All"),
        }
    }

    /// Whether `c` is shown to `me` under this filter.
    pub fn shows(self, c: &ConversationSummary, me: Option<&AgentId>) -> bool {
        let closed = c.status == ConversationStatus::Closed;
        match self {
            Filter::Open => !closed,
            Filter::Mine => !closed && c.agent.as_ref().is_some_and(|a| Some(&a.id) == me),
            Filter::Queue => c.status == ConversationStatus::Waiting,
            Filter::All => true,
        }
    }
}

/// The agent's view of their sites' conversations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inbox {
    /// The list, in display order: waiting first, then newest activity.
    pub list: Vec<ConversationSummary>,
    /// The newest seq read per conversation.
    pub read: HashMap<ConversationId, u64>,
}

impl Inbox {
    /// Starts from the relay's welcome.
    pub fn welcome(&mut self, list: Vec<ConversationSummary>, read: Vec<ReadMark>) {
        self.list = list;
        self.read = read.into_iter().map(|r| (r.conversation, r.seq)).collect();
        self.sort();
    }

    /// A conversation is new or changed.
    pub fn upsert(&mut self, summary: ConversationSummary) {
        match self.list.iter_mut().find(|c| c.id == summary.id) {
            Some(c) => *c = summary,
            None => self.list.push(summary),
        }
        self.sort();
    }

    fn sort(&mut self) {
        self.list.sort_by(|a, b| {
            let rank = |c: &ConversationSummary| match c.status {
                ConversationStatus::Waiting => 0,
                ConversationStatus::Assigned => 1,
                ConversationStatus::Closed => 2,
            };
            rank(a).cmp(&rank(b)).then(b.last_at.cmp(&a.last_at))
        });
    }

    /// The rows `filter` shows to `me`, in display order.
    pub fn shown(&self, filter: Filter, me: Option<&AgentId>) -> Vec<ConversationSummary> {
        self.list
            .iter()
            .filter(|c| filter.shows(c, me))
            .cloned()
            .collect()
    }

    /// The seq `id` would be marked read up to, if that is past its mark.
    pub fn unread_seq(&self, id: &ConversationId, threads: &Threads) -> Option<u64> {
        let newest = threads.get(id).map_or(0, Thread::newest_seq);
        (newest > self.read.get(id).copied().unwrap_or(0)).then_some(newest)
    }

    /// Marks everything held of `id` as read; returns the new mark if it moved.
    pub fn mark_read(&mut self, id: &ConversationId, threads: &Threads) -> Option<u64> {
        let seq = self.unread_seq(id, threads)?;
        self.read.insert(id.clone(), seq);
        Some(seq)
    }

    /// A conversation's row.
    pub fn summary(&self, id: &ConversationId) -> Option<&ConversationSummary> {
        self.list.iter().find(|c| &c.id == id)
    }

    /// How many messages of `id` the agent has not read. Counted from the thread when it is
    /// loaded (visitor messages only); else estimated from seqs.
    pub fn unread(&self, id: &ConversationId, threads: &Threads) -> u64 {
        let read = self.read.get(id).copied().unwrap_or(0);
        match (threads.get(id), self.summary(id)) {
            (Some(t), Some(s)) if t.newest_seq() >= s.last_seq => {
                t.count_after(read, Author::Visitor) as u64
            }
            (_, Some(s)) => s.last_seq.saturating_sub(read),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use escalera_protocol::{AgentId, AgentRef, Message, ServerMsg};

    fn row(
        id: &str,
        status: ConversationStatus,
        last_at: i64,
        last_seq: u64,
    ) -> ConversationSummary {
        ConversationSummary {
            id: id.into(),
            site: "s".into(),
            site_name: "S".into(),
            visitor_label: "V".into(),
            status,
            agent: (status != ConversationStatus::Waiting).then(|| AgentRef {
                id: AgentId::from("a"),
                name: "A".into(),
            }),
            last_seq,
            preview: String::new(),
            last_at,
            rating: None,
            features: Default::default(),
            verified: false,
        }
    }

    fn msg(seq: u64, author: Author) -> Message {
        Message {
            conversation: "x".into(),
            seq,
            client_id: None,
            author,
            author_name: None,
            text: String::new(),
            event: None,
            attachment: None,
            at: 0,
        }
    }

    #[test]
    fn waiting_first_then_newest() {
        let mut inbox = Inbox::default();
        inbox.welcome(
            vec![
                row("old", ConversationStatus::Assigned, 1, 1),
                row("new", ConversationStatus::Assigned, 9, 1),
                row("wait", ConversationStatus::Waiting, 0, 1),
            ],
            vec![],
        );
        let order = |i: &Inbox| i.list.iter().map(|c| c.id.0.clone()).collect::<Vec<_>>();
        assert_eq!(order(&inbox), ["wait", "new", "old"]);
        inbox.upsert(row("wait", ConversationStatus::Assigned, 10, 2));
        inbox.upsert(row("fresh", ConversationStatus::Waiting, 11, 1));
        assert_eq!(order(&inbox), ["fresh", "wait", "new", "old"]);
    }

    #[test]
    fn filters_show_the_open_mine_the_queue_or_everything() {
        let mut inbox = Inbox::default();
        let mut theirs = row("theirs", ConversationStatus::Assigned, 3, 1);
        theirs.agent = Some(AgentRef {
            id: AgentId::from("b"),
            name: "B".into(),
        });
        inbox.welcome(
            vec![
                row("done", ConversationStatus::Closed, 9, 1),
                row("mine", ConversationStatus::Assigned, 2, 1),
                theirs,
                row("wait", ConversationStatus::Waiting, 1, 1),
            ],
            vec![],
        );
        let me = AgentId::from("a");
        let ids = |f| {
            inbox
                .shown(f, Some(&me))
                .into_iter()
                .map(|c| c.id.0)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(Filter::Open), ["wait", "theirs", "mine"]);
        assert_eq!(ids(Filter::Mine), ["mine"]);
        assert_eq!(ids(Filter::Queue), ["wait"]);
        assert_eq!(ids(Filter::All), ["wait", "theirs", "mine", "done"]);
    }

    #[test]
    fn unread_counts_visitor_messages_after_the_mark() {
        let mut inbox = Inbox::default();
        let id = ConversationId::from("x");
        inbox.welcome(
            vec![row("x", ConversationStatus::Waiting, 0, 3)],
            vec![ReadMark {
                conversation: id.clone(),
                seq: 1,
            }],
        );
        let mut threads = Threads::default();
        assert_eq!(inbox.unread(&id, &threads), 2);
        threads.apply(&ServerMsg::History {
            conversation: id.clone(),
            messages: vec![
                msg(1, Author::Visitor),
                msg(2, Author::System),
                msg(3, Author::Visitor),
            ],
            upto: 3,
        });
        assert_eq!(inbox.unread(&id, &threads), 1);
        assert_eq!(inbox.mark_read(&id, &threads), Some(3));
        assert_eq!(inbox.mark_read(&id, &threads), None);
        assert_eq!(inbox.unread(&id, &threads), 0);
    }
}
