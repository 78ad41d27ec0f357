//! The relay's brain, sans I/O: who is connected as whom, who has joined which conversation,
//! who may do what, and who must hear about what. No sockets, no channels, no clock: the hub
//! feeds it facts (including what the store said) and delivers the `(PeerId, ServerMsg)` pairs
//! it returns.

use std::collections::{HashMap, HashSet};

use escalera_protocol::{AgentRef, ConversationId, ServerMsg, SiteKey};

use crate::error::RelayError;

/// One WebSocket connection, as the relay numbers them. Never sent to a browser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

/// Which sites an agent serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every site of this relay.
    All,
    /// Only these.
    Sites(HashSet<SiteKey>),
}

impl Scope {
    /// Whether a site is in scope.
    pub fn covers(&self, site: &SiteKey) -> bool {
        match self {
            Scope::All => true,
            Scope::Sites(sites) => sites.contains(site),
        }
    }
}

/// Who a connection is, once it said hello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// A visitor of `site`, who owns exactly one conversation.
    Visitor {
        /// The site the widget belongs to.
        site: SiteKey,
        /// The visitor's conversation.
        conversation: ConversationId,
    },
    /// A logged-in agent.
    Agent {
        /// The agent.
        agent: AgentRef,
        /// The sites they serve.
        scope: Scope,
    },
}

/// What the relay knows of a conversation when deciding: its site and its assignee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationMeta {
    /// The conversation.
    pub id: ConversationId,
    /// The site it belongs to.
    pub site: SiteKey,
    /// The agent it is assigned to.
    pub agent: Option<AgentRef>,
}

#[derive(Debug, Default)]
struct Peer {
    role: Option<Role>,
    joined: HashSet<ConversationId>,
}

/// What an agent's chat message into a conversation means.
#[derive(Debug, PartialEq, Eq)]
pub enum AgentPost {
    /// They have it already: just post.
    Assigned,
    /// It is waiting: posting takes it first.
    TakesIt,
}

/// Connections, their roles and subscriptions.
#[derive(Debug, Default)]
pub struct Core {
    peers: HashMap<PeerId, Peer>,
}

impl Core {
    /// A new connection, not yet introduced.
    pub fn connect(&mut self, peer: PeerId) {
        self.peers.insert(peer, Peer::default());
    }

    /// The connection is gone.
    pub fn disconnect(&mut self, peer: PeerId) {
        self.peers.remove(&peer);
    }

    /// The connection said hello and is now known as `role`.
    pub fn identify(&mut self, peer: PeerId, role: Role) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.role = Some(role);
        }
    }

    /// The role of a connection, if it said hello.
    pub fn role(&self, peer: PeerId) -> Option<&Role> {
        self.peers.get(&peer).and_then(|p| p.role.as_ref())
    }

    /// Whether `peer` may read `conv`: a visitor only their own, an agent any of their sites'.
    /// Someone else's conversation is reported as not found, so ids cannot be probed.
    pub fn may_read(&self, peer: PeerId, conv: &ConversationMeta) -> Result<(), RelayError> {
        match self.role(peer) {
            None => Err(RelayError::NoHello),
            Some(Role::Visitor { conversation, .. }) if *conversation == conv.id => Ok(()),
            Some(Role::Agent { scope, .. }) if scope.covers(&conv.site) => Ok(()),
            Some(_) => Err(RelayError::NotFound),
        }
    }

    /// Subscribes `peer` to live messages of `conv`, if it may read it.
    pub fn join(&mut self, peer: PeerId, conv: &ConversationMeta) -> Result<(), RelayError> {
        self.may_read(peer, conv)?;
        if let Some(p) = self.peers.get_mut(&peer) {
            p.joined.insert(conv.id.clone());
        }
        Ok(())
    }

    /// Whether `peer` may take `conv`, and as which agent.
    pub fn may_take(&self, peer: PeerId, conv: &ConversationMeta) -> Result<AgentRef, RelayError> {
        self.may_read(peer, conv)?;
        let Some(Role::Agent { agent, .. }) = self.role(peer) else {
            return Err(RelayError::Forbidden("only agents can take conversations"));
        };
        match &conv.agent {
            Some(other) if other.id != agent.id => {
                Err(RelayError::AlreadyTaken(other.name.clone()))
            }
            _ => Ok(agent.clone()),
        }
    }

    /// Whether an agent may post into `conv`: into their own or a waiting one (which takes it),
    /// not into one another agent has.
    pub fn agent_post(
        &self,
        peer: PeerId,
        conv: &ConversationMeta,
    ) -> Result<AgentPost, RelayError> {
        let me = self.may_take(peer, conv)?;
        Ok(match &conv.agent {
            Some(a) if a.id == me.id => AgentPost::Assigned,
            _ => AgentPost::TakesIt,
        })
    }

    /// Everyone joined to `conv` gets `msg`.
    pub fn to_joined(&self, conv: &ConversationId, msg: &ServerMsg) -> Vec<(PeerId, ServerMsg)> {
        self.peers
            .iter()
            .filter(|(_, p)| p.joined.contains(conv))
            .map(|(id, _)| (*id, msg.clone()))
            .collect()
    }

    /// Every visitor connection of `conv` (joined or not) gets `msg`.
    pub fn to_visitors(&self, conv: &ConversationId, msg: &ServerMsg) -> Vec<(PeerId, ServerMsg)> {
        self.peers
            .iter()
            .filter(|(_, p)| {
                matches!(&p.role, Some(Role::Visitor { conversation, .. }) if conversation == conv)
            })
            .map(|(id, _)| (*id, msg.clone()))
            .collect()
    }

    /// Every agent connection serving `site` gets `msg`.
    pub fn to_site_agents(&self, site: &SiteKey, msg: &ServerMsg) -> Vec<(PeerId, ServerMsg)> {
        self.peers
            .iter()
            .filter(
                |(_, p)| matches!(&p.role, Some(Role::Agent { scope, .. }) if scope.covers(site)),
            )
            .map(|(id, _)| (*id, msg.clone()))
            .collect()
    }
}

/// A token bucket: `burst` frames at once, refilled at `per_second`. Time is passed in (ms).
#[derive(Debug, Clone)]
pub struct RateLimit {
    tokens: f64,
    burst: f64,
    per_ms: f64,
    last_ms: i64,
}

impl RateLimit {
    /// A full bucket at `now_ms`.
    pub fn new(burst: u32, per_second: u32, now_ms: i64) -> Self {
        Self {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            per_ms: f64::from(per_second) / 1000.0,
            last_ms: now_ms,
        }
    }

    /// Takes a token if there is one.
    pub fn allow(&mut self, now_ms: i64) -> bool {
        let elapsed = (now_ms - self.last_ms).max(0) as f64;
        self.last_ms = now_ms.max(self.last_ms);
        self.tokens = (self.tokens + elapsed * self.per_ms).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use escalera_protocol::AgentId;

    fn site(k: &str) -> SiteKey {
        SiteKey::from(k)
    }
    fn conv(id: &str, s: &str, agent: Option<&AgentRef>) -> ConversationMeta {
        ConversationMeta {
            id: ConversationId::from(id),
            site: site(s),
            agent: agent.cloned(),
        }
    }
    fn agent(id: &str) -> AgentRef {
        AgentRef {
            id: AgentId::from(id),
            name: format!("Agent {id}"),
        }
    }

    /// A core with visitor 1 (conv c1 on site s1), visitor 2 (c2 on s1),
    /// agent 10 (all sites), agent 11 (site s2 only).
    fn fixture() -> Core {
        let mut core = Core::default();
        for (p, role) in [
            (
                1,
                Role::Visitor {
                    site: site("s1"),
                    conversation: "c1".into(),
                },
            ),
            (
                2,
                Role::Visitor {
                    site: site("s1"),
                    conversation: "c2".into(),
                },
            ),
            (
                10,
                Role::Agent {
                    agent: agent("a"),
                    scope: Scope::All,
                },
            ),
            (
                11,
                Role::Agent {
                    agent: agent("b"),
                    scope: Scope::Sites([site("s2")].into()),
                },
            ),
        ] {
            core.connect(PeerId(p));
            core.identify(PeerId(p), role);
        }
        core
    }

    fn peers(out: &[(PeerId, ServerMsg)]) -> Vec<u64> {
        let mut v: Vec<u64> = out.iter().map(|(p, _)| p.0).collect();
        v.sort();
        v
    }

    #[test]
    fn visitor_reaches_only_own_conversation() {
        let mut core = fixture();
        assert!(core.join(PeerId(1), &conv("c1", "s1", None)).is_ok());
        assert_eq!(
            core.join(PeerId(1), &conv("c2", "s1", None)),
            Err(RelayError::NotFound)
        );
    }

    #[test]
    fn agents_reach_only_their_sites() {
        let mut core = fixture();
        assert!(core.join(PeerId(10), &conv("c1", "s1", None)).is_ok());
        assert_eq!(
            core.join(PeerId(11), &conv("c1", "s1", None)),
            Err(RelayError::NotFound)
        );
        assert!(core.join(PeerId(11), &conv("c9", "s2", None)).is_ok());
    }

    #[test]
    fn no_hello_no_access() {
        let mut core = Core::default();
        core.connect(PeerId(5));
        assert_eq!(
            core.join(PeerId(5), &conv("c1", "s1", None)),
            Err(RelayError::NoHello)
        );
    }

    #[test]
    fn messages_route_to_joined_peers_only() {
        let mut core = fixture();
        core.join(PeerId(1), &conv("c1", "s1", None)).unwrap();
        core.join(PeerId(10), &conv("c1", "s1", None)).unwrap();
        core.join(PeerId(2), &conv("c2", "s1", None)).unwrap();
        let out = core.to_joined(&"c1".into(), &ServerMsg::Pong);
        assert_eq!(peers(&out), vec![1, 10]);
        core.disconnect(PeerId(10));
        assert_eq!(
            peers(&core.to_joined(&"c1".into(), &ServerMsg::Pong)),
            vec![1]
        );
    }

    #[test]
    fn site_news_goes_to_agents_in_scope() {
        let core = fixture();
        assert_eq!(
            peers(&core.to_site_agents(&site("s1"), &ServerMsg::Pong)),
            vec![10]
        );
        assert_eq!(
            peers(&core.to_site_agents(&site("s2"), &ServerMsg::Pong)),
            vec![10, 11]
        );
        assert_eq!(
            peers(&core.to_visitors(&"c2".into(), &ServerMsg::Pong)),
            vec![2]
        );
    }

    #[test]
    fn take_queue_rules() {
        let core = fixture();
        let waiting = conv("c1", "s1", None);
        assert_eq!(core.may_take(PeerId(10), &waiting), Ok(agent("a")));
        assert_eq!(
            core.agent_post(PeerId(10), &waiting),
            Ok(AgentPost::TakesIt)
        );
        let mine = conv("c1", "s1", Some(&agent("a")));
        assert_eq!(core.agent_post(PeerId(10), &mine), Ok(AgentPost::Assigned));
        let theirs = conv("c1", "s1", Some(&agent("z")));
        assert_eq!(
            core.may_take(PeerId(10), &theirs),
            Err(RelayError::AlreadyTaken("Agent z".into()))
        );
        assert!(matches!(
            core.may_take(PeerId(1), &waiting),
            Err(RelayError::Forbidden(_))
        ));
        assert_eq!(
            core.may_take(PeerId(11), &waiting),
            Err(RelayError::NotFound)
        );
    }

    #[test]
    fn rate_limit_refills_over_time() {
        let mut rl = RateLimit::new(3, 10, 0);
        assert!(rl.allow(0) && rl.allow(0) && rl.allow(0));
        assert!(!rl.allow(0));
        assert!(!rl.allow(50));
        assert!(rl.allow(100));
        assert!(!rl.allow(100));
        // Never more than the burst, however long it waited.
        let mut n = 0;
        while rl.allow(100_000) {
            n += 1;
        }
        assert_eq!(n, 3);
    }
}
