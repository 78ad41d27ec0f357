//! The relay's brain, sans I/O: who is connected as whom, who has joined which conversation,
//! who may do what, and who must hear about what. No sockets, no channels, no clock: the hub
//! feeds it facts (including what the store said) and delivers the `(PeerId, ServerMsg)` pairs
//! it returns.

use std::collections::{HashMap, HashSet};

use escalera_protocol::{
    AgentRef, Author, CallAction, CallInfo, CallKind, CallPhase, ConversationId, MediaKind,
    ServerMsg, SiteKey,
};

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

impl Role {
    /// Whether this role may read `conv`: a visitor only their own, an agent any of their
    /// sites'. Someone else's conversation is reported as not found, so ids cannot be probed.
    pub fn may_read(&self, conv: &ConversationMeta) -> Result<(), RelayError> {
        match self {
            Role::Visitor { conversation, .. } if *conversation == conv.id => Ok(()),
            Role::Agent { scope, .. } if scope.covers(&conv.site) => Ok(()),
            _ => Err(RelayError::NotFound),
        }
    }

    /// Whether this role may take `conv`, and as which agent.
    pub fn may_take(&self, conv: &ConversationMeta) -> Result<AgentRef, RelayError> {
        self.may_read(conv)?;
        let Role::Agent { agent, .. } = self else {
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
    pub fn agent_post(&self, conv: &ConversationMeta) -> Result<AgentPost, RelayError> {
        let me = self.may_take(conv)?;
        Ok(match &conv.agent {
            Some(a) if a.id == me.id => AgentPost::Assigned,
            _ => AgentPost::TakesIt,
        })
    }
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

/// How long a call rings before it is missed, unless configured otherwise.
pub const RING_TIMEOUT_MS: i64 = 30_000;

/// A conversation's call. Its two ends are connections, not people: another tab of the same
/// person sees the call but does not take part.
#[derive(Debug, Clone)]
struct Call {
    kind: CallKind,
    caller: Author,
    caller_name: String,
    caller_peer: PeerId,
    callee_peer: Option<PeerId>,
    phase: CallPhase,
    since: i64,
}

impl Call {
    fn is_party(&self, peer: PeerId) -> bool {
        self.caller_peer == peer || self.callee_peer == Some(peer)
    }

    fn info(&self, peer: PeerId) -> CallInfo {
        CallInfo {
            phase: self.phase,
            kind: self.kind,
            caller: self.caller,
            caller_name: self.caller_name.clone(),
            since: self.since,
            party: self.is_party(peer),
        }
    }

    /// What the record says when this call is over.
    fn ended_note(&self, now: i64) -> String {
        match self.phase {
            CallPhase::Ringing => "Call cancelled".to_owned(),
            CallPhase::Active => format!("Call ended, {}", duration(now - self.since)),
        }
    }
}

/// `3:12`, or `1:02:03` past an hour.
pub fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// Connections, their roles and subscriptions, and the calls under way.
#[derive(Debug, Default)]
pub struct Core {
    peers: HashMap<PeerId, Peer>,
    calls: HashMap<ConversationId, Call>,
}

impl Core {
    /// A new connection, not yet introduced.
    pub fn connect(&mut self, peer: PeerId) {
        self.peers.insert(peer, Peer::default());
    }

    /// The connection is gone. Calls it was an end of are over: returns them with the note
    /// for the record (the caller then sends [`Core::call_updates`] for each).
    pub fn disconnect(&mut self, peer: PeerId, now: i64) -> Vec<(ConversationId, String)> {
        self.peers.remove(&peer);
        let ended: Vec<ConversationId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.is_party(peer))
            .map(|(id, _)| id.clone())
            .collect();
        ended
            .into_iter()
            .filter_map(|id| {
                let call = self.calls.remove(&id)?;
                Some((id, call.ended_note(now)))
            })
            .collect()
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

    /// Whether `peer` may read `conv` (see [`Role::may_read`]).
    pub fn may_read(&self, peer: PeerId, conv: &ConversationMeta) -> Result<(), RelayError> {
        self.role(peer).ok_or(RelayError::NoHello)?.may_read(conv)
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

    /// The side and display name of a connection that may take part in calls of `conv`: its
    /// visitor, or the agent it is assigned to. (A waiting conversation must be taken first.)
    fn call_party(
        &self,
        peer: PeerId,
        conv: &ConversationMeta,
    ) -> Result<(Author, String), RelayError> {
        self.may_read(peer, conv)?;
        match self.role(peer) {
            Some(Role::Visitor { .. }) if conv.agent.is_none() => Err(RelayError::Forbidden(
                "no agent has joined this conversation yet",
            )),
            Some(Role::Visitor { .. }) => Ok((Author::Visitor, "Visitor".to_owned())),
            Some(Role::Agent { .. }) => match self.agent_post(peer, conv)? {
                AgentPost::Assigned => {
                    let name = conv
                        .agent
                        .as_ref()
                        .map_or_else(String::new, |a| a.name.clone());
                    Ok((Author::Agent, name))
                }
                AgentPost::TakesIt => Err(RelayError::Forbidden("take the conversation first")),
            },
            None => Err(RelayError::NoHello),
        }
    }

    /// Applies a call action from `peer`. Returns the note to record in the conversation, if
    /// the action is worth one; everyone joined should then get [`Core::call_updates`].
    pub fn call_action(
        &mut self,
        now: i64,
        peer: PeerId,
        conv: &ConversationMeta,
        action: CallAction,
    ) -> Result<Option<String>, RelayError> {
        let (side, name) = self.call_party(peer, conv)?;
        let call = self.calls.get_mut(&conv.id);
        let note = match (action, call) {
            (CallAction::Start { kind }, None) => {
                self.calls.insert(
                    conv.id.clone(),
                    Call {
                        kind,
                        caller: side,
                        caller_name: name,
                        caller_peer: peer,
                        callee_peer: None,
                        phase: CallPhase::Ringing,
                        since: now,
                    },
                );
                None
            }
            (CallAction::Start { .. }, Some(_)) => {
                return Err(RelayError::Forbidden("a call is already under way"))
            }
            (CallAction::Accept, Some(call))
                if call.phase == CallPhase::Ringing && call.caller != side =>
            {
                call.phase = CallPhase::Active;
                call.callee_peer = Some(peer);
                call.since = now;
                Some(match call.kind {
                    CallKind::Voice => "Voice call started".to_owned(),
                    CallKind::Video => "Video call started".to_owned(),
                    CallKind::Screen => format!("{} shared their screen", call.caller_name),
                })
            }
            (CallAction::Decline, Some(call))
                if call.phase == CallPhase::Ringing && call.caller != side =>
            {
                self.calls.remove(&conv.id);
                Some("Call declined".to_owned())
            }
            (CallAction::HangUp, Some(call)) if call.is_party(peer) => {
                let note = call.ended_note(now);
                self.calls.remove(&conv.id);
                Some(note)
            }
            (CallAction::Media { media, on }, Some(call))
                if call.phase == CallPhase::Active && call.is_party(peer) =>
            {
                Some(match (media, on) {
                    (MediaKind::Camera, true) => format!("{name} turned video on"),
                    (MediaKind::Camera, false) => format!("{name} turned video off"),
                    (MediaKind::Screen, true) => format!("{name} shared their screen"),
                    (MediaKind::Screen, false) => format!("{name} stopped sharing their screen"),
                })
            }
            (_, None) => return Err(RelayError::Forbidden("there is no call")),
            (_, Some(_)) => return Err(RelayError::Forbidden("not possible in this call")),
        };
        Ok(note)
    }

    /// Ends calls that rang `ring_timeout_ms` or longer; returns them with their note.
    pub fn tick(&mut self, now: i64, ring_timeout_ms: i64) -> Vec<(ConversationId, String)> {
        let missed: Vec<ConversationId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.phase == CallPhase::Ringing && now - c.since >= ring_timeout_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &missed {
            self.calls.remove(id);
        }
        missed
            .into_iter()
            .map(|id| (id, "Missed call".to_owned()))
            .collect()
    }

    /// The call of `conv` as `peer` sees it.
    pub fn call_msg(&self, conv: &ConversationId, peer: PeerId) -> ServerMsg {
        ServerMsg::Call {
            conversation: conv.clone(),
            call: self.calls.get(conv).map(|c| c.info(peer)),
        }
    }

    /// Everyone joined to `conv` gets the call as they see it.
    pub fn call_updates(&self, conv: &ConversationId) -> Vec<(PeerId, ServerMsg)> {
        self.peers
            .iter()
            .filter(|(_, p)| p.joined.contains(conv))
            .map(|(id, _)| (*id, self.call_msg(conv, *id)))
            .collect()
    }

    /// Where signaling from `peer` in `conv` goes: the other end of the active call.
    pub fn signal_target(&self, peer: PeerId, conv: &ConversationId) -> Result<PeerId, RelayError> {
        let call = self
            .calls
            .get(conv)
            .filter(|c| c.phase == CallPhase::Active)
            .ok_or(RelayError::Forbidden("there is no active call"))?;
        match call.callee_peer {
            Some(callee) if call.caller_peer == peer => Ok(callee),
            Some(callee) if callee == peer => Ok(call.caller_peer),
            _ => Err(RelayError::Forbidden("this connection is not in the call")),
        }
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
        core.disconnect(PeerId(10), 0);
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

    fn call_of(core: &Core, peer: u64) -> Option<CallInfo> {
        match core.call_msg(&"c1".into(), PeerId(peer)) {
            ServerMsg::Call { call, .. } => call,
            _ => unreachable!(),
        }
    }

    /// Conversation c1 assigned to agent a (peer 10), visitor 1 and a second visitor tab 3,
    /// all joined.
    fn call_fixture() -> (Core, ConversationMeta) {
        let mut core = fixture();
        core.connect(PeerId(3));
        core.identify(
            PeerId(3),
            Role::Visitor {
                site: site("s1"),
                conversation: "c1".into(),
            },
        );
        let meta = conv("c1", "s1", Some(&agent("a")));
        for p in [1, 3, 10] {
            core.join(PeerId(p), &meta).unwrap();
        }
        (core, meta)
    }

    #[test]
    fn a_call_rings_is_accepted_routes_signals_and_ends_with_its_duration() {
        let (mut core, meta) = call_fixture();
        let start = CallAction::Start {
            kind: CallKind::Voice,
        };
        assert_eq!(core.call_action(1_000, PeerId(10), &meta, start), Ok(None));
        let ringing = call_of(&core, 1).unwrap();
        assert_eq!(
            (ringing.phase, ringing.caller, ringing.party),
            (CallPhase::Ringing, Author::Agent, false)
        );
        assert!(call_of(&core, 10).unwrap().party);
        assert_eq!(core.call_updates(&"c1".into()).len(), 3);
        // No signaling before the answer; the caller cannot answer its own call.
        assert!(core.signal_target(PeerId(10), &"c1".into()).is_err());
        assert!(core
            .call_action(1_500, PeerId(10), &meta, CallAction::Accept)
            .is_err());

        let note = core
            .call_action(2_000, PeerId(1), &meta, CallAction::Accept)
            .unwrap();
        assert_eq!(note.as_deref(), Some("Voice call started"));
        assert_eq!(core.signal_target(PeerId(10), &"c1".into()), Ok(PeerId(1)));
        assert_eq!(core.signal_target(PeerId(1), &"c1".into()), Ok(PeerId(10)));
        // The visitor's other tab sees the call but is not in it.
        assert!(!call_of(&core, 3).unwrap().party);
        assert!(core.signal_target(PeerId(3), &"c1".into()).is_err());
        assert!(core
            .call_action(2_100, PeerId(3), &meta, CallAction::HangUp)
            .is_err());

        let media = CallAction::Media {
            media: MediaKind::Camera,
            on: true,
        };
        let note = core.call_action(3_000, PeerId(1), &meta, media).unwrap();
        assert_eq!(note.as_deref(), Some("Visitor turned video on"));
        let note = core
            .call_action(194_000, PeerId(1), &meta, CallAction::HangUp)
            .unwrap();
        assert_eq!(note.as_deref(), Some("Call ended, 3:12"));
        assert_eq!(call_of(&core, 10), None);
    }

    #[test]
    fn unanswered_declined_and_abandoned_calls() {
        let (mut core, meta) = call_fixture();
        let start = CallAction::Start {
            kind: CallKind::Video,
        };
        core.call_action(0, PeerId(1), &meta, start).unwrap();
        assert!(
            core.call_action(1, PeerId(10), &meta, start).is_err(),
            "one call at a time"
        );
        assert!(core.tick(29_999, RING_TIMEOUT_MS).is_empty());
        assert_eq!(
            core.tick(30_000, RING_TIMEOUT_MS),
            vec![("c1".into(), "Missed call".to_owned())]
        );

        core.call_action(40_000, PeerId(1), &meta, start).unwrap();
        let note = core
            .call_action(41_000, PeerId(10), &meta, CallAction::Decline)
            .unwrap();
        assert_eq!(note.as_deref(), Some("Call declined"));

        core.call_action(50_000, PeerId(10), &meta, start).unwrap();
        core.call_action(51_000, PeerId(3), &meta, CallAction::Accept)
            .unwrap();
        assert_eq!(
            core.disconnect(PeerId(3), 116_000),
            vec![("c1".into(), "Call ended, 1:05".to_owned())]
        );
        assert_eq!(call_of(&core, 1), None);
    }

    #[test]
    fn only_the_conversations_two_sides_can_call() {
        let (mut core, meta) = call_fixture();
        let start = CallAction::Start {
            kind: CallKind::Voice,
        };
        let waiting = conv("c1", "s1", None);
        assert!(matches!(
            core.call_action(0, PeerId(1), &waiting, start),
            Err(RelayError::Forbidden(_))
        ));
        assert!(matches!(
            core.call_action(0, PeerId(10), &waiting, start),
            Err(RelayError::Forbidden(_))
        ));
        let theirs = conv("c1", "s1", Some(&agent("z")));
        assert!(matches!(
            core.call_action(0, PeerId(10), &theirs, start),
            Err(RelayError::AlreadyTaken(_))
        ));
        assert_eq!(
            core.call_action(0, PeerId(2), &meta, start),
            Err(RelayError::NotFound)
        );
        assert_eq!(
            core.call_action(0, PeerId(11), &meta, start),
            Err(RelayError::NotFound)
        );
        assert!(core
            .call_action(0, PeerId(1), &meta, CallAction::HangUp)
            .is_err());
        assert_eq!(duration(3_725_000), "1:02:05");
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
