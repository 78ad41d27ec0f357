//! The relay's brain, sans I/O. Every protocol rule, permission and state change lives here,
//! behind one entry point: [`Core::handle`] takes the time and an [`Event`] (a frame from a
//! connection, the answer to a store request, a message from the bus, a clock tick) and
//! returns the [`Effect`]s to carry out (send this to that connection, read or write this,
//! publish that). The hub only executes them: no sockets, no tokio and no clock here, so every
//! rule is unit-tested below in microseconds.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use escalera_protocol::{
    check_email, check_text, AgentId, AgentRef, Attachment, Author, CallAction, CallInfo, CallKind,
    CallPhase, ClientMsg, ClientMsgId, ConversationId, ConversationSummary, MediaConfig, MediaKind,
    Message, Presence, Rating, ReadMark, ServerMsg, SiteFeatures, SiteKey, SiteLook, SystemEvent,
    VisitorInfo, VisitorToken, MAX_CLIENT_ID_CHARS, MAX_COMMENT_CHARS, MAX_FRAME_BYTES,
    MAX_TEXT_CHARS, MAX_VISITOR_NAME_CHARS, PROTOCOL_VERSION,
};

use crate::error::RelayError;
use crate::presence::Team;
use crate::routing::Desk;
use crate::store::{OpenConversation, VerifiedUser};

/// One connection (or one HTTP request acting in a conversation), as the relay numbers them.
/// Never sent to a browser.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct PeerId(pub u64);

/// A call's end: a connection on a relay node (node 0 when the relay runs alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct End {
    /// The node the connection is on.
    pub node: u64,
    /// The connection, as that node numbers them.
    pub peer: PeerId,
}

/// Which sites an agent serves.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
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

/// Who a connection is, once it said hello (an HTTP request is known from the start).
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

/// What an agent's action in a conversation means.
#[derive(Debug, PartialEq, Eq)]
pub enum AgentPost {
    /// They have it already.
    Assigned,
    /// It is waiting: the action takes it first.
    TakesIt,
}

/// The permission rules: the only place they are written.
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

    /// Whether an agent may act in `conv`: in their own or a waiting one (which takes it),
    /// not in one another agent has.
    pub fn agent_post(&self, conv: &ConversationMeta) -> Result<AgentPost, RelayError> {
        let me = self.may_take(conv)?;
        Ok(match &conv.agent {
            Some(a) if a.id == me.id => AgentPost::Assigned,
            _ => AgentPost::TakesIt,
        })
    }

    /// Whether this role may post (a message or a file) into `conv`: a visitor into their
    /// own, an agent as [`Role::agent_post`] says.
    pub fn may_post(&self, conv: &ConversationMeta) -> Result<(), RelayError> {
        match self {
            Role::Agent { .. } => self.agent_post(conv).map(drop),
            Role::Visitor { .. } => self.may_read(conv),
        }
    }
}

/// What the relay knows of a conversation when deciding: its site and its assignee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationMeta {
    /// The conversation.
    pub id: ConversationId,
    /// The site it belongs to.
    pub site: SiteKey,
    /// The agent it is assigned to (or was, when it closed).
    pub agent: Option<AgentRef>,
    /// An agent closed it.
    pub closed: bool,
    /// Its visitor rated it since it was closed.
    pub rated: bool,
    /// What its site offers.
    pub features: SiteFeatures,
}

impl ConversationMeta {
    /// An open conversation.
    pub fn new(id: ConversationId, site: SiteKey, agent: Option<AgentRef>) -> Self {
        Self {
            id,
            site,
            agent,
            closed: false,
            rated: false,
            features: SiteFeatures::default(),
        }
    }
}

/// How a site's users prove who they are (`Escalera.identify`).
#[derive(Clone, Debug, Default)]
pub struct IdentityRule {
    /// The site's identity secret (the key of the hash).
    pub secret: String,
    /// A visitor must be a verified user.
    pub required: bool,
}

impl IdentityRule {
    /// The user a hello's identity proves, `None` without one; refused when it is wrong, or
    /// missing where the site requires it.
    pub fn check(
        &self,
        identity: Option<&escalera_protocol::Identity>,
    ) -> Result<Option<VerifiedUser>, RelayError> {
        let Some(i) = identity else {
            return if self.required {
                Err(RelayError::Forbidden(
                    "this chat is for the site's logged-in customers: log in on the site first",
                ))
            } else {
                Ok(None)
            };
        };
        i.check().map_err(RelayError::BadText)?;
        if !crate::secrets::verify_identity(&self.secret, &i.id, &i.hash) {
            return Err(RelayError::Forbidden(
                "the page's proof of who you are is wrong: the site must sign your id with its identity secret",
            ));
        }
        Ok(Some(VerifiedUser {
            id: i.id.clone(),
            name: i.name.clone().filter(|n| !n.trim().is_empty()),
            email: i.email.clone().filter(|e| !e.trim().is_empty()),
        }))
    }
}

/// Who opened a connection, as established before any frame.
#[derive(Clone, Debug)]
pub enum Caller {
    /// A widget of this site (origin already checked).
    Visitor {
        /// The site.
        site: SiteKey,
        /// Its display name, for the welcome.
        site_name: String,
        /// What it offers, for the welcome and a new conversation.
        features: SiteFeatures,
        /// How its widget looks, for the welcome.
        look: SiteLook,
        /// How its users prove who they are.
        identity: IdentityRule,
        /// Where it comes from (an IPv6 host counts as its /64), for the per-address limits.
        address: IpAddr,
    },
    /// An agent with a valid session.
    Agent {
        /// The agent.
        agent: AgentRef,
        /// The sites they serve.
        scope: Scope,
        /// The hash of the session cookie it came with: the socket lives as long as that.
        session: String,
    },
    /// An HTTP request (an upload) by someone already known.
    Http(Role),
}

/// A message about to be stored.
#[derive(Clone, Debug, PartialEq)]
pub struct NewMessage {
    /// The conversation.
    pub conversation: ConversationId,
    /// The sender's id, for deduplication; `None` for system messages.
    pub client_id: Option<ClientMsgId>,
    /// Who wrote it.
    pub author: Author,
    /// The agent's name for agent messages.
    pub author_name: Option<String>,
    /// The text.
    pub text: String,
    /// What a system message records, for each browser to say in its own language.
    pub event: Option<SystemEvent>,
    /// A file whose bytes are already on disk; recorded with the message.
    pub attachment: Option<Attachment>,
    /// Now, in ms since the epoch.
    pub at: i64,
}

impl NewMessage {
    /// The message as stored under `seq`.
    pub fn stored(self, seq: u64) -> Message {
        Message {
            conversation: self.conversation,
            seq,
            client_id: self.client_id,
            author: self.author,
            author_name: self.author_name,
            text: self.text,
            event: self.event.map(Box::new),
            attachment: self.attachment,
            at: self.at,
        }
    }
}

/// Who hears that a message was stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Nobody in particular (a system note).
    None,
    /// This connection sent it: it gets the ack.
    Ack(PeerId),
    /// This HTTP request posted it: it gets the stored message.
    Http(PeerId),
}

/// What happens in a conversation, as it travels between connections (through the bus, so
/// another relay node can deliver it to its own connections).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BusEvent {
    /// A message was stored (the site's agents get the conversation's new list row at the
    /// next [`Event::Flush`]).
    Message {
        /// The site.
        site: SiteKey,
        /// The stored message.
        message: Box<Message>,
    },
    /// An agent took the conversation: its visitor is told.
    AgentJoined {
        /// The conversation.
        conversation: ConversationId,
        /// The agent's display name.
        agent_name: String,
    },
    /// The conversation's call changed (or is over, `call.over`): every node takes the newer
    /// state, and everyone joined gets it as they see it.
    Call {
        /// The conversation.
        conversation: ConversationId,
        /// The call as the publishing node has it.
        call: Box<Call>,
        /// Sent again by this node, which has an end of it, only so that nodes that started
        /// since (or took it for gone) learn where its ends are: nobody is told unless it
        /// changed something.
        renewal: Option<u64>,
    },
    /// Signaling for the end of `to`'s side of the call, on whichever node it is.
    Signal {
        /// The conversation.
        conversation: ConversationId,
        /// The side it is for.
        to: Author,
        /// The payload, as the other end sent it.
        payload: String,
    },
    /// How a node sees an agent (their consoles there, a call there, their choice): every
    /// node combines what each says.
    Presence {
        /// The node.
        node: u64,
        /// The agent, as that node sees them.
        seen: Box<crate::presence::Seen>,
    },
    /// The open conversations changed on a node (stored, assigned, handed back, closed):
    /// every node's routing sees every conversation.
    Desk {
        /// The node it changed on.
        node: u64,
        /// The conversation.
        conversation: ConversationId,
        /// Its site.
        site: SiteKey,
        /// What changed.
        change: DeskChange,
    },
    /// A node stopped being heard (never published: the bus tells its own node): its
    /// connections' call ends are away, and its consoles gone.
    NodeGone {
        /// The node.
        node: u64,
    },
    /// An agent closed the conversation: its visitor is told.
    Closed {
        /// The conversation.
        conversation: ConversationId,
    },
    /// Someone is typing: the other side hears it (a visitor's agents joined, or an assigned
    /// agent's visitor).
    Typing {
        /// The conversation.
        conversation: ConversationId,
        /// Who types.
        author: Author,
        /// The agent's name, when an agent types.
        name: Option<String>,
    },
    /// An agent read the conversation up to `seq` (stored): its visitor sees it.
    Read {
        /// The conversation.
        conversation: ConversationId,
        /// How far.
        seq: u64,
    },
}

/// A change to the open conversations, as routing sees it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeskChange {
    /// Stored (or reopened), with its agent if it has one, waiting since `since`.
    Opened {
        /// Its agent.
        agent: Option<AgentId>,
        /// When, in ms since the epoch.
        since: i64,
    },
    /// An agent has it now.
    Assigned {
        /// The agent.
        agent: AgentId,
    },
    /// Handed back to the queue by `by`.
    Requeued {
        /// Who handed it back.
        by: AgentId,
    },
    /// Closed.
    Closed,
}

/// What the bus is asked to carry to this node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// The team's presence and the open conversations, from every node (every node with
    /// others subscribes to it at start).
    Cluster,
    /// Events of one conversation.
    Conversation(ConversationId),
    /// New and changed conversations of one site (for its agents).
    Site(SiteKey),
    /// ...of every site.
    AllSites,
}

/// What a frame or request waits for: the conversation it names, read from the store.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// A frame from a socket.
    Frame(ClientMsg),
    /// A file uploaded over HTTP, already on disk, to post as a message.
    Upload {
        /// The file.
        attachment: Attachment,
        /// The uploader's id for it, for deduplication.
        client_id: Option<ClientMsgId>,
    },
}

/// What the core is told.
#[derive(Clone, Debug)]
pub enum Event {
    /// A session ended here (logout): its sockets close at once.
    Revoked {
        /// The session's hash.
        session: String,
    },
    /// An admin changed a site: its open widgets follow at once.
    SiteChanged {
        /// The site.
        site: SiteKey,
        /// Its name now.
        site_name: String,
        /// What it offers now.
        features: SiteFeatures,
        /// How it looks now.
        look: SiteLook,
    },
    /// An admin changed an agent (sites, role, limit) or ended their sessions (disabled, a new
    /// password): their consoles close now, and reconnect as they are now if they still can.
    AgentChanged {
        /// The agent.
        agent: AgentId,
        /// Their sessions ended: the consoles are told so (and go back to the login).
        ended: bool,
    },
    /// The answer to [`Effect::CheckSessions`]: which of the sessions asked about still live
    /// (not expired, its agent not disabled or removed).
    SessionsLive {
        /// The sessions asked about.
        asked: Vec<String>,
        /// Those still live.
        live: Vec<String>,
    },
    /// A connection opened (or an HTTP request began) as `caller`.
    Opened {
        /// The new connection.
        peer: PeerId,
        /// Who it is.
        caller: Caller,
    },
    /// A text frame arrived, unparsed.
    Text {
        /// From.
        peer: PeerId,
        /// The frame.
        text: String,
    },
    /// A binary frame arrived (the protocol has none).
    Binary {
        /// From.
        peer: PeerId,
    },
    /// An HTTP upload, already on disk, for `conversation`.
    Upload {
        /// The request.
        peer: PeerId,
        /// Where it goes.
        conversation: ConversationId,
        /// The file.
        attachment: Attachment,
        /// The uploader's id for it.
        client_id: Option<ClientMsgId>,
    },
    /// The answer to [`Effect::Load`].
    Loaded {
        /// The asker.
        peer: PeerId,
        /// What it waits for.
        request: Request,
        /// The conversation, if it exists.
        meta: Option<ConversationMeta>,
    },
    /// The answer to [`Effect::ResolveVisitor`].
    VisitorReady {
        /// The visitor's connection.
        peer: PeerId,
        /// Their token (the one they had, or a new one).
        token: VisitorToken,
        /// Their conversation.
        conversation: ConversationMeta,
        /// Whether it is stored; a new visitor's is not until they first say something.
        saved: bool,
        /// ICE servers and upload limit.
        media: MediaConfig,
    },
    /// The answer to [`Effect::Create`]: the conversation is stored, or why not.
    Created {
        /// The conversation.
        conversation: ConversationMeta,
        /// Why it could not be.
        error: Option<RelayError>,
    },
    /// The answer to [`Effect::LoadDesk`].
    DeskReady {
        /// The agent's connection.
        peer: PeerId,
        /// Every agent (enabled) with their sites, chosen presence and chat limit, for the
        /// team and routing.
        team: Vec<(AgentRef, Scope, Presence, u32)>,
        /// Their list.
        conversations: Vec<ConversationSummary>,
        /// Their read marks.
        read: Vec<ReadMark>,
        /// ICE servers and upload limit.
        media: MediaConfig,
    },
    /// The answer to [`Effect::ReadHistory`].
    History {
        /// The joiner.
        peer: PeerId,
        /// The conversation.
        conversation: ConversationId,
        /// Up to a page of messages.
        messages: Vec<Message>,
        /// Nothing the joiner may see is missing up to this seq.
        upto: u64,
        /// Whether the page was full (there may be more after `upto`).
        full: bool,
        /// How far the agents have read it, when asked.
        read: Option<u64>,
    },
    /// The answer to [`Effect::Assign`]: `holder` is who has the conversation now.
    Assigned {
        /// Who asked (none when routing did).
        peer: Option<PeerId>,
        /// The conversation as it was when the agent acted.
        meta: ConversationMeta,
        /// The agent who wanted it.
        agent: AgentRef,
        /// Whether they got it.
        won: bool,
        /// Who has it, when they lost.
        holder: Option<AgentRef>,
        /// What the agent was doing.
        then: AfterTake,
    },
    /// The answer to [`Effect::Append`], in commit order for each conversation.
    Appended {
        /// Who hears of it.
        reply: Reply,
        /// The conversation's site.
        site: SiteKey,
        /// The message as stored (the earlier one when `client_id` was seen before).
        message: Message,
        /// False when it was a resend of a stored message.
        fresh: bool,
    },
    /// A store request for `peer` failed.
    Failed {
        /// The asker.
        peer: PeerId,
        /// The conversation it was about, if any.
        conversation: Option<ConversationId>,
        /// The chat message it was about, if any.
        client_id: Option<ClientMsgId>,
        /// What to tell them.
        error: RelayError,
    },
    /// The answer to [`Effect::MarkRead`]: the mark is stored.
    MarkedRead {
        /// The conversation.
        conversation: ConversationId,
        /// Read up to here.
        seq: u64,
    },
    /// The bus delivered an event to this node.
    Delivered(BusEvent),
    /// A connection closed (or an HTTP request finished).
    Closed {
        /// The connection.
        peer: PeerId,
    },
    /// The relay started: the active calls in the store, whose ends must resume, and the
    /// open conversations, for routing.
    Restored {
        /// The calls.
        calls: Vec<(ConversationId, CallRecord)>,
        /// The open conversations.
        open: Vec<OpenConversation>,
    },
    /// The answer to [`Effect::Conclude`].
    Concluded {
        /// Who asked.
        peer: PeerId,
        /// The conversation as it was.
        meta: ConversationMeta,
        /// The agent closing it.
        agent: AgentRef,
        /// Whether it is closed now (false: someone else has it, or it was closed).
        ok: bool,
    },
    /// The answer to [`Effect::Transfer`].
    Transferred {
        /// Who asked.
        peer: PeerId,
        /// The conversation as it was.
        meta: ConversationMeta,
        /// The agent handing it over.
        from: AgentRef,
        /// Who gets it (none: the queue).
        to: Option<AgentRef>,
        /// For the agents.
        note: Option<String>,
        /// Whether it moved (false: it was not `from`'s any more).
        ok: bool,
    },
    /// The answer to [`Effect::Rate`].
    Rated {
        /// Who asked.
        peer: PeerId,
        /// The conversation.
        meta: ConversationMeta,
        /// The verdict.
        rating: Rating,
        /// Why.
        comment: Option<String>,
        /// Whether it was recorded (false: rated already, or open again).
        ok: bool,
    },
    /// The clock: ends calls that rang too long, or waited too long for an end.
    Tick,
    /// A few times a second: the list rows of conversations that got messages since the last
    /// flush are read, once each however many messages came.
    Flush,
    /// The list rows read for a flush: to the agents of each one's site.
    Summaries(Vec<ConversationSummary>),
}

/// What the core asks the hub to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Ask which of these sessions still live; answer with [`Event::SessionsLive`].
    CheckSessions(Vec<String>),
    /// Send a frame to a connection.
    Send(PeerId, ServerMsg),
    /// Close a connection (after what was sent to it).
    Close(PeerId),
    /// Read the conversation's meta; answer with [`Event::Loaded`].
    Load {
        /// The asker.
        peer: PeerId,
        /// The conversation.
        conversation: ConversationId,
        /// What waits for it.
        request: Request,
    },
    /// Find the visitor's conversation by token, or make up a new token and conversation id
    /// (stored only later, by [`Effect::Create`]); answer with [`Event::VisitorReady`].
    ResolveVisitor {
        /// The visitor's connection.
        peer: PeerId,
        /// Their site.
        site: SiteKey,
        /// The token they passed.
        token: Option<VisitorToken>,
        /// The conversation of that token when it is known here but not stored yet.
        unsaved: Option<ConversationId>,
        /// The verified user the page says this is: their conversation, on any device.
        user: Option<VerifiedUser>,
        /// A one-time link back to a conversation, from an email.
        resume: Option<String>,
    },
    /// Store a new visitor's conversation (their first message is on its way); answer with
    /// [`Event::Created`].
    Create {
        /// The conversation.
        conversation: ConversationMeta,
        /// The visitor's token.
        token: VisitorToken,
        /// Where the visitor came from, for the agents' list.
        address: IpAddr,
        /// The verified user it belongs to.
        user: Option<VerifiedUser>,
    },
    /// Send `peer` the full ICE servers (TURN credentials included), now that its
    /// conversation has an agent.
    SendMedia {
        /// The visitor's connection.
        peer: PeerId,
        /// Its conversation.
        conversation: ConversationId,
    },
    /// Read these conversations' list rows; answer with [`Event::Summaries`].
    LoadSummaries(Vec<ConversationId>),
    /// Read an agent's list and read marks; answer with [`Event::DeskReady`].
    LoadDesk {
        /// The agent's connection.
        peer: PeerId,
        /// The agent.
        agent: AgentId,
        /// Their sites.
        scope: Scope,
    },
    /// Read a page of history; answer with [`Event::History`].
    ReadHistory {
        /// The joiner.
        peer: PeerId,
        /// The conversation.
        conversation: ConversationId,
        /// After this seq.
        after: u64,
        /// At most this many.
        limit: u32,
        /// For a visitor: without the agents' notes, and with how far the agents have read
        /// it (for the last page).
        for_visitor: bool,
    },
    /// Assign a waiting conversation, first come first served; answer with
    /// [`Event::Assigned`].
    Assign {
        /// Who asked (none: routing).
        peer: Option<PeerId>,
        /// The conversation.
        meta: ConversationMeta,
        /// The agent.
        agent: AgentRef,
        /// What they were doing.
        then: AfterTake,
    },
    /// Store a message; answer with [`Event::Appended`] (after the commit).
    Append {
        /// The message.
        message: NewMessage,
        /// The conversation's site.
        site: SiteKey,
        /// Who hears of it.
        reply: Reply,
    },
    /// Record an agent's read mark; answer with [`Event::MarkedRead`].
    MarkRead {
        /// The agent.
        agent: AgentId,
        /// The conversation.
        conversation: ConversationId,
        /// Up to here.
        seq: u64,
    },
    /// Keep what an agent chose to be.
    SavePresence {
        /// The agent.
        agent: AgentId,
        /// Their choice.
        presence: Presence,
    },
    /// Store the conversation's active call (`None`: it is over).
    SaveCall {
        /// The conversation.
        conversation: ConversationId,
        /// The call.
        call: Option<CallRecord>,
    },
    /// Close a conversation; answer with [`Event::Concluded`].
    Conclude {
        /// Who asked.
        peer: PeerId,
        /// The conversation.
        meta: ConversationMeta,
        /// The agent closing it.
        agent: AgentRef,
    },
    /// Move an agent's conversation to another agent or the queue; answer with
    /// [`Event::Transferred`].
    Transfer {
        /// Who asked.
        peer: PeerId,
        /// The conversation.
        meta: ConversationMeta,
        /// Its agent now.
        from: AgentRef,
        /// Who gets it (none: the queue).
        to: Option<AgentRef>,
        /// For the agents.
        note: Option<String>,
    },
    /// Record a visitor's rating; answer with [`Event::Rated`].
    Rate {
        /// Who asked.
        peer: PeerId,
        /// The conversation.
        meta: ConversationMeta,
        /// The verdict.
        rating: Rating,
        /// Why.
        comment: Option<String>,
    },
    /// Reopen a closed conversation with `agent` (none: the queue), before the visitor's
    /// message that reopens it.
    Reopen {
        /// The conversation.
        conversation: ConversationId,
        /// Who has it again.
        agent: Option<AgentId>,
    },
    /// Keep where a visitor is.
    SaveVisit {
        /// The conversation.
        conversation: ConversationId,
        /// What their browser says.
        info: VisitorInfo,
    },
    /// Keep the name and email agents gave a visitor.
    SaveVisitor {
        /// The conversation.
        conversation: ConversationId,
        /// The name, if any.
        name: Option<String>,
        /// The email, if any.
        email: Option<String>,
    },
    /// Mail an agent's reply (`seq`, and any that follow it soon) to the visitor, who has no
    /// socket open (when they left an email).
    MailReply {
        /// The conversation.
        conversation: ConversationId,
        /// Its site.
        site: SiteKey,
        /// The reply.
        seq: u64,
    },
    /// Mail the site's agents: this conversation has waited since `since` with none of them
    /// available.
    MailAlert {
        /// The conversation.
        conversation: ConversationId,
        /// Its site.
        site: SiteKey,
        /// When it started waiting, in ms.
        since: i64,
    },
    /// Mail the conversation's transcript to the visitor who asked.
    MailTranscript {
        /// The conversation.
        conversation: ConversationId,
        /// Its site.
        site: SiteKey,
        /// Where.
        email: String,
    },
    /// Keep the email a visitor left.
    SaveEmail {
        /// The conversation.
        conversation: ConversationId,
        /// The address.
        email: String,
    },
    /// Hand an event to the bus.
    Publish(BusEvent),
    /// This node now needs a topic's events.
    Subscribe(Topic),
    /// ...no longer.
    Unsubscribe(Topic),
}

/// What an agent was doing when their action took a waiting conversation first.
#[derive(Clone, Debug, PartialEq)]
pub enum AfterTake {
    /// Only taking it.
    Nothing,
    /// Writing a chat message.
    Chat {
        /// Their id for it.
        client_id: ClientMsgId,
        /// The text.
        text: String,
    },
    /// Acting on the call.
    Call(CallAction),
    /// Uploading a file.
    File {
        /// The file.
        attachment: Attachment,
        /// Their id for it.
        client_id: Option<ClientMsgId>,
    },
}

/// How long a call rings before it is missed, unless configured otherwise.
pub const RING_TIMEOUT_MS: i64 = 30_000;
/// How long an active call waits for a party that lost its connection, unless configured
/// otherwise.
pub const CALL_GRACE_MS: i64 = 30_000;

/// A visitor may have a conversation's transcript mailed once a minute.
const TRANSCRIPT_EVERY_MS: i64 = 60_000;

/// The core's settings.
#[derive(Clone, Debug)]
pub struct Limits {
    /// How long a call rings before it is missed.
    pub ring_timeout_ms: i64,
    /// How long an active call waits for an end whose connection dropped.
    pub call_grace_ms: i64,
    /// This node's number on the bus: 0 when the relay runs alone, which also means it
    /// renews nothing and keeps every call it knows of.
    pub node: u64,
    /// Frames a connection may send per second...
    pub frame_rate: u32,
    /// ...and at once.
    pub frame_burst: u32,
    /// Messages per history page.
    pub history_page: u32,
    /// Live messages held for a connection still reading history; past this it is closed
    /// (it reconnects and resumes).
    pub catch_up_buffer: usize,
    /// How long a new socket has to say hello before it is closed.
    pub hello_deadline_ms: i64,
    /// Sockets open at once for one visitor (one token: their tabs and devices).
    pub sockets_per_visitor: usize,
    /// New conversations stored per address in an hour (a burst of this many, then one
    /// more each `1/n` hour).
    pub conversations_per_address: u32,
    /// Chat messages per second from one visitor, over all their sockets...
    pub visitor_chat_rate: u32,
    /// ...and at once.
    pub visitor_chat_burst: u32,
    /// Chat messages per second from every visitor of one address together...
    pub address_chat_rate: u32,
    /// ...and at once.
    pub address_chat_burst: u32,
    /// Call starts and device toggles per conversation per minute (ending a call is never
    /// limited).
    pub call_actions_per_minute: u32,
    /// History messages per second one visitor may read over all their sockets (a burst of
    /// five times this first): re-joining a long conversation from many sockets is bounded.
    pub visitor_history_rate: u32,
    /// How long an agent's last console may be gone before they are shown offline.
    pub presence_grace_ms: i64,
    /// Seconds of no input with the tab hidden before a console says `away` by itself.
    pub away_after_secs: u64,
    /// Whether the relay sends email.
    pub email: bool,
    /// With email: how long a conversation waits with no agent available before its site's
    /// agents are mailed.
    pub alert_after_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ring_timeout_ms: RING_TIMEOUT_MS,
            call_grace_ms: CALL_GRACE_MS,
            node: 0,
            frame_rate: 20,
            frame_burst: 100,
            history_page: 500,
            catch_up_buffer: 1_000,
            hello_deadline_ms: HELLO_DEADLINE_MS,
            sockets_per_visitor: 16,
            conversations_per_address: 60,
            visitor_chat_rate: 2,
            visitor_chat_burst: 30,
            address_chat_rate: 30,
            address_chat_burst: 300,
            call_actions_per_minute: 20,
            visitor_history_rate: 1_000,
            presence_grace_ms: 30_000,
            away_after_secs: 300,
            email: false,
            alert_after_ms: 300_000,
        }
    }
}

/// The window of [`Limits::conversations_per_address`].
pub const HOUR_MS: i64 = 3_600_000;

/// How long a new socket has to say hello, by default.
pub const HELLO_DEADLINE_MS: i64 = 10_000;

/// A conversation's call, as it is stored: enough to carry it over a restart of the relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// The conversation's site.
    pub site: SiteKey,
    /// How it started.
    pub kind: CallKind,
    /// Which side called.
    pub caller: Author,
    /// The caller's display name.
    pub caller_name: String,
    /// When it was answered, in ms since the epoch.
    pub since: i64,
}

/// Signals held for an end that is reconnecting, at most.
const HELD_SIGNALS: usize = 256;

/// How often a node with other nodes says again where its call ends are.
pub const CALL_RENEW_MS: i64 = 2_000;

/// How the id of a call read from the store begins (the store keeps no id).
const RESTORED: &str = "r";

/// How long an ended call's id is remembered, so a late state of it changes nothing.
const CALLS_OVER_KEPT_MS: i64 = 600_000;

/// A conversation's call. It belongs to the conversation's two sides; each side's end is the
/// connection that took part, on whichever node. Another tab of the same person sees the call
/// but is not in it. When an end's connection drops (or its node is gone), the call goes on
/// without it for the grace period, and the side's next connection that says `resume`
/// becomes its end.
///
/// Every node with a connection in the conversation keeps a copy: each change is made on one
/// node, numbered (`rev`, then `by`), and published whole, and the higher number wins
/// everywhere. A node trusts itself about its own connections, and an ended call stays ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Call {
    /// This call among the conversation's calls: the node that started it and when.
    id: String,
    rev: u64,
    /// The node that made the change numbered `rev`.
    by: u64,
    site: SiteKey,
    kind: CallKind,
    caller: Author,
    caller_name: String,
    caller_end: Option<End>,
    callee_end: Option<End>,
    phase: CallPhase,
    since: i64,
    /// Since when an end has been missing.
    away_since: Option<i64>,
    /// Over: the last state, so every node forgets it.
    over: bool,
    /// Signals for a missing end, with the side they are for (kept on the sender's node).
    #[serde(skip)]
    held: Vec<(Author, String)>,
    /// Read from the store as the relay started: where its ends are is unknown until they
    /// resume, or a node that has them says.
    #[serde(skip)]
    restored: bool,
}

impl Call {
    fn is_party(&self, end: End) -> bool {
        self.caller_end == Some(end) || self.callee_end == Some(end)
    }

    /// The end of `side`.
    fn end(&mut self, side: Author) -> &mut Option<End> {
        if side == self.caller {
            &mut self.caller_end
        } else {
            &mut self.callee_end
        }
    }

    fn info(&self, end: End) -> CallInfo {
        let party = self.is_party(end);
        let away = self.phase == CallPhase::Active
            && match (party, self.caller_end, self.callee_end) {
                (true, Some(c), other) if c == end => other.is_none(),
                (true, other, _) => other.is_none(),
                (false, a, b) => a.is_none() || b.is_none(),
            };
        CallInfo {
            phase: self.phase,
            kind: self.kind,
            caller: self.caller,
            caller_name: self.caller_name.clone(),
            since: self.since,
            party,
            away,
        }
    }

    fn record(&self) -> CallRecord {
        CallRecord {
            site: self.site.clone(),
            kind: self.kind,
            caller: self.caller,
            caller_name: self.caller_name.clone(),
            since: self.since,
        }
    }

    /// What the record says when this call is over at `end`.
    fn ended_note(&self, end: i64) -> SystemEvent {
        match self.phase {
            CallPhase::Ringing => SystemEvent::CallCancelled,
            CallPhase::Active => SystemEvent::CallEnded {
                seconds: u64::try_from(end - self.since).unwrap_or(0) / 1000,
            },
        }
    }

    /// The id its note named `what` is stored under: every node that decides the same thing
    /// about this call (it rang out, its grace ran out) writes the note, and the record keeps
    /// one.
    fn note_id(&self, what: &str) -> ClientMsgId {
        ClientMsgId(match self.phase {
            // By when it was answered, which a copy read from the store knows too.
            CallPhase::Active => format!("call-a{}-{what}", self.since),
            // Never stored: its id, which every copy has.
            CallPhase::Ringing => format!("call-{}-{what}", self.id),
        })
    }

    /// Whether `other` is a state of this call: the same id, or one of the two read from the
    /// store (which cannot know the id), answered at the same moment.
    fn same_call(&self, other: &Call) -> bool {
        self.id == other.id
            || (self.since == other.since && (self.restored || other.id.starts_with(RESTORED)))
    }

    /// Takes back the ends on `node` that `renewal`, the same state said again by `node`,
    /// has and this copy lost when `node` was taken for gone (silent a while, then heard
    /// again); whether there were any.
    fn ends_back(&mut self, renewal: &Call, node: u64) -> bool {
        if (renewal.rev, renewal.by) != (self.rev, self.by) {
            return false;
        }
        let mut back = false;
        for (mine, theirs) in [
            (&mut self.caller_end, renewal.caller_end),
            (&mut self.callee_end, renewal.callee_end),
        ] {
            if mine.is_none() && theirs.is_some_and(|e| e.node == node) {
                *mine = theirs;
                back = true;
            }
        }
        if back && self.caller_end.is_some() && self.callee_end.is_some() {
            self.away_since = None;
        }
        back
    }

    /// Whether it outranks `other`, a state of the same call.
    fn newer_than(&self, other: &Call) -> bool {
        (self.rev, self.by) > (other.rev, other.by)
    }

    /// The conversation's site.
    pub fn site(&self) -> &SiteKey {
        &self.site
    }

    fn ends_mut(&mut self) -> [&mut Option<End>; 2] {
        [&mut self.caller_end, &mut self.callee_end]
    }
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Hello {
    /// Not yet.
    Waiting,
    /// Said; the store is being asked.
    Pending,
    /// Welcomed.
    Done,
}

/// A page of history, as the store read it.
#[derive(Debug)]
struct Page {
    messages: Vec<Message>,
    upto: u64,
    full: bool,
    read: Option<u64>,
}

/// A joined conversation: live, or still reading its history (live messages wait in
/// `buffer` until the last page is sent, so none is missed, doubled or out of order).
#[derive(Debug)]
enum Joined {
    CatchingUp {
        after: u64,
        buffer: Vec<Message>,
        /// Live already, filling a gap: what is read goes out as messages, not as history.
        gap: bool,
    },
    /// Sent every message up to seq `last` (a visitor's skipped notes included). Another
    /// node's message may arrive ahead of one before it: the connection then catches up from
    /// the store, where every seq below a stored one already is.
    Live { last: u64 },
}

#[derive(Debug)]
struct Peer {
    caller: Caller,
    role: Option<Role>,
    hello: Hello,
    /// When it opened (for the hello deadline).
    opened: i64,
    limit: RateLimit,
    joined: HashMap<ConversationId, Joined>,
    /// A visitor's verified user, from their hello.
    user: Option<VerifiedUser>,
}

/// A few connections, in order: a conversation's visitor sockets (mostly one). A sorted `Vec`,
/// where a `BTreeSet` would allocate a node of eleven for the one.
#[derive(Debug, Default)]
struct PeerSet(Vec<PeerId>);

impl PeerSet {
    /// Adds `peer`; whether it was new.
    fn insert(&mut self, peer: PeerId) -> bool {
        match self.0.binary_search(&peer) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, peer);
                true
            }
        }
    }

    /// Removes `peer`; whether it was there.
    fn remove(&mut self, peer: &PeerId) -> bool {
        match self.0.binary_search(peer) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    #[cfg(test)]
    fn contains(&self, peer: &PeerId) -> bool {
        self.0.binary_search(peer).is_ok()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a PeerSet {
    type Item = &'a PeerId;
    type IntoIter = std::slice::Iter<'a, PeerId>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// What [`Core::census`] counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Visitor sockets past their hello.
    pub visitors: usize,
    /// Agent sockets past their hello.
    pub agents: usize,
    /// Calls answered and not over.
    pub calls_active: usize,
}

/// Connections, their roles and subscriptions, and the calls under way.
#[derive(Debug, Default)]
pub struct Core {
    limits: Limits,
    /// Boxed, like `unsaved`'s values: one per socket, and a map that grows by doubling
    /// would otherwise keep up to twice as many empty slots of their full size.
    peers: HashMap<PeerId, Box<Peer>>,
    /// Who has joined each conversation.
    members: HashMap<ConversationId, BTreeSet<PeerId>>,
    /// Each conversation's visitor connections (joined or not).
    visitors: HashMap<ConversationId, PeerSet>,
    /// Agent connections by site, and those serving every site.
    site_agents: HashMap<SiteKey, BTreeSet<PeerId>>,
    all_sites_agents: BTreeSet<PeerId>,
    /// Conversations with new messages whose list rows this node's agents have not had yet.
    unlisted: BTreeSet<ConversationId>,
    calls: HashMap<ConversationId, Call>,
    /// When the agents' sessions were last checked.
    sessions_checked: i64,
    /// New visitors' conversations, not stored until their first message or file.
    unsaved: HashMap<ConversationId, Box<Unsaved>>,
    /// ...by token, for a second tab's hello.
    unsaved_tokens: HashMap<VisitorToken, ConversationId>,
    /// New conversations stored per address.
    new_conversations: HashMap<IpAddr, RateLimit>,
    /// Visitors' chat messages per visitor (their conversation) and per address.
    visitor_chat: HashMap<ConversationId, RateLimit>,
    address_chat: HashMap<IpAddr, RateLimit>,
    /// Call starts and toggles per conversation.
    call_actions: HashMap<ConversationId, RateLimit>,
    /// History messages a visitor may read, over all their sockets, and the pages waiting
    /// for it to refill.
    history_budget: HashMap<ConversationId, RateLimit>,
    history_waiting: std::collections::VecDeque<(PeerId, ConversationId, u64)>,
    /// Every agent's presence.
    team: Team,
    /// Whether a call began, changed ends or ended since presence was last brought up to date.
    calls_changed: bool,
    /// Calls over, by id, and when: a late state of one changes nothing.
    calls_over: HashMap<String, i64>,
    /// When this node last renewed the calls it has ends of.
    calls_renewed: i64,
    /// Calls started on this node, for their ids (several may start in one millisecond).
    calls_started: u64,
    /// The open conversations: who has each, and the sites' queues.
    desk: Desk,
    /// Whether the team changed in a way routing must hear (presence, limits).
    team_moved: bool,
    /// Consoles of available agents ringing for a visitor's call in a waiting conversation,
    /// which they have not joined.
    ringing: HashMap<ConversationId, BTreeSet<PeerId>>,
    /// Whether an agent of each site was available, as its visitors were last told.
    told_online: HashMap<SiteKey, bool>,
    /// Where each connected visitor is, as their widget said last.
    visits: HashMap<ConversationId, VisitorInfo>,
    /// When the idle buckets above were last swept.
    buckets_swept: i64,
    /// Device toggles not in the record yet: a note is written once a device has stayed
    /// put for [`TOGGLE_SETTLE_MS`], so flipping a camera 60 times leaves one line, not 60.
    toggles: HashMap<(ConversationId, Author, MediaKind), Toggle>,
    /// When each conversation's transcript was last mailed.
    transcripts: HashMap<ConversationId, i64>,
    /// Waiting conversations whose site's agents were mailed about them.
    alerted: HashSet<ConversationId>,
}

/// A device's state during a call, as the record knows it and as it is.
#[derive(Debug)]
struct Toggle {
    site: SiteKey,
    name: String,
    on: bool,
    recorded: bool,
    at: i64,
}

/// How long a device stays on or off before the record says so.
pub const TOGGLE_SETTLE_MS: i64 = 3_000;

/// Writes the notes of `conv`'s toggles that changed the record (all of them with `all`, as
/// the call ends; otherwise those settled by `now`), and forgets those written.
fn record_toggles(
    toggles: &mut HashMap<(ConversationId, Author, MediaKind), Toggle>,
    now: i64,
    conv: Option<&ConversationId>,
    out: &mut Out,
) {
    let mut due: Vec<_> = toggles
        .iter()
        .filter(|((c, _, _), t)| match conv {
            Some(id) => c == id,
            None => now - t.at >= TOGGLE_SETTLE_MS,
        })
        .map(|(k, t)| (t.at, k.clone()))
        .collect();
    due.sort_by_key(|(at, _)| *at);
    for (_, key) in due {
        let Some(t) = toggles.remove(&key) else {
            continue;
        };
        if t.on == t.recorded {
            continue;
        }
        let event = SystemEvent::Media {
            who: t.name,
            media: key.2,
            on: t.on,
        };
        let meta = ConversationMeta::new(key.0, t.site, None);
        out.push(system_note(now, &meta, event));
    }
}

/// A new visitor's conversation, known only here until it is stored.
#[derive(Debug)]
struct Unsaved {
    site: SiteKey,
    token: VisitorToken,
    address: IpAddr,
    features: SiteFeatures,
    /// The verified user it will belong to.
    user: Option<VerifiedUser>,
    /// Once [`Effect::Create`] is asked for: what waits for it.
    creating: Option<Vec<(PeerId, Request)>>,
}

impl Unsaved {
    fn meta(&self, id: &ConversationId) -> ConversationMeta {
        ConversationMeta {
            features: self.features,
            ..ConversationMeta::new(id.clone(), self.site.clone(), None)
        }
    }
}

impl Core {
    /// An empty core.
    pub fn new(limits: Limits) -> Self {
        Self {
            team: Team::new(limits.presence_grace_ms),
            limits,
            ..Self::default()
        }
    }

    /// What is open on this node now: sockets by role, and calls answered with an end here.
    pub fn census(&self) -> Census {
        let mut census = Census::default();
        for p in self.peers.values() {
            match p.role {
                Some(Role::Visitor { .. }) => census.visitors += 1,
                Some(Role::Agent { .. }) => census.agents += 1,
                None => {}
            }
        }
        census.calls_active = self
            .calls
            .values()
            .filter(|c| c.phase == CallPhase::Active && self.has_end_here(c))
            .count();
        census
    }

    /// This node's connection `peer`, as a call's end.
    fn here(&self, peer: PeerId) -> End {
        End {
            node: self.limits.node,
            peer,
        }
    }

    /// Whether one of `call`'s ends is a connection on this node.
    fn has_end_here(&self, call: &Call) -> bool {
        [call.caller_end, call.callee_end]
            .iter()
            .flatten()
            .any(|e| e.node == self.limits.node)
    }

    /// The one entry point: what `event` at `now` (ms since the epoch) means, as effects.
    pub fn handle(&mut self, now: i64, event: Event) -> Vec<Effect> {
        let mut out = Out::default();
        match event {
            Event::Opened { peer, caller } => self.open(now, peer, caller),
            Event::Text { peer, text } => self.text(now, peer, &text, &mut out),
            Event::Binary { peer } => out.error(
                peer,
                RelayError::BadFrame("binary frames are not used".into()),
            ),
            Event::Upload {
                peer,
                conversation,
                attachment,
                client_id,
            } => self.request(
                now,
                peer,
                conversation,
                Request::Upload {
                    attachment,
                    client_id,
                },
                &mut out,
            ),
            Event::Loaded {
                peer,
                request,
                meta,
            } => {
                let about = request_context(&request);
                if let Err(e) = self.loaded(now, peer, request, meta, &mut out) {
                    out.error_about(peer, e, about);
                }
            }
            Event::VisitorReady {
                peer,
                token,
                conversation,
                saved,
                media,
            } => self.visitor_ready(peer, token, conversation, saved, media, &mut out),
            Event::Created {
                conversation,
                error,
            } => self.created(now, conversation, error, &mut out),
            Event::DeskReady {
                peer,
                team,
                conversations,
                read,
                media,
            } => {
                for (agent, scope, chosen, limit) in team {
                    self.team.know(agent, scope, chosen, limit);
                }
                self.team_moved = true;
                self.desk_ready(peer, conversations, read, media, &mut out)
            }
            Event::History {
                peer,
                conversation,
                messages,
                upto,
                full,
                read,
            } => {
                let page = Page {
                    messages,
                    upto,
                    full,
                    read,
                };
                self.history(now, peer, conversation, page, &mut out)
            }
            Event::Assigned {
                peer,
                meta,
                agent,
                won,
                holder,
                then,
            } => {
                let about = (Some(meta.id.clone()), after_take_client_id(&then));
                if let Err(e) = self.assigned(now, peer, meta, agent, won, holder, then, &mut out) {
                    if let Some(peer) = peer {
                        out.error_about(peer, e, about);
                    }
                }
            }
            Event::Appended {
                reply,
                site,
                message,
                fresh,
            } => self.appended(reply, site, message, fresh, &mut out),
            Event::Failed {
                peer,
                conversation,
                client_id,
                error,
            } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    if p.hello == Hello::Pending {
                        p.hello = Hello::Waiting;
                    }
                }
                out.error_about(peer, error, (conversation, client_id));
            }
            Event::Delivered(event) => self.delivered(now, event, &mut out),
            // The visitor sees their messages read (once it is stored, so a tab opened next
            // hears the same from the store).
            Event::MarkedRead { conversation, seq } => {
                out.push(Effect::Publish(BusEvent::Read { conversation, seq }));
            }
            Event::Closed { peer } => self.close(now, peer, &mut out),
            Event::Restored { calls, open } => {
                for o in open {
                    self.desk.opened(o.id, o.site, o.agent, o.since);
                }
                self.calls_changed = true;
                for (id, r) in calls {
                    // With other nodes, one may have this call's ends: it says so within
                    // CALL_RENEW_MS, on the conversation's subject.
                    if self.limits.node != 0 {
                        out.push(Effect::Subscribe(Topic::Conversation(id.clone())));
                    }
                    self.calls.insert(
                        id,
                        Call {
                            // The same on every node, so their notes of its end are one.
                            id: format!("{RESTORED}{}", r.since),
                            rev: 0,
                            by: 0,
                            site: r.site,
                            kind: r.kind,
                            caller: r.caller,
                            caller_name: r.caller_name,
                            caller_end: None,
                            callee_end: None,
                            phase: CallPhase::Active,
                            since: r.since,
                            away_since: Some(now),
                            over: false,
                            held: Vec::new(),
                            restored: true,
                        },
                    );
                }
            }
            Event::Tick => self.tick(now, &mut out),
            Event::Flush => {
                if !self.unlisted.is_empty() {
                    let ids = std::mem::take(&mut self.unlisted).into_iter().collect();
                    out.push(Effect::LoadSummaries(ids));
                }
            }
            Event::Summaries(rows) => {
                for row in rows {
                    for peer in self.agents_of(&row.site) {
                        out.send(peer, ServerMsg::Conversation(row.clone()));
                    }
                }
            }
            Event::Concluded {
                peer,
                meta,
                agent,
                ok,
            } => self.concluded(now, peer, meta, agent, ok, &mut out),
            Event::Transferred {
                peer,
                meta,
                from,
                to,
                note,
                ok,
            } => self.transferred(now, peer, meta, from, to, note, ok, &mut out),
            Event::Rated {
                peer,
                meta,
                rating,
                comment,
                ok,
            } => {
                if !ok {
                    let e = RelayError::Forbidden("this conversation is rated already");
                    out.error_about(peer, e, (Some(meta.id.clone()), None));
                } else {
                    out.push(rating_note(now, &meta, rating, comment));
                }
            }
            Event::Revoked { session } => self.end_sessions(|s| s == session, &mut out),
            Event::SiteChanged {
                site,
                site_name,
                features,
                look,
            } => self.site_changed(site, site_name, features, look, &mut out),
            Event::AgentChanged { agent, ended } => {
                let consoles: Vec<PeerId> = self
                    .peers
                    .iter()
                    .filter(|(_, p)| matches!(&p.caller, Caller::Agent { agent: a, .. } if a.id == agent))
                    .map(|(id, _)| *id)
                    .collect();
                for peer in consoles {
                    if ended {
                        out.error(peer, RelayError::SessionEnded);
                    }
                    out.push(Effect::Close(peer));
                }
            }
            Event::SessionsLive { asked, live } => {
                let ended: HashSet<String> =
                    asked.into_iter().filter(|s| !live.contains(s)).collect();
                self.end_sessions(|s| ended.contains(s), &mut out);
            }
        }
        self.presence_news(&mut out);
        self.route_news(now, &mut out);
        out.0
    }

    /// Routes the waiting conversations when something changed (a conversation stored,
    /// closed, reopened or handed back; an agent available, free or at a new limit), then
    /// tells visitors whose place in line moved, or whose site's agents all came or went.
    fn route_news(&mut self, now: i64, out: &mut Out) {
        if self.desk.take_dirty() | std::mem::take(&mut self.team_moved) {
            for (id, agent) in self.desk.route(now, &self.team.candidates()) {
                let Some(agent) = self.team.member(&agent).map(|(a, _)| a.clone()) else {
                    continue;
                };
                let site = self.desk.site_of(&id).cloned();
                let Some(site) = site else { continue };
                out.push(Effect::Assign {
                    peer: None,
                    meta: ConversationMeta::new(id, site, None),
                    agent,
                    then: AfterTake::Nothing,
                });
            }
        }
        for (id, position) in self.desk.positions() {
            let Some(site) = self.desk.site_of(&id) else {
                continue;
            };
            let online = self.team.any_available(site);
            for v in self.visitors.get(&id).into_iter().flatten() {
                out.send(
                    *v,
                    ServerMsg::Queue {
                        conversation: id.clone(),
                        position,
                        online,
                    },
                );
            }
        }
    }

    /// Whether `id` waits for an agent: in the queue, or not stored yet (nothing said).
    fn without_agent(&self, id: &ConversationId) -> bool {
        self.unsaved.contains_key(id) || self.desk.agent_of(id) == Some(None)
    }

    /// Tells the visitors without an agent on sites whose agents all went (or the first came
    /// back) whether someone is available.
    fn online_news(&mut self, out: &mut Out) {
        let flipped: Vec<(SiteKey, bool)> = self
            .told_online
            .iter()
            .map(|(site, was)| (site, *was, self.team.any_available(site)))
            .filter(|(_, was, now)| was != now)
            .map(|(site, _, now)| (site.clone(), now))
            .collect();
        if flipped.is_empty() {
            return;
        }
        for (site, online) in &flipped {
            self.told_online.insert(site.clone(), *online);
        }
        for (id, peers) in &self.visitors {
            if !self.without_agent(id) {
                continue;
            }
            for v in peers {
                let Some(Role::Visitor { site, .. }) =
                    self.peers.get(v).and_then(|p| p.role.as_ref())
                else {
                    continue;
                };
                if let Some((_, online)) = flipped.iter().find(|(s, _)| s == site) {
                    out.send(
                        *v,
                        ServerMsg::Queue {
                            conversation: id.clone(),
                            position: self.desk.position(id),
                            online: *online,
                        },
                    );
                }
            }
        }
    }

    /// Tells the agents whose team member changed presence (a choice, a console opened or
    /// gone past the grace period, a call begun or over).
    fn presence_news(&mut self, out: &mut Out) {
        if std::mem::take(&mut self.calls_changed) {
            let busy: Vec<(AgentId, bool)> = self
                .team
                .online()
                .map(|(id, consoles)| {
                    let node = self.limits.node;
                    let in_call = self.calls.values().any(|c| {
                        c.phase == CallPhase::Active
                            && [c.caller_end, c.callee_end]
                                .iter()
                                .flatten()
                                .any(|e| e.node == node && consoles.contains(&e.peer))
                    });
                    (id.clone(), in_call)
                })
                .collect();
            for (id, in_call) in busy {
                self.team.in_call(&id, in_call);
            }
        }
        if self.limits.node != 0 && self.team.maybe_changed() {
            for seen in self.team.news_for_others() {
                out.push(Effect::Publish(BusEvent::Presence {
                    node: self.limits.node,
                    seen: Box::new(seen),
                }));
            }
        }
        let changes = self.team.changes();
        if !changes.is_empty() {
            self.team_moved = true;
            self.online_news(out);
        }
        for (member, scope) in changes {
            for (peer, p) in &self.peers {
                if let Some(Role::Agent { scope: theirs, .. }) = &p.role {
                    if crate::presence::overlap(theirs, &scope) {
                        out.send(*peer, ServerMsg::Presence(member.clone()));
                    }
                }
            }
        }
    }

    /// A new visitor's conversation that is not stored yet.
    pub fn unsaved_meta(&self, id: &ConversationId) -> Option<ConversationMeta> {
        self.unsaved.get(id).map(|u| u.meta(id))
    }

    /// The visitor whose token this is, while their conversation is not stored yet.
    pub fn unsaved_visitor(&self, token: &str) -> Option<Role> {
        let id = self.unsaved_tokens.get(&VisitorToken::from(token))?;
        let u = self.unsaved.get(id)?;
        Some(Role::Visitor {
            site: u.site.clone(),
            conversation: id.clone(),
        })
    }

    /// Closes every agent socket whose session `ended` says is over, telling it why.
    /// A site's new settings: for the widgets open now (their next call start or toggle reads
    /// the store anyway) and the conversations not stored yet.
    fn site_changed(
        &mut self,
        key: SiteKey,
        name: String,
        new_features: SiteFeatures,
        new_look: SiteLook,
        out: &mut Out,
    ) {
        for u in self.unsaved.values_mut().filter(|u| u.site == key) {
            u.features = new_features;
        }
        for (id, p) in &mut self.peers {
            let Caller::Visitor {
                site,
                site_name,
                features,
                look,
                ..
            } = &mut p.caller
            else {
                continue;
            };
            if *site != key {
                continue;
            }
            *site_name = name.clone();
            *features = new_features;
            if p.hello != Hello::Done {
                // For the welcome still to come (a welcomed socket keeps no look).
                *look = new_look.clone();
            } else {
                out.send(
                    *id,
                    ServerMsg::Site {
                        site_name: name.clone(),
                        features: new_features,
                        look: new_look.clone(),
                    },
                );
            }
        }
    }

    fn end_sessions(&mut self, ended: impl Fn(&str) -> bool, out: &mut Out) {
        let gone: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| matches!(&p.caller, Caller::Agent { session, .. } if ended(session)))
            .map(|(id, _)| *id)
            .collect();
        for peer in gone {
            out.error(peer, RelayError::SessionEnded);
            out.push(Effect::Close(peer));
        }
    }

    fn open(&mut self, now: i64, peer: PeerId, caller: Caller) {
        let (role, hello) = match &caller {
            Caller::Http(role) => (Some(role.clone()), Hello::Done),
            _ => (None, Hello::Waiting),
        };
        let limit = RateLimit::new(self.limits.frame_burst, self.limits.frame_rate, now);
        self.peers.insert(
            peer,
            Box::new(Peer {
                caller,
                role,
                hello,
                opened: now,
                limit,
                joined: HashMap::new(),
                user: None,
            }),
        );
    }

    fn text(&mut self, now: i64, peer: PeerId, text: &str, out: &mut Out) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if !p.limit.allow(now) {
            // Say which chat message was refused, so the sender can send it again later; a
            // frame too big for a chat message is not even read.
            let about = (text.len() <= MAX_CHAT_FRAME_BYTES)
                .then(|| serde_json::from_str::<ClientMsg>(text).ok())
                .flatten()
                .map_or((None, None), |m| about(&m));
            return out.error_about(peer, RelayError::RateLimited, about);
        }
        if text.len() > MAX_FRAME_BYTES {
            return out.error(peer, RelayError::TooLarge(text.len()));
        }
        match serde_json::from_str::<ClientMsg>(text) {
            Ok(msg) => self.frame(now, peer, msg, out),
            Err(e) => out.error(peer, RelayError::BadFrame(e.to_string())),
        }
    }

    fn frame(&mut self, now: i64, peer: PeerId, msg: ClientMsg, out: &mut Out) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        // Without a good hello, once, there is nothing more to say: the socket closes.
        let refuse = |out: &mut Out, e: RelayError| {
            out.error(peer, e);
            out.push(Effect::Close(peer));
        };
        match msg {
            ClientMsg::Hello { .. } if p.hello != Hello::Waiting => {
                refuse(out, RelayError::NoHello)
            }
            ClientMsg::Hello { protocol, .. } if protocol != PROTOCOL_VERSION => {
                refuse(out, RelayError::BadVersion(protocol))
            }
            ClientMsg::Hello {
                token,
                identity,
                resume,
                ..
            } => {
                let user = match &p.caller {
                    Caller::Visitor { identity: rule, .. } => rule.check(identity.as_ref()),
                    _ => Ok(None),
                };
                let user = match user {
                    Ok(user) => user,
                    Err(e) => return refuse(out, e),
                };
                p.hello = Hello::Pending;
                p.user = user.clone();
                out.push(match &p.caller {
                    Caller::Visitor { site, .. } => Effect::ResolveVisitor {
                        peer,
                        site: site.clone(),
                        user,
                        resume,
                        unsaved: token
                            .as_ref()
                            .and_then(|t| self.unsaved_tokens.get(t))
                            .filter(|id| self.unsaved.get(*id).is_some_and(|u| u.site == *site))
                            .cloned(),
                        token,
                    },
                    Caller::Agent { agent, scope, .. } => Effect::LoadDesk {
                        peer,
                        agent: agent.id.clone(),
                        scope: scope.clone(),
                    },
                    Caller::Http(_) => unreachable!("HTTP requests send no frames"),
                });
            }
            _ if p.hello != Hello::Done => refuse(out, RelayError::NoHello),
            ClientMsg::Ping => out.send(peer, ServerMsg::Pong),
            ClientMsg::Presence { presence } => {
                let Some(Role::Agent { agent, .. }) = &p.role else {
                    return out.error(peer, RelayError::Forbidden("only agents have a presence"));
                };
                let id = agent.id.clone();
                match self.team.choose(&id, presence) {
                    Ok(()) => out.push(Effect::SavePresence {
                        agent: id,
                        presence,
                    }),
                    Err(why) => out.error(peer, RelayError::Forbidden(why)),
                }
            }
            ClientMsg::Signal {
                conversation,
                payload,
            } => self.signal(peer, conversation, payload, out),
            ClientMsg::Chat {
                ref conversation,
                ref client_id,
                ..
            } if matches!(p.role, Some(Role::Visitor { .. })) => {
                let (
                    Some(Role::Visitor {
                        conversation: own, ..
                    }),
                    Caller::Visitor { address, .. },
                ) = (&p.role, &p.caller)
                else {
                    return;
                };
                let (own, address) = (own.clone(), *address);
                // A visitor's messages are counted over all their sockets (whatever they
                // name), and with every other visitor of their address.
                let limits = &self.limits;
                let mine = self
                    .visitor_chat
                    .entry(own)
                    .or_insert_with(|| {
                        RateLimit::new(limits.visitor_chat_burst, limits.visitor_chat_rate, now)
                    })
                    .allow(now);
                let ours = mine
                    && self
                        .address_chat
                        .entry(address)
                        .or_insert_with(|| {
                            RateLimit::new(limits.address_chat_burst, limits.address_chat_rate, now)
                        })
                        .allow(now);
                if !ours {
                    let about = (Some(conversation.clone()), Some(client_id.clone()));
                    return out.error_about(peer, RelayError::RateLimited, about);
                }
                let conversation = conversation.clone();
                self.request(now, peer, conversation, Request::Frame(msg), out);
            }
            ClientMsg::Visit { conversation, info } => {
                let own = matches!(&p.role, Some(Role::Visitor { conversation: c, .. }) if *c == conversation);
                if !own {
                    let e = RelayError::Forbidden("only a visitor says where they are");
                    return out.error_about(peer, e, (Some(conversation), None));
                }
                self.visited(conversation, info.bounded(), out);
            }
            ClientMsg::Join {
                ref conversation, ..
            }
            | ClientMsg::Chat {
                ref conversation, ..
            }
            | ClientMsg::Take { ref conversation }
            | ClientMsg::Read {
                ref conversation, ..
            }
            | ClientMsg::Call {
                ref conversation, ..
            }
            | ClientMsg::Typing { ref conversation }
            | ClientMsg::Note {
                ref conversation, ..
            }
            | ClientMsg::Close { ref conversation }
            | ClientMsg::Transfer {
                ref conversation, ..
            }
            | ClientMsg::Rate {
                ref conversation, ..
            }
            | ClientMsg::Contact {
                ref conversation, ..
            }
            | ClientMsg::Transcript {
                ref conversation, ..
            }
            | ClientMsg::SetVisitor {
                ref conversation, ..
            } => {
                let conversation = conversation.clone();
                self.request(now, peer, conversation, Request::Frame(msg), out);
            }
        }
    }

    /// A request about `conversation`: the store is asked for it, unless it is the asker's
    /// own and not stored yet. A visitor's first message or file stores it first.
    fn request(
        &mut self,
        now: i64,
        peer: PeerId,
        conversation: ConversationId,
        request: Request,
        out: &mut Out,
    ) {
        let own = matches!(
            self.peers.get(&peer).and_then(|p| p.role.as_ref()),
            Some(Role::Visitor { conversation: c, .. }) if *c == conversation
        );
        // A visitor typing in their own conversation: its site is all it takes, no store read.
        if own && matches!(request, Request::Frame(ClientMsg::Typing { .. })) {
            if let Some(Role::Visitor { site, .. }) =
                self.peers.get(&peer).and_then(|p| p.role.clone())
            {
                let meta = ConversationMeta::new(conversation, site, None);
                let role = Role::Visitor {
                    site: meta.site.clone(),
                    conversation: meta.id.clone(),
                };
                return self.typing(&role, &meta, out);
            }
        }
        let Some(unsaved) = self.unsaved.get_mut(&conversation).filter(|_| own) else {
            return out.push(Effect::Load {
                peer,
                conversation,
                request,
            });
        };
        let stores = matches!(
            request,
            Request::Upload { .. }
                | Request::Frame(
                    ClientMsg::Chat { .. }
                        | ClientMsg::Contact { .. }
                        | ClientMsg::SetVisitor { .. }
                )
        );
        if !stores {
            // Joining or calling: as an empty conversation with no agent.
            let meta = unsaved.meta(&conversation);
            let about = request_context(&request);
            if let Err(e) = self.loaded(now, peer, request, Some(meta), out) {
                out.error_about(peer, e, about);
            }
            return;
        }
        // A message that would be refused stores nothing.
        if let Request::Frame(ClientMsg::Chat {
            client_id, text, ..
        }) = &request
        {
            if let Err(e) = check_message(text, client_id) {
                return out.error_about(peer, e, request_context(&request));
            }
        }
        if let Request::Frame(ClientMsg::Contact { email, .. }) = &request {
            if let Err(e) = check_email(email) {
                return out.error_about(peer, RelayError::BadText(e), request_context(&request));
            }
        }
        if let Some(waiting) = &mut unsaved.creating {
            return waiting.push((peer, request));
        }
        let per_hour = self.limits.conversations_per_address;
        let allowed = self
            .new_conversations
            .entry(unsaved.address)
            .or_insert_with(|| RateLimit::per_window(per_hour, HOUR_MS, now))
            .allow(now);
        if !allowed {
            let e =
                RelayError::Limit("too many new conversations from your network; try again later");
            return out.error_about(peer, e, request_context(&request));
        }
        unsaved.creating = Some(vec![(peer, request)]);
        out.push(Effect::Create {
            conversation: unsaved.meta(&conversation),
            token: unsaved.token.clone(),
            address: unsaved.address,
            user: unsaved.user.clone(),
        });
    }

    /// A new visitor's conversation is stored (or could not be): what waited for it goes on.
    fn created(
        &mut self,
        now: i64,
        meta: ConversationMeta,
        error: Option<RelayError>,
        out: &mut Out,
    ) {
        let Some(unsaved) = self.unsaved.get_mut(&meta.id) else {
            return;
        };
        let waiting = unsaved.creating.take().unwrap_or_default();
        if error.is_none() {
            // In the queue, to be routed once its first message is stored.
            let opened = DeskChange::Opened {
                agent: None,
                since: now,
            };
            self.desk_change(now, &meta.id, &meta.site, opened, out);
            if let Some(info) = self.visits.get(&meta.id) {
                out.push(Effect::SaveVisit {
                    conversation: meta.id.clone(),
                    info: info.clone(),
                });
            }
        }
        // Stored, or not and nobody left to try again: forgotten here.
        if error.is_none() || !self.visitors.contains_key(&meta.id) {
            if let Some(u) = self.unsaved.remove(&meta.id) {
                self.unsaved_tokens.remove(&u.token);
            }
        }
        for (peer, request) in waiting {
            let about = request_context(&request);
            let result = match &error {
                Some(e) => Err(e.clone()),
                None => self.loaded(now, peer, request, Some(meta.clone()), out),
            };
            if let Err(e) = result {
                out.error_about(peer, e, about);
            }
        }
    }

    fn role(&self, peer: PeerId) -> Result<&Role, RelayError> {
        self.peers
            .get(&peer)
            .and_then(|p| p.role.as_ref())
            .ok_or(RelayError::NoHello)
    }

    /// A frame or upload, now that its conversation is known.
    fn loaded(
        &mut self,
        now: i64,
        peer: PeerId,
        request: Request,
        meta: Option<ConversationMeta>,
        out: &mut Out,
    ) -> Result<(), RelayError> {
        let meta = meta.ok_or(RelayError::NotFound)?;
        let role = self.role(peer)?.clone();
        role.may_read(&meta)?;
        let msg = match request {
            Request::Frame(msg) => msg,
            Request::Upload {
                attachment,
                client_id,
            } => {
                // A snapshot is the PNG the browsers name `snapshot-….png`; any other file is
                // a file.
                let snapshot =
                    attachment.mime == "image/png" && attachment.name.starts_with("snapshot-");
                match snapshot {
                    true if !meta.features.snapshots => {
                        return Err(RelayError::Forbidden("this site does not take snapshots"))
                    }
                    false if !meta.features.files => {
                        return Err(RelayError::Forbidden("this site does not take files"))
                    }
                    _ => {}
                }
                let then = AfterTake::File {
                    attachment,
                    client_id,
                };
                return self.act(now, peer, &role, meta, then, out);
            }
        };
        match msg {
            ClientMsg::Join { after_seq, .. } => {
                self.subscribe(peer, &meta.id, after_seq, out);
                if let (Role::Agent { .. }, Some(info)) = (&role, self.visits.get(&meta.id)) {
                    out.send(
                        peer,
                        ServerMsg::Visit {
                            conversation: meta.id.clone(),
                            info: info.clone(),
                        },
                    );
                }
                self.read_history(now, peer, meta.id, after_seq, out);
            }
            ClientMsg::Chat {
                client_id, text, ..
            } => {
                check_message(&text, &client_id)?;
                self.act(
                    now,
                    peer,
                    &role,
                    meta,
                    AfterTake::Chat { client_id, text },
                    out,
                )?;
            }
            ClientMsg::Take { .. } => {
                if meta.closed {
                    return Err(RelayError::Forbidden("this conversation is closed"));
                }
                let me = role.may_take(&meta)?;
                if meta.agent.as_ref().is_none_or(|a| a.id != me.id) {
                    out.push(Effect::Assign {
                        peer: Some(peer),
                        meta,
                        agent: me,
                        then: AfterTake::Nothing,
                    });
                }
            }
            ClientMsg::Read { seq, .. } => match role {
                Role::Agent { agent, .. } => out.push(Effect::MarkRead {
                    agent: agent.id,
                    conversation: meta.id,
                    seq,
                }),
                Role::Visitor { .. } => {
                    return Err(RelayError::Forbidden("only agents keep read marks"))
                }
            },
            ClientMsg::Call { action, .. } => {
                self.act(now, peer, &role, meta, AfterTake::Call(action), out)?;
            }
            ClientMsg::Typing { .. } => self.typing(&role, &meta, out),
            ClientMsg::Note {
                client_id, text, ..
            } => {
                let Role::Agent { agent, .. } = &role else {
                    return Err(RelayError::Forbidden("only agents write notes"));
                };
                check_message(&text, &client_id)?;
                let id = Some(client_id);
                out.push(agent_note(now, &meta, agent, text, id, Reply::Ack(peer)));
            }
            ClientMsg::Close { .. } => {
                let Role::Agent { agent, .. } = &role else {
                    return Err(RelayError::Forbidden("only agents close conversations"));
                };
                role.may_take(&meta)?;
                if !meta.closed {
                    out.push(Effect::Conclude {
                        peer,
                        agent: agent.clone(),
                        meta,
                    });
                }
            }
            ClientMsg::Transfer { to, note, .. } => {
                self.transfer(now, peer, &role, meta, to, note, out)?
            }
            ClientMsg::Rate {
                rating, comment, ..
            } => {
                if !matches!(role, Role::Visitor { .. }) {
                    return Err(RelayError::Forbidden("only visitors rate conversations"));
                }
                if !meta.closed {
                    return Err(RelayError::Forbidden(
                        "a conversation is rated once it is closed",
                    ));
                }
                if meta.rated {
                    return Err(RelayError::Forbidden("this conversation is rated already"));
                }
                let comment = comment_of(comment)?;
                out.push(Effect::Rate {
                    peer,
                    meta,
                    rating,
                    comment,
                });
            }
            ClientMsg::Contact { email, .. } => {
                if !matches!(role, Role::Visitor { .. }) {
                    return Err(RelayError::Forbidden("only visitors leave an email"));
                }
                check_email(&email).map_err(RelayError::BadText)?;
                let email = email.trim().to_owned();
                out.push(system_note(
                    now,
                    &meta,
                    SystemEvent::EmailLeft {
                        email: email.clone(),
                    },
                ));
                out.push(Effect::SaveEmail {
                    conversation: meta.id,
                    email,
                });
            }
            ClientMsg::Transcript { email, .. } => {
                if !matches!(role, Role::Visitor { .. }) {
                    return Err(RelayError::Forbidden(
                        "only visitors ask for the transcript",
                    ));
                }
                if !self.limits.email {
                    return Err(RelayError::Forbidden("this relay does not send email"));
                }
                check_email(&email).map_err(RelayError::BadText)?;
                let last = self.transcripts.get(&meta.id).copied();
                if last.is_some_and(|at| now - at < TRANSCRIPT_EVERY_MS) {
                    return Err(RelayError::Limit(
                        "the transcript was just sent; try again in a minute",
                    ));
                }
                self.transcripts.insert(meta.id.clone(), now);
                out.push(Effect::MailTranscript {
                    conversation: meta.id,
                    site: meta.site,
                    email: email.trim().to_owned(),
                });
            }
            ClientMsg::SetVisitor { name, email, .. } => {
                let name = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
                if name
                    .as_ref()
                    .is_some_and(|n| n.chars().count() > MAX_VISITOR_NAME_CHARS)
                {
                    return Err(RelayError::BadText("that name is too long"));
                }
                let email = email.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty());
                if let Some(e) = &email {
                    check_email(e).map_err(RelayError::BadText)?;
                }
                let said = [name.clone(), email.clone()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" · ");
                out.push(Effect::SaveVisitor {
                    conversation: meta.id.clone(),
                    name,
                    email,
                });
                // A visitor introducing themselves (the pre-chat form) leaves no line.
                let Role::Agent { agent, .. } = &role else {
                    return Ok(());
                };
                let text = match said.is_empty() {
                    true => "Cleared the visitor's details".to_owned(),
                    false => format!("The visitor's details: {said}"),
                };
                out.push(agent_note(now, &meta, agent, text, None, Reply::None));
            }
            ClientMsg::Hello { .. }
            | ClientMsg::Ping
            | ClientMsg::Signal { .. }
            | ClientMsg::Visit { .. }
            | ClientMsg::Presence { .. } => {}
        }
        Ok(())
    }

    /// A visitor's widget said where they are: kept here while they are connected, told to
    /// the agents who joined, and stored once the conversation is (only when it changed).
    fn visited(&mut self, conversation: ConversationId, info: VisitorInfo, out: &mut Out) {
        if self.visits.get(&conversation) == Some(&info) {
            return;
        }
        self.visits.insert(conversation.clone(), info.clone());
        for peer in self.members.get(&conversation).into_iter().flatten() {
            if matches!(
                self.peers.get(peer).and_then(|p| p.role.as_ref()),
                Some(Role::Agent { .. })
            ) {
                out.send(
                    *peer,
                    ServerMsg::Visit {
                        conversation: conversation.clone(),
                        info: info.clone(),
                    },
                );
            }
        }
        if !self.unsaved.contains_key(&conversation) {
            out.push(Effect::SaveVisit { conversation, info });
        }
    }

    /// An agent hands their conversation to a colleague of its site, or back to the queue;
    /// a call under way ends first.
    #[allow(clippy::too_many_arguments)]
    fn transfer(
        &mut self,
        now: i64,
        peer: PeerId,
        role: &Role,
        meta: ConversationMeta,
        to: Option<AgentId>,
        note: Option<String>,
        out: &mut Out,
    ) -> Result<(), RelayError> {
        let Role::Agent { agent, .. } = role else {
            return Err(RelayError::Forbidden("only agents transfer conversations"));
        };
        if meta.closed {
            return Err(RelayError::Forbidden("this conversation is closed"));
        }
        if role.agent_post(&meta)? != AgentPost::Assigned {
            return Err(RelayError::Forbidden("take the conversation first"));
        }
        let note = comment_of(note)?;
        let to = match to {
            None => None,
            Some(id) if id == agent.id => {
                return Err(RelayError::Forbidden("the conversation is yours already"))
            }
            Some(id) => match self.team.member(&id) {
                Some((a, scope)) if scope.covers(&meta.site) => Some(a.clone()),
                _ => return Err(RelayError::NotFound),
            },
        };
        if let Some(call) = self.calls.remove(&meta.id) {
            // The next line of the record says it was for a transfer.
            let note = call.ended_note(now);
            self.call_over(now, &meta.id, call, note, out);
        }
        out.push(Effect::Transfer {
            peer,
            meta,
            from: agent.clone(),
            to,
            note,
        });
        Ok(())
    }

    fn concluded(
        &mut self,
        now: i64,
        peer: PeerId,
        meta: ConversationMeta,
        agent: AgentRef,
        ok: bool,
        out: &mut Out,
    ) {
        if !ok {
            let e = RelayError::Forbidden("this conversation is closed or not yours");
            return out.error_about(peer, e, (Some(meta.id), None));
        }
        self.desk_change(now, &meta.id, &meta.site, DeskChange::Closed, out);
        if let Some(call) = self.calls.remove(&meta.id) {
            let note = call.ended_note(now);
            self.call_over(now, &meta.id, call, note, out);
        }
        out.push(system_note(
            now,
            &meta,
            SystemEvent::Closed {
                agent: agent.name.clone(),
            },
        ));
        out.push(Effect::Publish(BusEvent::Closed {
            conversation: meta.id,
        }));
    }

    #[allow(clippy::too_many_arguments)]
    fn transferred(
        &mut self,
        now: i64,
        peer: PeerId,
        meta: ConversationMeta,
        from: AgentRef,
        to: Option<AgentRef>,
        note: Option<String>,
        ok: bool,
        out: &mut Out,
    ) {
        if !ok {
            let e = RelayError::Forbidden("this conversation is no longer yours");
            return out.error_about(peer, e, (Some(meta.id), None));
        }
        let change = match &to {
            Some(a) => DeskChange::Assigned {
                agent: a.id.clone(),
            },
            None => DeskChange::Requeued {
                by: from.id.clone(),
            },
        };
        self.desk_change(now, &meta.id, &meta.site, change, out);
        // The note first: whoever gets the conversation hears of it with the line after.
        if let Some(text) = note {
            out.push(agent_note(now, &meta, &from, text, None, Reply::None));
        }
        let text = match &to {
            Some(a) => SystemEvent::Transferred {
                from: from.name.clone(),
                to: a.name.clone(),
            },
            None => SystemEvent::Requeued {
                agent: from.name.clone(),
            },
        };
        out.push(system_note(now, &meta, text));
        if let Some(a) = to {
            out.push(Effect::Publish(BusEvent::AgentJoined {
                conversation: meta.id,
                agent_name: a.name,
            }));
        }
    }

    /// Tells the other side of `meta` that `peer` is typing: a visitor's agents (the joined
    /// consoles), or an agent's visitor (only in a conversation the agent may post in).
    /// Someone in `meta` types: the other side hears it, on whichever node it is (an agent
    /// only when the conversation is theirs).
    fn typing(&self, role: &Role, meta: &ConversationMeta, out: &mut Out) {
        let (author, name) = match role {
            Role::Visitor { .. } => (Author::Visitor, None),
            Role::Agent { agent, .. } => {
                if role.agent_post(meta) != Ok(AgentPost::Assigned) {
                    return;
                }
                (Author::Agent, Some(agent.name.clone()))
            }
        };
        out.push(Effect::Publish(BusEvent::Typing {
            conversation: meta.id.clone(),
            author,
            name,
        }));
    }

    /// An action that posts or calls in `meta`: an agent in a waiting conversation takes it
    /// first (and the action follows when they won it).
    fn act(
        &mut self,
        now: i64,
        peer: PeerId,
        role: &Role,
        meta: ConversationMeta,
        then: AfterTake,
        out: &mut Out,
    ) -> Result<(), RelayError> {
        let mut meta = meta;
        if meta.closed {
            match (role, &then) {
                (Role::Agent { .. }, _) => {
                    return Err(RelayError::Forbidden("this conversation is closed"))
                }
                (_, AfterTake::Chat { .. } | AfterTake::File { .. }) => {
                    self.reopen(now, &mut meta, out)
                }
                _ => {
                    return Err(RelayError::Forbidden(
                        "this conversation is closed: write to reopen it",
                    ))
                }
            }
        }
        if let Role::Agent { agent, .. } = role {
            if role.agent_post(&meta)? == AgentPost::TakesIt {
                out.push(Effect::Assign {
                    peer: Some(peer),
                    meta,
                    agent: agent.clone(),
                    then,
                });
                return Ok(());
            }
        }
        self.perform(now, peer, role, &meta, then, out)
    }

    /// A visitor writes in their closed conversation: it opens again, back with its agent if
    /// they are available and have room, else in the queue.
    fn reopen(&mut self, now: i64, meta: &mut ConversationMeta, out: &mut Out) {
        let back = meta
            .agent
            .take()
            .filter(|a| self.team.takes_more(&a.id, self.desk.load(&a.id)));
        out.push(Effect::Reopen {
            conversation: meta.id.clone(),
            agent: back.as_ref().map(|a| a.id.clone()),
        });
        let opened = DeskChange::Opened {
            agent: back.as_ref().map(|a| a.id.clone()),
            since: now,
        };
        self.desk_change(now, &meta.id, &meta.site, opened, out);
        out.push(system_note(now, meta, SystemEvent::Reopened));
        if let Some(a) = &back {
            out.push(Effect::Publish(BusEvent::AgentJoined {
                conversation: meta.id.clone(),
                agent_name: a.name.clone(),
            }));
        }
        meta.closed = false;
        meta.rated = false;
        meta.agent = back;
    }

    /// The action itself, once `role` may do it in `meta`.
    fn perform(
        &mut self,
        now: i64,
        peer: PeerId,
        role: &Role,
        meta: &ConversationMeta,
        then: AfterTake,
        out: &mut Out,
    ) -> Result<(), RelayError> {
        let (author, author_name) = match role {
            Role::Agent { agent, .. } => (Author::Agent, Some(agent.name.clone())),
            Role::Visitor { .. } => (Author::Visitor, None),
        };
        let post = |client_id, text, attachment, reply| Effect::Append {
            message: NewMessage {
                conversation: meta.id.clone(),
                client_id,
                author,
                author_name: author_name.clone(),
                text,
                event: None,
                attachment,
                at: now,
            },
            site: meta.site.clone(),
            reply,
        };
        match then {
            AfterTake::Nothing => {}
            AfterTake::Chat { client_id, text } => {
                out.push(post(Some(client_id), text, None, Reply::Ack(peer)))
            }
            AfterTake::File {
                attachment,
                client_id,
            } => out.push(post(
                client_id,
                attachment.name.clone(),
                Some(attachment),
                Reply::Http(peer),
            )),
            AfterTake::Call(action) => self.call_action(now, peer, meta, action, out)?,
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn assigned(
        &mut self,
        now: i64,
        peer: Option<PeerId>,
        mut meta: ConversationMeta,
        agent: AgentRef,
        won: bool,
        holder: Option<AgentRef>,
        then: AfterTake,
        out: &mut Out,
    ) -> Result<(), RelayError> {
        if !won {
            match &holder {
                Some(h) => self.desk.assigned(&meta.id, Some(h.id.clone()), now),
                // Closed meanwhile (or gone).
                None => self.desk.closed(&meta.id),
            }
            let name = holder.map_or_else(|| "Another agent".to_owned(), |a| a.name);
            return Err(RelayError::AlreadyTaken(name));
        }
        let change = DeskChange::Assigned {
            agent: agent.id.clone(),
        };
        self.desk_change(now, &meta.id, &meta.site, change, out);
        out.push(Effect::Publish(BusEvent::AgentJoined {
            conversation: meta.id.clone(),
            agent_name: agent.name.clone(),
        }));
        out.push(system_note(
            now,
            &meta,
            SystemEvent::Joined {
                agent: agent.name.clone(),
            },
        ));
        meta.agent = Some(agent);
        let Some(peer) = peer else {
            return Ok(());
        };
        let role = self.role(peer)?.clone();
        self.perform(now, peer, &role, &meta, then, out)
    }

    fn appended(
        &mut self,
        reply: Reply,
        site: SiteKey,
        message: Message,
        fresh: bool,
        out: &mut Out,
    ) {
        match (reply, &message.client_id) {
            (Reply::Ack(peer), Some(client_id)) => out.send(
                peer,
                ServerMsg::Ack {
                    conversation: message.conversation.clone(),
                    client_id: client_id.clone(),
                    seq: message.seq,
                },
            ),
            (Reply::Http(peer), _) => out.send(peer, ServerMsg::Message(message.clone())),
            _ => {}
        }
        // An agent's reply to a visitor who has gone: by email, if they left one.
        let gone = || {
            self.visitors
                .get(&message.conversation)
                .is_none_or(|v| v.is_empty())
        };
        if fresh && self.limits.email && message.author == Author::Agent && gone() {
            out.push(Effect::MailReply {
                conversation: message.conversation.clone(),
                site: site.clone(),
                seq: message.seq,
            });
        }
        if fresh {
            out.push(Effect::Publish(BusEvent::Message {
                site,
                message: Box::new(message),
            }));
        }
    }

    fn visitor_ready(
        &mut self,
        peer: PeerId,
        token: VisitorToken,
        meta: ConversationMeta,
        saved: bool,
        media: MediaConfig,
        out: &mut Out,
    ) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let Caller::Visitor {
            site,
            site_name,
            address,
            features,
            look,
            ..
        } = &mut p.caller
        else {
            return;
        };
        let open = self.visitors.get(&meta.id).map_or(0, PeerSet::len);
        if open >= self.limits.sockets_per_visitor {
            out.error(
                peer,
                RelayError::Limit("this chat is open in too many tabs; close one and reload"),
            );
            out.push(Effect::Close(peer));
            return;
        }
        if !saved && !self.unsaved.contains_key(&meta.id) {
            self.unsaved_tokens.insert(token.clone(), meta.id.clone());
            self.unsaved.insert(
                meta.id.clone(),
                Box::new(Unsaved {
                    site: site.clone(),
                    token: token.clone(),
                    address: *address,
                    features: *features,
                    user: p.user.clone(),
                    creating: None,
                }),
            );
        } else if let Some(u) = self.unsaved.get_mut(&meta.id) {
            // Logged in on the site before writing: the conversation will be theirs.
            if u.user.is_none() {
                u.user.clone_from(&p.user);
            }
        }
        // TURN relays media at the operator's cost: only for a conversation an agent has
        // joined (the visitor gets them when one does).
        let media = if meta.agent.is_some() {
            media
        } else {
            without_turn(media)
        };
        p.role = Some(Role::Visitor {
            site: site.clone(),
            conversation: meta.id.clone(),
        });
        p.hello = Hello::Done;
        out.send(
            peer,
            ServerMsg::WelcomeVisitor {
                token,
                conversation: meta.id.clone(),
                site_name: site_name.clone(),
                agent_name: meta.agent.as_ref().map(|a| a.name.clone()),
                media,
                closed: meta.closed,
                rated: meta.rated,
                features: *features,
                // Needed for the welcome only: an idle socket keeps no copy.
                look: std::mem::take(look),
            },
        );
        let set = self.visitors.entry(meta.id.clone()).or_default();
        set.insert(peer);
        if set.len() == 1 && !self.members.contains_key(&meta.id) {
            out.push(Effect::Subscribe(Topic::Conversation(meta.id.clone())));
        }
        // Without an agent: their place in line, and whether anyone is there to answer.
        if !meta.closed && self.without_agent(&meta.id) {
            let online = self.team.any_available(&meta.site);
            self.told_online.insert(meta.site.clone(), online);
            out.send(
                peer,
                ServerMsg::Queue {
                    position: self.desk.position(&meta.id),
                    conversation: meta.id,
                    online,
                },
            );
        }
    }

    fn desk_ready(
        &mut self,
        peer: PeerId,
        conversations: Vec<ConversationSummary>,
        read: Vec<ReadMark>,
        media: MediaConfig,
        out: &mut Out,
    ) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let Caller::Agent { agent, scope, .. } = &p.caller else {
            return;
        };
        let (agent, scope) = (agent.clone(), scope.clone());
        p.role = Some(Role::Agent {
            agent: agent.clone(),
            scope: scope.clone(),
        });
        p.hello = Hello::Done;
        self.team.connected(&agent.id, peer);
        let presence = self.team.chosen(&agent.id).unwrap_or(Presence::Available);
        out.send(
            peer,
            ServerMsg::WelcomeAgent {
                team: self.team.members_for(&scope),
                agent,
                conversations,
                read,
                media,
                presence,
                away_after_secs: self.limits.away_after_secs,
            },
        );
        let sets: Vec<(Topic, &mut BTreeSet<PeerId>)> = match &scope {
            Scope::All => vec![(Topic::AllSites, &mut self.all_sites_agents)],
            Scope::Sites(sites) => {
                for site in sites {
                    self.site_agents.entry(site.clone()).or_default();
                }
                self.site_agents
                    .iter_mut()
                    .filter(|(site, _)| sites.contains(*site))
                    .map(|(site, set)| (Topic::Site(site.clone()), set))
                    .collect()
            }
        };
        for (topic, set) in sets {
            if set.insert(peer) && set.len() == 1 {
                out.push(Effect::Subscribe(topic));
            }
        }
    }

    /// Joins `peer` to `conv`, catching up from `after`.
    fn subscribe(&mut self, peer: PeerId, conv: &ConversationId, after: u64, out: &mut Out) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.joined.insert(
            conv.clone(),
            Joined::CatchingUp {
                after,
                buffer: Vec::new(),
                gap: false,
            },
        );
        let set = self.members.entry(conv.clone()).or_default();
        set.insert(peer);
        if set.len() == 1 && !self.visitors.contains_key(conv) {
            out.push(Effect::Subscribe(Topic::Conversation(conv.clone())));
        }
    }

    /// Asks for a page of history for `peer`. A visitor's pages come out of their history
    /// budget (what re-joining a long conversation from many sockets would cost otherwise):
    /// while it is spent, the page waits for the clock.
    fn read_history(
        &mut self,
        now: i64,
        peer: PeerId,
        conversation: ConversationId,
        after: u64,
        out: &mut Out,
    ) {
        let visitor = match self.peers.get(&peer).and_then(|p| p.role.as_ref()) {
            Some(Role::Visitor { conversation, .. }) => Some(conversation.clone()),
            _ => None,
        };
        let for_visitor = visitor.is_some();
        if let Some(own) = visitor {
            let rate = self.limits.visitor_history_rate;
            let budget = self
                .history_budget
                .entry(own)
                .or_insert_with(|| RateLimit::new(rate * 5, rate, now));
            if !budget.available(now) {
                self.history_waiting.push_back((peer, conversation, after));
                return;
            }
        }
        out.push(Effect::ReadHistory {
            peer,
            conversation,
            after,
            limit: self.limits.history_page,
            for_visitor,
        });
    }

    fn history(
        &mut self,
        now: i64,
        peer: PeerId,
        conversation: ConversationId,
        page: Page,
        out: &mut Out,
    ) {
        let Page {
            messages,
            upto,
            full,
            read,
        } = page;
        if let Some(Some(Role::Visitor {
            conversation: own, ..
        })) = self.peers.get(&peer).map(|p| p.role.as_ref())
        {
            if let Some(budget) = self.history_budget.get_mut(own) {
                budget.spend(now, messages.len());
            }
        }
        let Some(Joined::CatchingUp { after, buffer, gap }) = self
            .peers
            .get_mut(&peer)
            .and_then(|p| p.joined.get_mut(&conversation))
        else {
            return;
        };
        *after = upto.max(*after);
        let (last, gap) = (*after, *gap);
        if gap {
            // What a live connection missed, as the messages it would have had.
            for m in messages {
                out.send(peer, ServerMsg::Message(m));
            }
        } else {
            out.send(
                peer,
                ServerMsg::History {
                    conversation: conversation.clone(),
                    messages,
                    upto: last,
                },
            );
        }
        if full {
            return self.read_history(now, peer, conversation, last, out);
        }
        // Caught up: what arrived meanwhile and is newer than the history follows, in order
        // (it may have come from several nodes), then the call, so a late joiner knows.
        let mut arrived = std::mem::take(buffer);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.joined.insert(conversation.clone(), Joined::Live { last });
        }
        arrived.sort_by_key(|m| m.seq);
        for m in arrived {
            self.live(now, peer, m, out);
        }
        if gap {
            return;
        }
        if let Some(seq) = read.filter(|s| *s > 0) {
            out.send(
                peer,
                ServerMsg::Read {
                    conversation: conversation.clone(),
                    seq,
                },
            );
        }
        out.send(peer, self.call_msg(&conversation, peer));
    }

    /// Message `m` to `peer`, live in its conversation: sent if it is the next one; dropped if
    /// it was sent already; after a gap (another node's message still on its way), the peer
    /// catches up from the store, `m` waiting with whatever else comes meanwhile.
    fn live(&mut self, now: i64, peer: PeerId, m: Message, out: &mut Out) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let for_agent = matches!(p.role, Some(Role::Agent { .. }));
        let conversation = m.conversation.clone();
        match p.joined.get_mut(&conversation) {
            Some(Joined::Live { last }) if m.seq <= *last => {}
            Some(Joined::Live { last }) if m.seq == *last + 1 => {
                *last = m.seq;
                // A note is for agents: never on a visitor's socket.
                if m.author != Author::Note || for_agent {
                    out.send(peer, ServerMsg::Message(m));
                }
            }
            Some(Joined::Live { last }) => {
                let after = *last;
                p.joined.insert(
                    conversation.clone(),
                    Joined::CatchingUp {
                        after,
                        buffer: vec![m],
                        gap: true,
                    },
                );
                self.read_history(now, peer, conversation, after, out);
            }
            Some(Joined::CatchingUp { buffer, .. })
                if buffer.len() < self.limits.catch_up_buffer =>
            {
                buffer.push(m)
            }
            Some(Joined::CatchingUp { .. }) => out.push(Effect::Close(peer)),
            None => {}
        }
    }

    fn delivered(&mut self, now: i64, event: BusEvent, out: &mut Out) {
        match event {
            BusEvent::Message { site, message } => {
                let members: Vec<PeerId> = self
                    .members
                    .get(&message.conversation)
                    .into_iter()
                    .flatten()
                    .copied()
                    .collect();
                for peer in members {
                    self.live(now, peer, (*message).clone(), out);
                }
                if self.agents_of(&site).next().is_some() {
                    self.unlisted.insert(message.conversation.clone());
                }
            }
            BusEvent::AgentJoined {
                conversation,
                agent_name,
            } => {
                for peer in self.visitors.get(&conversation).into_iter().flatten() {
                    out.push(Effect::SendMedia {
                        peer: *peer,
                        conversation: conversation.clone(),
                    });
                    out.send(
                        *peer,
                        ServerMsg::AgentJoined {
                            conversation: conversation.clone(),
                            agent_name: agent_name.clone(),
                        },
                    );
                }
            }
            BusEvent::Call {
                conversation,
                call,
                renewal,
            } => {
                let changed = self.merge_call(now, &conversation, *call, renewal, out);
                if changed || renewal.is_none() {
                    self.tell_call(&conversation, out);
                }
            }
            BusEvent::Signal {
                conversation,
                to,
                payload,
            } => {
                // For the end on this node; the sender's node holds those for a missing end.
                let end = self.calls.get_mut(&conversation).and_then(|c| *c.end(to));
                if let Some(end) = end.filter(|e| e.node == self.limits.node) {
                    out.send(
                        end.peer,
                        ServerMsg::Signal {
                            conversation,
                            payload,
                        },
                    );
                }
            }
            BusEvent::NodeGone { node } => self.node_gone(now, node, out),
            BusEvent::Presence { node, seen } => {
                if node != self.limits.node {
                    self.team.elsewhere(node, *seen);
                }
            }
            BusEvent::Desk {
                node,
                conversation,
                site,
                change,
            } => {
                if node != self.limits.node {
                    self.apply_desk(now, conversation, site, change);
                }
            }
            BusEvent::Closed { conversation } => {
                for v in self.visitors.get(&conversation).into_iter().flatten() {
                    out.send(
                        *v,
                        ServerMsg::Closed {
                            conversation: conversation.clone(),
                        },
                    );
                }
            }
            BusEvent::Typing {
                conversation,
                author,
                name,
            } => {
                let to: Vec<PeerId> = match author {
                    // The agents joined (the visitor's other tabs are not told).
                    Author::Visitor => self
                        .members
                        .get(&conversation)
                        .into_iter()
                        .flatten()
                        .filter(|p| {
                            matches!(
                                self.peers.get(p).and_then(|p| p.role.as_ref()),
                                Some(Role::Agent { .. })
                            )
                        })
                        .copied()
                        .collect(),
                    _ => self
                        .visitors
                        .get(&conversation)
                        .into_iter()
                        .flatten()
                        .copied()
                        .collect(),
                };
                for p in to {
                    out.send(
                        p,
                        ServerMsg::Typing {
                            conversation: conversation.clone(),
                            author,
                            name: name.clone(),
                        },
                    );
                }
            }
            BusEvent::Read { conversation, seq } => {
                for v in self.visitors.get(&conversation).into_iter().flatten() {
                    out.send(
                        *v,
                        ServerMsg::Read {
                            conversation: conversation.clone(),
                            seq,
                        },
                    );
                }
            }
        }
    }

    /// Agent connections serving `site`, each once (an agent serves every site or a list,
    /// never both), without copying the sets on every message.
    fn agents_of<'a>(&'a self, site: &SiteKey) -> impl Iterator<Item = PeerId> + 'a {
        let listed = self.site_agents.get(site).into_iter().flatten();
        self.all_sites_agents.iter().chain(listed).copied()
    }

    /// Everyone joined to `conversation` (and the consoles ringing for it) hears its call as
    /// this node has it now.
    fn tell_call(&mut self, conversation: &ConversationId, out: &mut Out) {
        for peer in self.members.get(conversation).into_iter().flatten() {
            out.send(*peer, self.call_msg(conversation, *peer));
        }
        // Agents ringing for a queued call: once it is answered or over, it is gone
        // for those who did not get it.
        let still = self
            .calls
            .get(conversation)
            .is_some_and(|c| c.phase == CallPhase::Ringing);
        let ringing = match still {
            true => self.ringing.get(conversation).cloned(),
            false => self.ringing.remove(conversation),
        };
        let members = self.members.get(conversation);
        for peer in ringing.into_iter().flatten() {
            if members.is_some_and(|m| m.contains(&peer)) {
                continue;
            }
            let me = self.here(peer);
            let party = self.calls.get(conversation).is_some_and(|c| c.is_party(me));
            let msg = match still || party {
                true => self.call_msg(conversation, peer),
                false => ServerMsg::Call {
                    conversation: conversation.clone(),
                    call: None,
                },
            };
            out.send(peer, msg);
        }
    }

    fn close(&mut self, now: i64, peer: PeerId, out: &mut Out) {
        let Some(p) = self.peers.remove(&peer) else {
            return;
        };
        for conv in p.joined.keys() {
            if let Some(set) = self.members.get_mut(conv) {
                set.remove(&peer);
                if set.is_empty() {
                    self.members.remove(conv);
                    if !self.visitors.contains_key(conv) {
                        out.push(Effect::Unsubscribe(Topic::Conversation(conv.clone())));
                    }
                }
            }
        }
        if let Some(Role::Visitor { conversation, .. }) = &p.role {
            if let Some(set) = self.visitors.get_mut(conversation) {
                set.remove(&peer);
                if set.is_empty() {
                    self.visitors.remove(conversation);
                    self.visits.remove(conversation);
                    // Never said anything and gone: forgotten (their next hello starts
                    // afresh). One being stored is forgotten once it is.
                    if self
                        .unsaved
                        .get(conversation)
                        .is_some_and(|u| u.creating.is_none())
                    {
                        if let Some(u) = self.unsaved.remove(conversation) {
                            self.unsaved_tokens.remove(&u.token);
                        }
                    }
                    if !self.members.contains_key(conversation) {
                        out.push(Effect::Unsubscribe(Topic::Conversation(
                            conversation.clone(),
                        )));
                    }
                }
            }
        }
        if let Some(Role::Agent { agent, .. }) = &p.role {
            self.team.disconnected(now, &agent.id, peer);
            if self.all_sites_agents.remove(&peer) && self.all_sites_agents.is_empty() {
                out.push(Effect::Unsubscribe(Topic::AllSites));
            }
            let mut gone = Vec::new();
            for (site, set) in self.site_agents.iter_mut() {
                if set.remove(&peer) && set.is_empty() {
                    gone.push(site.clone());
                }
            }
            for site in gone {
                self.site_agents.remove(&site);
                out.push(Effect::Unsubscribe(Topic::Site(site)));
            }
        }
        // A ringing call whose caller left is cancelled; an active call waits for the end
        // that left to come back.
        let me = self.here(peer);
        let ended: Vec<ConversationId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.phase == CallPhase::Ringing && c.is_party(me))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ended {
            if let Some(call) = self.calls.remove(&id) {
                let note = call.ended_note(now);
                self.call_over(now, &id, call, note, out);
            }
        }
        self.ends_away(now, |e| e == me, true, out);
    }

    /// The call ends `gone` picks are away since `now`; the other nodes hear it with
    /// `publish` (a node gone is seen by each node itself).
    fn ends_away(&mut self, now: i64, gone: impl Fn(End) -> bool, publish: bool, out: &mut Out) {
        let mut changed = Vec::new();
        for (id, call) in self.calls.iter_mut() {
            let mut away = false;
            for end in call.ends_mut() {
                if end.is_some_and(&gone) {
                    *end = None;
                    away = true;
                }
            }
            if away {
                call.away_since.get_or_insert(now);
                changed.push(id.clone());
            }
        }
        for id in changed {
            self.calls_changed = true;
            match publish {
                true => self.publish_call(&id, out),
                false => self.tell_call(&id, out),
            }
        }
    }

    /// A node stopped being heard: its connections' call ends are away (and the grace
    /// period runs for them as for a dropped connection).
    fn node_gone(&mut self, now: i64, node: u64, out: &mut Out) {
        if node != self.limits.node {
            self.ends_away(now, |e| e.node == node, false, out);
            self.team.node_gone(node);
        }
    }

    /// The open conversations changed here: routing is told, and so are the other nodes'.
    fn desk_change(
        &mut self,
        now: i64,
        conversation: &ConversationId,
        site: &SiteKey,
        change: DeskChange,
        out: &mut Out,
    ) {
        if self.limits.node != 0 {
            out.push(Effect::Publish(BusEvent::Desk {
                node: self.limits.node,
                conversation: conversation.clone(),
                site: site.clone(),
                change: change.clone(),
            }));
        }
        self.apply_desk(now, conversation.clone(), site.clone(), change);
    }

    fn apply_desk(&mut self, now: i64, id: ConversationId, site: SiteKey, change: DeskChange) {
        match change {
            DeskChange::Opened { agent, since } => self.desk.opened(id, site, agent, since),
            DeskChange::Assigned { agent } => self.desk.assigned(&id, Some(agent), now),
            DeskChange::Requeued { by } => self.desk.requeued(&id, by, now),
            DeskChange::Closed => self.desk.closed(&id),
        }
    }

    /// The call of `conv` changed here: numbered as this node's change and published whole.
    fn publish_call(&mut self, conv: &ConversationId, out: &mut Out) {
        let node = self.limits.node;
        if let Some(call) = self.calls.get_mut(conv) {
            call.rev += 1;
            call.by = node;
            call.restored = false;
            out.push(Effect::Publish(BusEvent::Call {
                conversation: conv.clone(),
                call: Box::new(call.clone()),
                renewal: None,
            }));
        }
    }

    /// Takes `incoming`, another node's state of `conv`'s call (or this node's own, back from
    /// the bus), when it is newer; whether this node's copy changed.
    fn merge_call(
        &mut self,
        now: i64,
        conv: &ConversationId,
        mut incoming: Call,
        renewed_by: Option<u64>,
        out: &mut Out,
    ) -> bool {
        if self.calls_over.contains_key(&incoming.id) {
            return false;
        }
        let node = self.limits.node;
        if incoming.over {
            self.calls_over.insert(incoming.id.clone(), now);
            let ours = self.calls.get(conv).is_some_and(|c| c.same_call(&incoming));
            if ours {
                self.calls.remove(conv);
                self.calls_changed = true;
                record_toggles(&mut self.toggles, now, Some(conv), out);
            }
            return ours;
        }
        let mut held = Vec::new();
        let mut reclaim = false;
        match self.calls.get_mut(conv) {
            Some(local) if local.restored => {}
            // Two calls started at once on two nodes: the earlier one is the call everywhere.
            Some(local)
                if local.id != incoming.id
                    && (local.since, &local.id) < (incoming.since, &incoming.id) =>
            {
                return false;
            }
            Some(local) if local.id != incoming.id => {}
            Some(local) => {
                if !incoming.newer_than(local) {
                    let back = renewed_by.is_some_and(|from| local.ends_back(&incoming, from));
                    self.calls_changed |= back;
                    return back;
                }
                held = std::mem::take(&mut local.held);
                // This node knows its own connections: an end of it that is still open stays,
                // whatever a change made elsewhere at the same time says (it is published
                // again, so the others learn it too).
                for side in [local.caller, other_side(local.caller)] {
                    let mine = *local.end(side);
                    let theirs = incoming.end(side);
                    if theirs.is_none()
                        && mine.is_some_and(|e| e.node == node && self.peers.contains_key(&e.peer))
                    {
                        *theirs = mine;
                        reclaim = true;
                    }
                }
            }
            None => {}
        }
        // What another node said of this node's connections is wrong once they are closed.
        let peers = &self.peers;
        let mut gone = false;
        for end in incoming.ends_mut() {
            if end.is_some_and(|e| e.node == node && !peers.contains_key(&e.peer)) {
                *end = None;
                gone = true;
            }
        }
        if gone {
            incoming.away_since.get_or_insert(now);
        }
        if incoming.caller_end.is_some() && incoming.callee_end.is_some() {
            incoming.away_since = None;
        }
        // A visitor's call in the queue, started on another node, rings the site's agents
        // available here too.
        let queued = incoming.phase == CallPhase::Ringing
            && !self.calls.contains_key(conv)
            && self.desk.agent_of(conv) == Some(None);
        if queued {
            let members = self.members.get(conv);
            let ring: BTreeSet<PeerId> = self
                .team
                .available_consoles(&incoming.site)
                .filter(|p| !members.is_some_and(|m| m.contains(p)))
                .collect();
            self.ringing.insert(conv.clone(), ring);
        }
        incoming.held = held;
        incoming.restored = false;
        self.calls_changed = true;
        self.calls.insert(conv.clone(), incoming);
        if reclaim {
            self.publish_call(conv, out);
        }
        self.send_held(conv, out);
        true
    }

    /// Sends on the signals this node holds for a side whose end is back.
    fn send_held(&mut self, conv: &ConversationId, out: &mut Out) {
        let node = self.limits.node;
        let Some(call) = self.calls.get_mut(conv) else {
            return;
        };
        let held = std::mem::take(&mut call.held);
        for (to, payload) in held {
            match *call.end(to) {
                None => call.held.push((to, payload)),
                Some(end) if end.node == node => out.send(
                    end.peer,
                    ServerMsg::Signal {
                        conversation: conv.clone(),
                        payload,
                    },
                ),
                Some(_) => out.push(Effect::Publish(BusEvent::Signal {
                    conversation: conv.clone(),
                    to,
                    payload,
                })),
            }
        }
    }

    /// Closes sockets that never said hello; ends calls that rang too long; every
    /// [`SESSION_CHECK_MS`], asks whether the agents'
    /// sessions still live (an expiry, or `agent disable` from the command line, closes their
    /// sockets within that time).
    fn tick(&mut self, now: i64, out: &mut Out) {
        if now - self.buckets_swept >= BUCKET_SWEEP_MS {
            self.buckets_swept = now;
            self.new_conversations.retain(|_, b| !b.idle(now));
            self.visitor_chat.retain(|_, b| !b.idle(now));
            self.address_chat.retain(|_, b| !b.idle(now));
            self.call_actions.retain(|_, b| !b.idle(now));
            self.history_budget.retain(|_, b| !b.idle(now));
            self.calls_over
                .retain(|_, at| now - *at < CALLS_OVER_KEPT_MS);
        }
        record_toggles(&mut self.toggles, now, None, out);
        self.team.tick(now);
        if self.limits.email {
            self.alert(now, out);
        }
        // Pages that waited for a visitor's history budget, in order, as it refills.
        for (peer, conversation, after) in std::mem::take(&mut self.history_waiting) {
            let joined = self.peers.get(&peer).is_some_and(|p| {
                matches!(p.joined.get(&conversation), Some(Joined::CatchingUp { .. }))
            });
            if joined {
                self.read_history(now, peer, conversation, after, out);
            }
        }
        let deadline = self.limits.hello_deadline_ms;
        for (peer, p) in &self.peers {
            if p.hello == Hello::Waiting && now - p.opened >= deadline {
                out.error(*peer, RelayError::NoHello);
                out.push(Effect::Close(*peer));
            }
        }
        if now - self.sessions_checked >= SESSION_CHECK_MS {
            self.sessions_checked = now;
            let sessions: BTreeSet<String> = self
                .peers
                .values()
                .filter_map(|p| match &p.caller {
                    Caller::Agent { session, .. } => Some(session.clone()),
                    _ => None,
                })
                .collect();
            if !sessions.is_empty() {
                out.push(Effect::CheckSessions(sessions.into_iter().collect()));
            }
        }
        let timeout = self.limits.ring_timeout_ms;
        let missed: Vec<ConversationId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.phase == CallPhase::Ringing && now - c.since >= timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in missed {
            if let Some(call) = self.calls.remove(&id) {
                self.call_over(now, &id, call, SystemEvent::CallMissed, out);
            }
        }
        let grace = self.limits.call_grace_ms;
        let abandoned: Vec<ConversationId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.away_since.is_some_and(|t| now - t >= grace))
            .map(|(id, _)| id.clone())
            .collect();
        for id in abandoned {
            if let Some(call) = self.calls.remove(&id) {
                // It lasted until the end left.
                let note = call.ended_note(call.away_since.unwrap_or(now));
                self.call_over(now, &id, call, note, out);
            }
        }
        if self.limits.node != 0 {
            self.renew_calls(now, out);
        }
    }

    /// With other nodes: says again where this node's call ends are and which agents have a
    /// console here, every [`CALL_RENEW_MS`] (a node that started since does not know), and
    /// forgets the
    /// calls no connection here follows any more (their news no longer comes here, so the
    /// copy would go stale). Ends are at most a few per node, so this is a few small events.
    fn renew_calls(&mut self, now: i64, out: &mut Out) {
        if now - self.calls_renewed < CALL_RENEW_MS {
            return;
        }
        self.calls_renewed = now;
        let stale: Vec<ConversationId> = self
            .calls
            .iter()
            .filter(|(id, c)| !c.restored && !self.has_end_here(c) && !self.follows(id, &c.site))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.calls.remove(&id);
            self.ringing.remove(&id);
            if !self.members.contains_key(&id) && !self.visitors.contains_key(&id) {
                out.push(Effect::Unsubscribe(Topic::Conversation(id)));
            }
        }
        for (id, call) in &self.calls {
            if self.has_end_here(call) {
                out.push(Effect::Publish(BusEvent::Call {
                    conversation: id.clone(),
                    call: Box::new(call.clone()),
                    renewal: Some(self.limits.node),
                }));
            }
        }
        // So too the agents with a console here.
        for seen in self.team.online_here() {
            out.push(Effect::Publish(BusEvent::Presence {
                node: self.limits.node,
                seen: Box::new(seen),
            }));
        }
    }

    /// Whether a connection on this node hears of `conv`'s calls: one joined to it, its
    /// visitor, or an agent of its site.
    fn follows(&self, conv: &ConversationId, site: &SiteKey) -> bool {
        self.members.contains_key(conv)
            || self.visitors.contains_key(conv)
            || self.ringing.contains_key(conv)
            || self.site_agents.contains_key(site)
            || !self.all_sites_agents.is_empty()
    }

    /// Mails the site's agents about each conversation that has waited too long with none of
    /// them available, once per wait.
    fn alert(&mut self, now: i64, out: &mut Out) {
        let waiting: Vec<(ConversationId, SiteKey, i64)> = self.desk.waiting().collect();
        self.alerted
            .retain(|id| waiting.iter().any(|(w, _, _)| w == id));
        for (id, site, since) in waiting {
            let nobody = self.team.available_consoles(&site).next().is_none();
            if now - since >= self.limits.alert_after_ms
                && nobody
                && self.alerted.insert(id.clone())
            {
                out.push(Effect::MailAlert {
                    conversation: id,
                    site,
                    since,
                });
            }
        }
    }

    /// `call`, taken out of `conv`, is over: every node hears it, and the record says `note`
    /// (once, however many nodes decide it).
    fn call_over(
        &mut self,
        now: i64,
        conv: &ConversationId,
        mut call: Call,
        note: SystemEvent,
        out: &mut Out,
    ) {
        record_toggles(&mut self.toggles, now, Some(conv), out);
        self.calls_changed = true;
        self.calls_over.insert(call.id.clone(), now);
        let meta = ConversationMeta::new(conv.clone(), call.site.clone(), None);
        let note_id = call.note_id("end");
        call.over = true;
        call.rev += 1;
        call.by = self.limits.node;
        call.held.clear();
        out.push(Effect::Publish(BusEvent::Call {
            conversation: conv.clone(),
            call: Box::new(call),
            renewal: None,
        }));
        out.push(Effect::SaveCall {
            conversation: conv.clone(),
            call: None,
        });
        out.push(system_note_once(now, &meta, note, note_id));
    }

    /// The side and display name of a connection that may take part in calls of `conv`: its
    /// visitor, or the agent it is assigned to.
    fn call_party(
        &self,
        peer: PeerId,
        conv: &ConversationMeta,
    ) -> Result<(Author, String), RelayError> {
        let role = self.role(peer)?;
        role.may_read(conv)?;
        match role {
            Role::Visitor { .. } if conv.closed => Err(RelayError::Forbidden(
                "this conversation is closed: write to reopen it",
            )),
            // In the queue, a call rings every available agent of the site.
            Role::Visitor { .. }
                if conv.agent.is_none()
                    && !self.calls.contains_key(&conv.id)
                    && !(self.desk.agent_of(&conv.id) == Some(None)
                        && self.team.any_available(&conv.site)) =>
            {
                Err(RelayError::Forbidden(
                    "no agent can answer a call now: write, and one will join",
                ))
            }
            Role::Visitor { .. } => Ok((Author::Visitor, "Visitor".to_owned())),
            Role::Agent { .. } => match role.agent_post(conv)? {
                AgentPost::Assigned => {
                    let name = conv
                        .agent
                        .as_ref()
                        .map_or_else(String::new, |a| a.name.clone());
                    Ok((Author::Agent, name))
                }
                AgentPost::TakesIt => Err(RelayError::Forbidden("take the conversation first")),
            },
        }
    }

    /// Applies a call action from `peer`: everyone joined hears of the new call, and the
    /// record gets a note when the action is worth one.
    fn call_action(
        &mut self,
        now: i64,
        peer: PeerId,
        conv: &ConversationMeta,
        action: CallAction,
        out: &mut Out,
    ) -> Result<(), RelayError> {
        let (side, name) = self.call_party(peer, conv)?;
        self.calls_changed = true;
        // Ringing and toggling reach the other side and the record: a few a minute. Answering,
        // declining, ending and resuming are never held back.
        if matches!(action, CallAction::Start { .. } | CallAction::Media { .. }) {
            let per_minute = self.limits.call_actions_per_minute;
            let allowed = self
                .call_actions
                .entry(conv.id.clone())
                .or_insert_with(|| RateLimit::per_window(per_minute, 60_000, now))
                .allow(now);
            if !allowed {
                return Err(RelayError::RateLimited);
            }
        }
        match action {
            CallAction::Start { kind } if !conv.features.allows(kind) => {
                return Err(RelayError::Forbidden(match kind {
                    CallKind::Voice => "this site does not offer voice calls",
                    CallKind::Video => "this site does not offer video calls",
                    CallKind::Screen => "this site does not offer screen sharing",
                }))
            }
            CallAction::Media { media, on: true } if !conv.features.allows_media(media) => {
                return Err(RelayError::Forbidden(match media {
                    MediaKind::Camera => "this site does not offer video",
                    MediaKind::Screen => "this site does not offer screen sharing",
                }))
            }
            _ => {}
        }
        let me = self.here(peer);
        let node = self.limits.node;
        let call = self.calls.get_mut(&conv.id);
        let note = match (action, call) {
            (CallAction::Start { kind }, None) => {
                if conv.agent.is_none() {
                    if kind == CallKind::Screen {
                        return Err(RelayError::Forbidden(
                            "screen sharing starts once an agent has joined",
                        ));
                    }
                    // Like a phone queue: every available agent of the site rings.
                    let members = self.members.get(&conv.id);
                    let ring: BTreeSet<PeerId> = self
                        .team
                        .available_consoles(&conv.site)
                        .filter(|p| !members.is_some_and(|m| m.contains(p)))
                        .collect();
                    self.ringing.insert(conv.id.clone(), ring);
                }
                self.calls_started += 1;
                self.calls.insert(
                    conv.id.clone(),
                    Call {
                        id: format!("{node:x}-{now}-{}", self.calls_started),
                        rev: 0,
                        by: node,
                        site: conv.site.clone(),
                        kind,
                        caller: side,
                        caller_name: name,
                        caller_end: Some(me),
                        callee_end: None,
                        phase: CallPhase::Ringing,
                        since: now,
                        away_since: None,
                        over: false,
                        held: Vec::new(),
                        restored: false,
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
                call.callee_end = Some(me);
                call.since = now;
                out.push(Effect::SaveCall {
                    conversation: conv.id.clone(),
                    call: Some(call.record()),
                });
                Some(match call.kind {
                    CallKind::Screen => SystemEvent::Media {
                        who: call.caller_name.clone(),
                        media: MediaKind::Screen,
                        on: true,
                    },
                    kind => SystemEvent::CallStarted { call: kind },
                })
            }
            (CallAction::Decline, Some(call))
                if call.phase == CallPhase::Ringing && call.caller != side =>
            {
                let call = call.clone();
                self.calls.remove(&conv.id);
                self.call_over(now, &conv.id, call, SystemEvent::CallDeclined, out);
                return Ok(());
            }
            (CallAction::HangUp, Some(call)) if call.is_party(me) => {
                let call = call.clone();
                let note = call.ended_note(now);
                self.calls.remove(&conv.id);
                self.call_over(now, &conv.id, call, note, out);
                return Ok(());
            }
            // The socket that resumes holds the call's peer connection (another tab never
            // does), so it takes the end over even from a socket the relay still thinks is
            // open: after a network drop the old one may linger until its TCP times out.
            (CallAction::Resume, Some(call)) if call.phase == CallPhase::Active => {
                *call.end(side) = Some(me);
                if call.caller_end.is_some() && call.callee_end.is_some() {
                    call.away_since = None;
                }
                // What the other end said meanwhile (held here; other nodes send theirs
                // when they hear of the new end).
                self.send_held(&conv.id, out);
                None
            }
            (CallAction::Media { media, on }, Some(call))
                if call.phase == CallPhase::Active && call.is_party(me) =>
            {
                let toggle = self
                    .toggles
                    .entry((conv.id.clone(), side, media))
                    .or_insert_with(|| Toggle {
                        site: conv.site.clone(),
                        name,
                        on,
                        recorded: !on,
                        at: now,
                    });
                toggle.on = on;
                toggle.at = now;
                None
            }
            (_, None) => return Err(RelayError::Forbidden("there is no call")),
            (_, Some(_)) => return Err(RelayError::Forbidden("not possible in this call")),
        };
        let started = self.calls.get(&conv.id).map(|c| c.note_id("start"));
        self.publish_call(&conv.id, out);
        if let (Some(note), Some(id)) = (note, started) {
            out.push(system_note_once(now, conv, note, id));
        }
        Ok(())
    }

    /// The call of `conv` as `peer` sees it.
    fn call_msg(&self, conv: &ConversationId, peer: PeerId) -> ServerMsg {
        ServerMsg::Call {
            conversation: conv.clone(),
            call: self.calls.get(conv).map(|c| c.info(self.here(peer))),
        }
    }

    /// Where signaling from `peer` in `conv` goes: the side it is for and that side's end
    /// (`None` while it is reconnecting).
    fn signal_target(
        &self,
        peer: PeerId,
        conv: &ConversationId,
    ) -> Result<(Author, Option<End>), RelayError> {
        let call = self
            .calls
            .get(conv)
            .filter(|c| c.phase == CallPhase::Active)
            .ok_or(RelayError::Forbidden("there is no active call"))?;
        let me = Some(self.here(peer));
        if call.caller_end == me {
            Ok((other_side(call.caller), call.callee_end))
        } else if call.callee_end == me {
            Ok((call.caller, call.caller_end))
        } else {
            Err(RelayError::Forbidden("this connection is not in the call"))
        }
    }

    /// Passes a signal from `peer` on to the other end of `conv`'s call: on this node, on
    /// another (through the bus), or held here while it is reconnecting (the oldest go first
    /// past [`HELD_SIGNALS`]).
    fn signal(
        &mut self,
        peer: PeerId,
        conversation: ConversationId,
        payload: String,
        out: &mut Out,
    ) {
        let (to, end) = match self.signal_target(peer, &conversation) {
            Ok(target) => target,
            Err(e) => return out.error_about(peer, e, (Some(conversation), None)),
        };
        match end {
            Some(end) if end.node == self.limits.node => out.send(
                end.peer,
                ServerMsg::Signal {
                    conversation,
                    payload,
                },
            ),
            Some(_) => out.push(Effect::Publish(BusEvent::Signal {
                conversation,
                to,
                payload,
            })),
            None => {
                if let Some(call) = self.calls.get_mut(&conversation) {
                    if call.held.len() >= HELD_SIGNALS {
                        call.held.remove(0);
                    }
                    call.held.push((to, payload));
                }
            }
        }
    }
}

/// How often the rate buckets that are full again are forgotten.
const BUCKET_SWEEP_MS: i64 = 60_000;

/// `media` without its TURN servers (and so without credentials).
fn without_turn(mut media: MediaConfig) -> MediaConfig {
    media.ice_servers.retain(|s| {
        s.urls
            .iter()
            .all(|u| u.starts_with("stun:") || u.starts_with("stuns:"))
    });
    media
}

fn other_side(side: Author) -> Author {
    match side {
        Author::Visitor => Author::Agent,
        _ => Author::Visitor,
    }
}

/// A rating comment or transfer note: trimmed, none when blank, at most
/// [`MAX_COMMENT_CHARS`].
fn comment_of(text: Option<String>) -> Result<Option<String>, RelayError> {
    let text = text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    if text
        .as_ref()
        .is_some_and(|t| t.chars().count() > MAX_COMMENT_CHARS)
    {
        return Err(RelayError::BadText("that is too long"));
    }
    Ok(text)
}

/// The record's line for a visitor's rating.
fn rating_note(
    now: i64,
    meta: &ConversationMeta,
    rating: Rating,
    comment: Option<String>,
) -> Effect {
    system_note(now, meta, SystemEvent::Rated { rating, comment })
}

/// An agent's private note for the record.
fn agent_note(
    now: i64,
    meta: &ConversationMeta,
    agent: &AgentRef,
    text: String,
    client_id: Option<ClientMsgId>,
    reply: Reply,
) -> Effect {
    Effect::Append {
        message: NewMessage {
            conversation: meta.id.clone(),
            client_id,
            author: Author::Note,
            author_name: Some(agent.name.clone()),
            text,
            event: None,
            attachment: None,
            at: now,
        },
        site: meta.site.clone(),
        reply,
    }
}

/// A system message for the record.
fn system_note(now: i64, meta: &ConversationMeta, event: SystemEvent) -> Effect {
    note_with_id(now, meta, event, None)
}

/// A system message that the record keeps once under `id`, however many nodes write it.
fn system_note_once(
    now: i64,
    meta: &ConversationMeta,
    event: SystemEvent,
    id: ClientMsgId,
) -> Effect {
    note_with_id(now, meta, event, Some(id))
}

fn note_with_id(
    now: i64,
    meta: &ConversationMeta,
    event: SystemEvent,
    client_id: Option<ClientMsgId>,
) -> Effect {
    Effect::Append {
        message: NewMessage {
            conversation: meta.id.clone(),
            client_id,
            author: Author::System,
            author_name: None,
            text: event.english(),
            event: Some(event),
            attachment: None,
            at: now,
        },
        site: meta.site.clone(),
        reply: Reply::None,
    }
}

/// The conversation and chat message a request is about, for its errors.
fn request_context(request: &Request) -> (Option<ConversationId>, Option<ClientMsgId>) {
    match request {
        Request::Frame(msg) => about(msg),
        Request::Upload { client_id, .. } => (None, client_id.clone()),
    }
}

fn after_take_client_id(then: &AfterTake) -> Option<ClientMsgId> {
    match then {
        AfterTake::Chat { client_id, .. } => Some(client_id.clone()),
        AfterTake::File { client_id, .. } => client_id.clone(),
        AfterTake::Nothing | AfterTake::Call(_) => None,
    }
}

/// The effects of one event, in order.
#[derive(Default)]
struct Out(Vec<Effect>);

impl Out {
    fn push(&mut self, e: Effect) {
        self.0.push(e);
    }

    fn send(&mut self, peer: PeerId, msg: ServerMsg) {
        self.0.push(Effect::Send(peer, msg));
    }

    fn error(&mut self, peer: PeerId, e: RelayError) {
        self.error_about(peer, e, (None, None));
    }

    fn error_about(
        &mut self,
        peer: PeerId,
        e: RelayError,
        (conversation, client_id): (Option<ConversationId>, Option<ClientMsgId>),
    ) {
        self.send(peer, e.answering(conversation, client_id));
    }
}

/// The largest frame a chat message can be: its text (at most `MAX_TEXT_CHARS` characters of
/// up to 4 bytes, escaped as up to 6) and its ids.
const MAX_CHAT_FRAME_BYTES: usize = MAX_TEXT_CHARS * 6 + 1024;

/// The rules for a chat message or a note: its text, then its id.
fn check_message(text: &str, client_id: &ClientMsgId) -> Result<(), RelayError> {
    check_text(text).map_err(RelayError::BadText)?;
    check_client_id(client_id)
}

/// A `client_id` is an id, not a payload: at most [`MAX_CLIENT_ID_CHARS`] characters.
pub fn check_client_id(id: &ClientMsgId) -> Result<(), RelayError> {
    if id.0.is_empty() || id.0.chars().count() > MAX_CLIENT_ID_CHARS {
        return Err(RelayError::BadFrame(format!(
            "client_id must have 1 to {MAX_CLIENT_ID_CHARS} characters"
        )));
    }
    Ok(())
}

/// How often the agents' sessions are checked, in ms.
pub const SESSION_CHECK_MS: i64 = 2_000;

/// What a frame is about: its conversation, and for a chat message its client id.
fn about(msg: &ClientMsg) -> (Option<ConversationId>, Option<ClientMsgId>) {
    match msg {
        ClientMsg::Chat {
            conversation,
            client_id,
            ..
        }
        | ClientMsg::Note {
            conversation,
            client_id,
            ..
        } => (Some(conversation.clone()), Some(client_id.clone())),
        ClientMsg::Join { conversation, .. }
        | ClientMsg::Take { conversation }
        | ClientMsg::Read { conversation, .. }
        | ClientMsg::Call { conversation, .. }
        | ClientMsg::Typing { conversation }
        | ClientMsg::Signal { conversation, .. }
        | ClientMsg::Close { conversation }
        | ClientMsg::Transfer { conversation, .. }
        | ClientMsg::Rate { conversation, .. }
        | ClientMsg::Visit { conversation, .. }
        | ClientMsg::SetVisitor { conversation, .. }
        | ClientMsg::Contact { conversation, .. }
        | ClientMsg::Transcript { conversation, .. } => (Some(conversation.clone()), None),
        ClientMsg::Hello { .. } | ClientMsg::Ping | ClientMsg::Presence { .. } => (None, None),
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

    /// `count` per `window_ms`: a full bucket of `count`, refilled over the window.
    pub fn per_window(count: u32, window_ms: i64, now_ms: i64) -> Self {
        Self {
            tokens: f64::from(count),
            burst: f64::from(count),
            per_ms: f64::from(count) / window_ms.max(1) as f64,
            last_ms: now_ms,
        }
    }

    /// Whether anything is left at `now_ms` (a bucket may be in debt after [`Self::spend`]).
    pub fn available(&mut self, now_ms: i64) -> bool {
        let elapsed = (now_ms - self.last_ms).max(0) as f64;
        self.last_ms = now_ms.max(self.last_ms);
        self.tokens = (self.tokens + elapsed * self.per_ms).min(self.burst);
        self.tokens > 0.0
    }

    /// Takes `n` tokens, into debt if need be.
    pub fn spend(&mut self, now_ms: i64, n: usize) {
        self.available(now_ms);
        self.tokens -= n as f64;
    }

    /// Whether the bucket would be full at `now_ms` (so forgetting it changes nothing).
    pub fn idle(&self, now_ms: i64) -> bool {
        self.tokens + (now_ms - self.last_ms).max(0) as f64 * self.per_ms >= self.burst
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
    use escalera_protocol::{ConversationStatus, ErrorCode, IceServer};

    /// The address every test visitor comes from, unless a test says otherwise.
    fn home() -> IpAddr {
        IpAddr::from([192, 0, 2, 1])
    }

    fn site(k: &str) -> SiteKey {
        SiteKey::from(k)
    }
    fn agent(id: &str) -> AgentRef {
        AgentRef {
            id: AgentId::from(id),
            name: format!("Agent {id}"),
        }
    }
    fn meta(id: &str, s: &str, a: Option<&str>) -> ConversationMeta {
        ConversationMeta::new(ConversationId::from(id), site(s), a.map(agent))
    }
    fn media() -> MediaConfig {
        MediaConfig {
            ice_servers: Vec::new(),
            max_upload: 1,
            email: false,
        }
    }
    fn msg(conv: &str, seq: u64) -> Message {
        Message {
            conversation: conv.into(),
            seq,
            client_id: None,
            author: Author::Visitor,
            author_name: None,
            text: format!("m{seq}"),
            event: None,
            attachment: None,
            at: 0,
        }
    }
    fn hello() -> ClientMsg {
        ClientMsg::Hello {
            protocol: PROTOCOL_VERSION,
            token: None,
            identity: None,
            resume: None,
        }
    }
    fn chat(conv: &str, id: &str) -> ClientMsg {
        ClientMsg::Chat {
            conversation: conv.into(),
            client_id: id.into(),
            text: "hi".into(),
        }
    }
    fn call(conv: &str, action: CallAction) -> ClientMsg {
        ClientMsg::Call {
            conversation: conv.into(),
            action,
        }
    }
    const VOICE: CallAction = CallAction::Start {
        kind: CallKind::Voice,
    };

    /// A core driven by hand: the tests play the hub, answering its effects.
    struct World {
        core: Core,
        now: i64,
    }

    impl World {
        fn new() -> Self {
            Self {
                core: Core::new(Limits {
                    history_page: 3,
                    catch_up_buffer: 4,
                    ..Limits::default()
                }),
                now: 1_000,
            }
        }

        fn ev(&mut self, e: Event) -> Vec<Effect> {
            self.core.handle(self.now, e)
        }

        /// `effects` with what they publish delivered back (as the bus does), and what that
        /// delivery does in their place.
        fn through_bus(&mut self, effects: Vec<Effect>) -> Vec<Effect> {
            let mut out = Vec::new();
            for e in effects {
                match e {
                    Effect::Publish(event) => out.extend(self.ev(Event::Delivered(event))),
                    other => out.push(other),
                }
            }
            out
        }

        fn text(&mut self, peer: u64, m: &ClientMsg) -> Vec<Effect> {
            let text = serde_json::to_string(m).unwrap();
            self.ev(Event::Text {
                peer: PeerId(peer),
                text,
            })
        }

        /// Visitor `peer` of site `s`, welcomed into `conv`.
        fn visitor(&mut self, peer: u64, conv: &ConversationMeta) {
            self.ev(Event::Opened {
                peer: PeerId(peer),
                caller: Caller::Visitor {
                    site: conv.site.clone(),
                    site_name: "Shop".into(),
                    features: SiteFeatures::default(),
                    look: SiteLook::default(),
                    identity: IdentityRule::default(),
                    address: home(),
                },
            });
            assert!(matches!(
                self.text(peer, &hello())[..],
                [Effect::ResolveVisitor { .. }]
            ));
            self.ev(Event::VisitorReady {
                peer: PeerId(peer),
                token: VisitorToken("t".into()),
                conversation: conv.clone(),
                saved: true,
                media: media(),
            });
        }

        /// A clock tick, without the periodic session check (tested on its own).
        fn tick(&mut self) -> Vec<Effect> {
            let mut e = self.ev(Event::Tick);
            e.retain(|e| !matches!(e, Effect::CheckSessions(_)));
            e
        }

        /// Agent `peer`, welcomed.
        fn agent(&mut self, peer: u64, id: &str, scope: Scope) {
            self.ev(Event::Opened {
                peer: PeerId(peer),
                caller: Caller::Agent {
                    agent: agent(id),
                    scope: scope.clone(),
                    session: format!("session-{}", peer),
                },
            });
            assert!(matches!(
                self.text(peer, &hello())[..],
                [Effect::LoadDesk { .. }]
            ));
            self.ev(Event::DeskReady {
                peer: PeerId(peer),
                team: vec![(agent(id), scope, Presence::Available, 5)],
                conversations: Vec::new(),
                read: Vec::new(),
                media: media(),
            });
        }

        /// A frame that names a conversation: the core asks for it, the test answers.
        fn act(&mut self, peer: u64, m: ClientMsg, conv: &ConversationMeta) -> Vec<Effect> {
            let asked = self.text(peer, &m);
            assert_eq!(
                asked,
                vec![Effect::Load {
                    peer: PeerId(peer),
                    conversation: conv.id.clone(),
                    request: Request::Frame(m.clone()),
                }]
            );
            self.ev(Event::Loaded {
                peer: PeerId(peer),
                request: Request::Frame(m),
                meta: Some(conv.clone()),
            })
        }

        /// Joins and answers the history reads with empty pages.
        fn join(&mut self, peer: u64, conv: &ConversationMeta) {
            let join = ClientMsg::Join {
                conversation: conv.id.clone(),
                after_seq: 0,
            };
            self.act(peer, join, conv);
            self.ev(page_of(PeerId(peer), conv.id.clone(), Vec::new(), None));
        }
    }

    /// A page of history as the store would read it (pages of 3, as in [`World::new`]).
    fn page_of(
        peer: PeerId,
        conversation: ConversationId,
        messages: Vec<Message>,
        read: Option<u64>,
    ) -> Event {
        Event::History {
            peer,
            conversation,
            upto: messages.last().map_or(0, |m| m.seq),
            full: messages.len() >= 3,
            messages,
            read,
        }
    }

    /// The frames sent, as (peer, frame).
    fn sent(effects: &[Effect]) -> Vec<(u64, ServerMsg)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send(p, m) => Some((p.0, m.clone())),
                _ => None,
            })
            .collect()
    }

    fn error_code(effects: &[Effect]) -> Option<ErrorCode> {
        sent(effects).into_iter().find_map(|(_, m)| match m {
            ServerMsg::Error { code, .. } => Some(code),
            _ => None,
        })
    }

    fn appends(effects: &[Effect]) -> Vec<String> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Append { message, .. } => Some(message.text.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_peer_set_keeps_each_peer_once_in_order() {
        let mut set = PeerSet::default();
        assert!(set.insert(PeerId(3)) && set.insert(PeerId(1)) && !set.insert(PeerId(3)));
        assert_eq!(
            set.into_iter().copied().collect::<Vec<_>>(),
            [PeerId(1), PeerId(3)]
        );
        assert!(set.remove(&PeerId(3)) && !set.remove(&PeerId(3)));
        assert_eq!((set.len(), set.contains(&PeerId(1))), (1, true));
        assert!(set.remove(&PeerId(1)) && set.is_empty());
    }

    #[test]
    fn hello_comes_first_once_and_in_this_protocol() {
        let mut w = World::new();
        let c1 = meta("c1", "s1", None);
        w.ev(Event::Opened {
            peer: PeerId(1),
            caller: Caller::Visitor {
                site: site("s1"),
                site_name: "Shop".into(),
                features: SiteFeatures::default(),
                look: SiteLook::default(),
                identity: IdentityRule::default(),
                address: home(),
            },
        });
        let before = w.text(1, &ClientMsg::Ping);
        assert_eq!(error_code(&before), Some(ErrorCode::BadHello));
        assert!(before.contains(&Effect::Close(PeerId(1))));

        w.visitor(2, &c1);
        let again = w.text(2, &hello());
        assert_eq!(error_code(&again), Some(ErrorCode::BadHello));
        assert!(again.contains(&Effect::Close(PeerId(2))));

        w.ev(Event::Opened {
            peer: PeerId(3),
            caller: Caller::Visitor {
                site: site("s1"),
                site_name: "Shop".into(),
                features: SiteFeatures::default(),
                look: SiteLook::default(),
                identity: IdentityRule::default(),
                address: home(),
            },
        });
        let old = ClientMsg::Hello {
            protocol: PROTOCOL_VERSION + 1,
            token: None,
            identity: None,
            resume: None,
        };
        let refused = w.text(3, &old);
        assert_eq!(error_code(&refused), Some(ErrorCode::BadHello));
        assert!(refused.contains(&Effect::Close(PeerId(3))));

        // A welcomed visitor pings.
        assert_eq!(
            sent(&w.text(2, &ClientMsg::Ping)),
            vec![(2, ServerMsg::Pong)]
        );
    }

    #[test]
    fn oversized_malformed_binary_and_too_many_frames_are_refused() {
        let mut w = World::new();
        let c1 = meta("c1", "s1", None);
        w.visitor(1, &c1);
        let big = "x".repeat(MAX_FRAME_BYTES + 1);
        let e = w.ev(Event::Text {
            peer: PeerId(1),
            text: big,
        });
        assert_eq!(error_code(&e), Some(ErrorCode::TooLarge));
        let e = w.ev(Event::Text {
            peer: PeerId(1),
            text: "{\"type\":\"nope\"}".into(),
        });
        assert_eq!(error_code(&e), Some(ErrorCode::BadFrame));
        let e = w.ev(Event::Binary { peer: PeerId(1) });
        assert_eq!(error_code(&e), Some(ErrorCode::BadFrame));
        // The burst (100 by default), then refused until time refills it.
        let mut limited = 0;
        for _ in 0..120 {
            if error_code(&w.text(1, &ClientMsg::Ping)) == Some(ErrorCode::RateLimited) {
                limited += 1;
            }
        }
        assert_eq!(limited, 120 - (100 - 3));
        // A refused chat message is named, so the sender knows to send it again.
        let chat = ClientMsg::Chat {
            conversation: "c1".into(),
            client_id: "m9".into(),
            text: "hi".into(),
        };
        let e = w.text(1, &chat);
        assert!(
            matches!(&sent(&e)[..], [(1, ServerMsg::Error {
                code: ErrorCode::RateLimited,
                conversation: Some(c),
                client_id: Some(id),
                ..
            })] if c.0 == "c1" && id.0 == "m9"),
            "{e:?}"
        );
        w.now += 1_000;
        assert_eq!(
            sent(&w.text(1, &ClientMsg::Ping)),
            vec![(1, ServerMsg::Pong)]
        );
    }

    #[test]
    fn visitors_reach_only_their_conversation_agents_only_their_sites() {
        let mut w = World::new();
        let (c1, c2) = (meta("c1", "s1", None), meta("c2", "s2", None));
        w.visitor(1, &c1);
        w.agent(10, "a", Scope::Sites([site("s2")].into()));
        let join = |c: &str| ClientMsg::Join {
            conversation: c.into(),
            after_seq: 0,
        };
        assert_eq!(
            error_code(&w.act(1, join("c2"), &c2)),
            Some(ErrorCode::NotFound)
        );
        assert_eq!(
            error_code(&w.act(10, join("c1"), &c1)),
            Some(ErrorCode::NotFound)
        );
        assert!(matches!(
            w.act(10, join("c2"), &c2)[..],
            [Effect::Subscribe(_), Effect::ReadHistory { .. }]
        ));
        // A conversation the store does not know.
        w.text(1, &join("zz"));
        let e = w.ev(Event::Loaded {
            peer: PeerId(1),
            request: Request::Frame(join("zz")),
            meta: None,
        });
        assert_eq!(error_code(&e), Some(ErrorCode::NotFound));
    }

    #[test]
    fn only_agents_keep_read_marks_and_the_visitor_sees_them() {
        let mut w = World::new();
        let c1 = meta("c1", "s1", None);
        w.visitor(1, &c1);
        w.agent(10, "a", Scope::All);
        let read = ClientMsg::Read {
            conversation: "c1".into(),
            seq: 7,
        };
        assert_eq!(
            error_code(&w.act(1, read.clone(), &c1)),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            w.act(10, read, &c1),
            vec![Effect::MarkRead {
                agent: "a".into(),
                conversation: "c1".into(),
                seq: 7
            }]
        );
        // Once stored, the visitor hears it.
        let e = w.ev(Event::MarkedRead {
            conversation: "c1".into(),
            seq: 7,
        });
        let e = w.through_bus(e);
        assert_eq!(
            sent(&e),
            vec![(
                1,
                ServerMsg::Read {
                    conversation: "c1".into(),
                    seq: 7
                }
            )]
        );
        // A visitor joining later hears how far it was read, after the history.
        w.visitor(2, &c1);
        let join = ClientMsg::Join {
            conversation: "c1".into(),
            after_seq: 0,
        };
        w.act(2, join, &c1);
        let e = w.ev(page_of(PeerId(2), "c1".into(), vec![msg("c1", 1)], Some(7)));
        assert!(sent(&e).contains(&(
            2,
            ServerMsg::Read {
                conversation: "c1".into(),
                seq: 7
            }
        )));
    }

    #[test]
    fn typing_reaches_the_other_side_only() {
        let (mut w, c1) = call_world(); // visitors 1 and 3, agent "a" on 10, all joined
        w.agent(20, "b", Scope::All);
        w.join(20, &c1);
        let typing = ClientMsg::Typing {
            conversation: "c1".into(),
        };
        let to = |e: &[Effect]| -> Vec<u64> {
            sent(e)
                .into_iter()
                .filter(|(_, m)| matches!(m, ServerMsg::Typing { .. }))
                .map(|(p, _)| p)
                .collect()
        };
        // The visitor types: the agents joined hear it, not the visitor's other tab, and the
        // store is not asked (a visitor's own conversation is known).
        let e = w.text(1, &typing);
        assert!(!e.iter().any(|e| matches!(e, Effect::Load { .. })));
        let e = w.through_bus(e);
        assert_eq!(to(&e), vec![10, 20]);
        // The assigned agent types: the visitor's tabs, with the agent's name.
        let e = w.act(10, typing.clone(), &c1);
        let e = w.through_bus(e);
        assert_eq!(to(&e), vec![1, 3]);
        assert!(sent(&e).iter().any(|(_, m)| matches!(
            m,
            ServerMsg::Typing { author: Author::Agent, name: Some(n), .. } if n == "Agent a"
        )));
        // Another agent looking on: nothing reaches the visitor.
        let e = w.act(20, typing, &c1);
        assert!(to(&w.through_bus(e)).is_empty());
    }

    #[test]
    fn messages_from_several_nodes_reach_a_joined_connection_in_order_once() {
        let mut w = World::new();
        let c1 = meta("c1", "s1", None);
        w.visitor(1, &c1);
        w.join(1, &c1);
        let deliver = |w: &mut World, seq: u64, author: Author| {
            let message = Message {
                author,
                ..msg("c1", seq)
            };
            w.ev(Event::Delivered(BusEvent::Message {
                site: site("s1"),
                message: Box::new(message),
            }))
        };
        let seqs = |e: &[Effect]| -> Vec<u64> {
            sent(e)
                .into_iter()
                .filter_map(|(_, m)| match m {
                    ServerMsg::Message(m) => Some(m.seq),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(seqs(&deliver(&mut w, 1, Author::Visitor)), [1]);
        // An agent's note is not for the visitor, and is no gap either.
        assert_eq!(seqs(&deliver(&mut w, 2, Author::Note)), Vec::<u64>::new());
        assert_eq!(seqs(&deliver(&mut w, 3, Author::Agent)), [3]);
        // 5 before 4 (another node's, still on its way): nothing yet; the store is read
        // from 3 on.
        let e = deliver(&mut w, 5, Author::Agent);
        assert!(seqs(&e).is_empty());
        assert!(
            e.iter().any(|e| matches!(
                e,
                Effect::ReadHistory {
                    after: 3,
                    peer: PeerId(1),
                    ..
                }
            )),
            "{e:?}"
        );
        // 4 arrives meanwhile, and 6: they wait with 5 for the page.
        assert!(seqs(&deliver(&mut w, 6, Author::Agent)).is_empty());
        assert!(seqs(&deliver(&mut w, 4, Author::Agent)).is_empty());
        // The store has 4 and 5: they go out as messages (a live connection gets no history
        // page), then 6, each once.
        let page = vec![msg("c1", 4), msg("c1", 5)];
        let e = w.ev(page_of(PeerId(1), "c1".into(), page, None));
        assert_eq!(seqs(&e), [4, 5, 6]);
        assert_eq!(sent(&e).len(), 3, "nothing but the messages: {e:?}");
        // Copies of what was sent are sent again to nobody.
        for seq in [3, 5, 6] {
            assert!(seqs(&deliver(&mut w, seq, Author::Agent)).is_empty());
        }
        assert_eq!(seqs(&deliver(&mut w, 7, Author::Agent)), [7]);
    }

    #[test]
    fn a_visitor_chat_is_stored_then_acked_then_fanned_out_to_members_only() {
        let mut w = World::new();
        let (c1, c2) = (meta("c1", "s1", None), meta("c2", "s1", None));
        w.visitor(1, &c1);
        w.visitor(2, &c2);
        w.agent(10, "a", Scope::All);
        w.agent(11, "b", Scope::Sites([site("s9")].into()));
        for (p, c) in [(1, &c1), (2, &c2), (10, &c1)] {
            w.join(p, c);
        }
        let e = w.act(1, chat("c1", "x"), &c1);
        let [Effect::Append {
            message,
            reply: Reply::Ack(PeerId(1)),
            ..
        }] = &e[..]
        else {
            panic!("{e:?}")
        };
        assert_eq!(
            (message.author, message.text.as_str()),
            (Author::Visitor, "hi")
        );
        // Nothing is said before the commit. After it: the ack, then the bus.
        let stored = Message {
            client_id: Some("x".into()),
            ..msg("c1", 1)
        };
        let summary = ConversationSummary {
            id: "c1".into(),
            site: site("s1"),
            site_name: "Shop".into(),
            visitor_label: "Visitor c1".into(),
            status: ConversationStatus::Waiting,
            agent: None,
            last_seq: 1,
            preview: "m1".into(),
            last_at: 0,
            rating: None,
            features: SiteFeatures::default(),
            verified: false,
        };
        let e = w.ev(Event::Appended {
            reply: Reply::Ack(PeerId(1)),
            site: site("s1"),
            message: stored.clone(),
            fresh: true,
        });
        assert!(matches!(sent(&e)[..], [(1, ServerMsg::Ack { seq: 1, .. })]));
        let Some(Effect::Publish(event)) = e.last().cloned() else {
            panic!("{e:?}")
        };
        // Two messages: the list row is read once at the flush, however many messages came.
        let next = Message {
            client_id: Some("y".into()),
            ..msg("c1", 2)
        };
        let second = BusEvent::Message {
            site: site("s1"),
            message: Box::new(next.clone()),
        };
        for (event, message) in [(event.clone(), &stored), (second, &next)] {
            let out = sent(&w.ev(Event::Delivered(event)));
            let to: Vec<u64> = out.iter().map(|(p, _)| *p).collect();
            // Members of c1 get the message; nobody else anything yet.
            assert_eq!(to, vec![1, 10]);
            assert_eq!(out[0].1, ServerMsg::Message(message.clone()));
        }
        // A copy of a message already sent (a second node's) is sent to nobody.
        assert!(sent(&w.ev(Event::Delivered(event))).is_empty());
        assert_eq!(
            w.ev(Event::Flush),
            vec![Effect::LoadSummaries(vec!["c1".into()])]
        );
        assert!(w.ev(Event::Flush).is_empty());
        // The row goes to the agents of s1 only.
        let out = sent(&w.ev(Event::Summaries(vec![summary.clone()])));
        assert_eq!(out, vec![(10, ServerMsg::Conversation(summary))]);
        // A resend is acked again, and not published twice.
        let e = w.ev(Event::Appended {
            reply: Reply::Ack(PeerId(1)),
            site: site("s1"),
            message: stored,
            fresh: false,
        });
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn email_goes_to_a_visitor_without_a_socket_and_to_agents_about_a_long_wait() {
        let mut w = World::new();
        w.core.limits.email = true;
        w.core.limits.alert_after_ms = 60_000;
        let c1 = meta("c1", "s1", None);
        let reply = |w: &mut World, author: Author, seq: u64| {
            let message = Message {
                author,
                author_name: (author == Author::Agent).then(|| "Ana".into()),
                ..msg("c1", seq)
            };
            w.ev(Event::Appended {
                reply: Reply::None,
                site: site("s1"),
                message,
                fresh: true,
            })
        };
        let mailed = |e: &[Effect]| {
            e.iter()
                .filter_map(|e| match e {
                    Effect::MailReply { seq, .. } => Some(*seq),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        // Nobody of the conversation is here: an agent's reply is mailed, nothing else is.
        assert_eq!(mailed(&reply(&mut w, Author::Agent, 2)), vec![2]);
        assert!(mailed(&reply(&mut w, Author::Visitor, 3)).is_empty());
        assert!(mailed(&reply(&mut w, Author::Note, 4)).is_empty());
        // With the visitor's widget open, the reply is read there.
        w.visitor(1, &c1);
        assert!(mailed(&reply(&mut w, Author::Agent, 5)).is_empty());

        // The transcript, on the visitor's own word, once a minute.
        let ask = ClientMsg::Transcript {
            conversation: "c1".into(),
            email: "v@example.com".into(),
        };
        let e = w.act(1, ask.clone(), &c1);
        assert!(
            matches!(&e[..], [Effect::MailTranscript { email, .. }] if email == "v@example.com"),
            "{e:?}"
        );
        w.now += 59_000;
        assert_eq!(
            error_code(&w.act(1, ask.clone(), &c1)),
            Some(ErrorCode::LimitReached)
        );
        w.now += 1_000;
        assert!(matches!(
            &w.act(1, ask.clone(), &c1)[..],
            [Effect::MailTranscript { .. }]
        ));
        let bad = ClientMsg::Transcript {
            conversation: "c1".into(),
            email: "nope".into(),
        };
        assert_eq!(error_code(&w.act(1, bad, &c1)), Some(ErrorCode::BadText));

        // A conversation waiting a minute with no agent available: its site's agents are
        // mailed, once for that wait.
        let alerts = |e: &[Effect]| {
            e.iter()
                .filter_map(|e| match e {
                    Effect::MailAlert { conversation, .. } => Some(conversation.to_string()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let start = w.now;
        w.core.desk.opened("c2".into(), site("s1"), None, start);
        w.now = start + 59_999;
        assert!(alerts(&w.tick()).is_empty());
        w.now = start + 60_000;
        assert_eq!(alerts(&w.tick()), vec!["c2"]);
        w.now = start + 120_000;
        assert!(alerts(&w.tick()).is_empty());
        // An agent available for the site: no alert for the next one that waits.
        w.agent(10, "a1", Scope::All);
        w.core.desk.opened("c3".into(), site("s1"), None, w.now);
        w.now += 600_000;
        assert!(alerts(&w.tick()).is_empty());

        // A relay without email mails nothing and says so.
        w.core.limits.email = false;
        assert!(mailed(&reply(&mut w, Author::Agent, 6)).is_empty());
        assert_eq!(error_code(&w.act(1, ask, &c1)), Some(ErrorCode::Forbidden));
    }

    #[test]
    fn a_refused_chat_says_which_message_it_answers() {
        let mut w = World::new();
        let c1 = meta("c1", "s1", None);
        w.visitor(1, &c1);
        let empty = ClientMsg::Chat {
            conversation: "c1".into(),
            client_id: "m7".into(),
            text: "  ".into(),
        };
        let e = w.act(1, empty, &c1);
        assert_eq!(
            sent(&e),
            vec![(
                1,
                RelayError::BadText("The message is empty.")
                    .answering(Some("c1".into()), Some("m7".into()))
            )]
        );
        let e = w.ev(Event::Failed {
            peer: PeerId(1),
            conversation: Some("c1".into()),
            client_id: Some("m8".into()),
            error: RelayError::Internal,
        });
        assert!(matches!(
            &sent(&e)[0].1,
            ServerMsg::Error { code: ErrorCode::Internal, client_id: Some(c), .. } if c.0 == "m8"
        ));
    }

    #[test]
    fn history_comes_in_pages_and_live_messages_wait_for_it() {
        let mut w = World::new();
        let c1 = meta("c1", "s1", None);
        w.visitor(1, &c1);
        let join = ClientMsg::Join {
            conversation: "c1".into(),
            after_seq: 0,
        };
        let e = w.act(1, join, &c1);
        assert!(e.contains(&Effect::ReadHistory {
            peer: PeerId(1),
            conversation: "c1".into(),
            after: 0,
            limit: 3,
            for_visitor: true
        }));
        let deliver = |w: &mut World, seq| {
            w.ev(Event::Delivered(BusEvent::Message {
                site: site("s1"),
                message: Box::new(msg("c1", seq)),
            }))
        };
        // Stored while the history is read: held, not sent.
        assert!(sent(&deliver(&mut w, 4)).is_empty());
        let page = w.ev(page_of(
            PeerId(1),
            "c1".into(),
            (1..=3).map(|s| msg("c1", s)).collect(),
            None,
        ));
        assert_eq!(sent(&page).len(), 1);
        assert!(page.contains(&Effect::ReadHistory {
            peer: PeerId(1),
            conversation: "c1".into(),
            after: 3,
            limit: 3,
            for_visitor: true
        }));
        assert!(sent(&deliver(&mut w, 5)).is_empty());
        // The last page already has 4 (it was committed before the read): 4 is not sent
        // twice, 5 follows, then the call.
        let last = w.ev(page_of(PeerId(1), "c1".into(), vec![msg("c1", 4)], None));
        let frames: Vec<ServerMsg> = sent(&last).into_iter().map(|(_, m)| m).collect();
        assert_eq!(
            frames,
            vec![
                ServerMsg::History {
                    conversation: "c1".into(),
                    messages: vec![msg("c1", 4)],
                    upto: 4
                },
                ServerMsg::Message(msg("c1", 5)),
                ServerMsg::Call {
                    conversation: "c1".into(),
                    call: None
                },
            ]
        );
        // Live from now on.
        assert_eq!(sent(&deliver(&mut w, 6)).len(), 1);
    }

    #[test]
    fn a_joiner_that_falls_too_far_behind_is_closed() {
        let mut w = World::new();
        let c1 = meta("c1", "s1", None);
        w.visitor(1, &c1);
        let join = ClientMsg::Join {
            conversation: "c1".into(),
            after_seq: 0,
        };
        w.act(1, join, &c1);
        let mut closed = false;
        for seq in 1..=5 {
            let e = w.ev(Event::Delivered(BusEvent::Message {
                site: site("s1"),
                message: Box::new(msg("c1", seq)),
            }));
            closed |= e.contains(&Effect::Close(PeerId(1)));
        }
        assert!(closed, "past the catch-up buffer of 4");
    }

    #[test]
    fn the_race_to_take_a_waiting_conversation() {
        let mut w = World::new();
        let c1 = meta("c1", "s1", None);
        w.visitor(1, &c1);
        w.join(1, &c1);
        w.agent(10, "a", Scope::All);
        w.agent(11, "b", Scope::All);
        // Visitors cannot take.
        let take = ClientMsg::Take {
            conversation: "c1".into(),
        };
        assert_eq!(
            error_code(&w.act(1, take.clone(), &c1)),
            Some(ErrorCode::Forbidden)
        );
        // Both agents ask; the store decides. The loser is told who won.
        for p in [10, 11] {
            assert!(matches!(
                w.act(p, take.clone(), &c1)[..],
                [Effect::Assign { .. }]
            ));
        }
        let lost = w.ev(Event::Assigned {
            peer: Some(PeerId(11)),
            meta: c1.clone(),
            agent: agent("b"),
            won: false,
            holder: Some(agent("a")),
            then: AfterTake::Nothing,
        });
        assert_eq!(
            sent(&lost),
            vec![(
                11,
                RelayError::AlreadyTaken("Agent a".into()).answering(Some("c1".into()), None)
            )]
        );
        let won = w.ev(Event::Assigned {
            peer: Some(PeerId(10)),
            meta: c1.clone(),
            agent: agent("a"),
            won: true,
            holder: None,
            then: AfterTake::Nothing,
        });
        assert_eq!(appends(&won), vec!["Agent a joined the conversation"]);
        let Some(Effect::Publish(joined)) = won.first().cloned() else {
            panic!("{won:?}")
        };
        // The visitor hears who joined.
        let out = sent(&w.ev(Event::Delivered(joined)));
        assert!(
            matches!(&out[..], [(1, ServerMsg::AgentJoined { agent_name, .. })] if agent_name == "Agent a")
        );
        // Taking one's own again is nothing; another's is refused at once.
        let mine = meta("c1", "s1", Some("a"));
        assert!(w.act(10, take.clone(), &mine).is_empty());
        assert_eq!(
            error_code(&w.act(11, take, &mine)),
            Some(ErrorCode::AlreadyTaken)
        );
    }

    #[test]
    fn an_agent_replying_to_a_waiting_conversation_takes_it_then_posts() {
        let mut w = World::new();
        let c1 = meta("c1", "s1", None);
        w.agent(10, "a", Scope::All);
        let e = w.act(10, chat("c1", "r1"), &c1);
        let [Effect::Assign { then, .. }] = &e[..] else {
            panic!("{e:?}")
        };
        let e = w.ev(Event::Assigned {
            peer: Some(PeerId(10)),
            meta: c1.clone(),
            agent: agent("a"),
            won: true,
            holder: None,
            then: then.clone(),
        });
        assert_eq!(appends(&e), vec!["Agent a joined the conversation", "hi"]);
        let Some(Effect::Append { message, reply, .. }) = e.last() else {
            panic!()
        };
        assert_eq!(*reply, Reply::Ack(PeerId(10)));
        assert_eq!(message.author_name.as_deref(), Some("Agent a"));
        // Lost: the reply is not stored, and the error names it.
        let e = w.ev(Event::Assigned {
            peer: Some(PeerId(10)),
            meta: c1,
            agent: agent("a"),
            won: false,
            holder: Some(agent("z")),
            then: then.clone(),
        });
        assert!(appends(&e).is_empty());
        assert!(matches!(
            &sent(&e)[0].1,
            ServerMsg::Error { code: ErrorCode::AlreadyTaken, client_id: Some(c), .. } if c.0 == "r1"
        ));
    }

    /// c1 assigned to agent a (peer 10); visitor 1 and the visitor's second tab 3; all joined.
    fn call_world() -> (World, ConversationMeta) {
        let mut w = World::new();
        let c1 = meta("c1", "s1", Some("a"));
        w.visitor(1, &c1);
        w.visitor(3, &c1);
        w.agent(10, "a", Scope::All);
        for p in [1, 3, 10] {
            w.join(p, &c1);
        }
        (w, c1)
    }

    /// What each member is told about the call after `effects`.
    fn call_views(w: &mut World, effects: &[Effect]) -> Vec<(u64, Option<CallInfo>)> {
        let mut views = Vec::new();
        for e in effects {
            if let Effect::Publish(ev @ BusEvent::Call { .. }) = e {
                for (p, m) in sent(&w.ev(Event::Delivered(ev.clone()))) {
                    if let ServerMsg::Call { call, .. } = m {
                        views.push((p, call));
                    }
                }
            }
        }
        views
    }

    fn signal(conv: &str) -> ClientMsg {
        ClientMsg::Signal {
            conversation: conv.into(),
            payload: "sdp".into(),
        }
    }

    #[test]
    fn a_call_rings_is_accepted_routes_signals_and_ends_with_its_duration() {
        let (mut w, c1) = call_world();
        let e = w.act(10, call("c1", VOICE), &c1);
        assert!(appends(&e).is_empty());
        let views = call_views(&mut w, &e);
        assert_eq!(views.len(), 3);
        for (p, view) in views {
            let v = view.unwrap();
            assert_eq!((v.phase, v.caller), (CallPhase::Ringing, Author::Agent));
            assert_eq!(v.party, p == 10, "peer {p}");
        }
        // No signaling before the answer; the caller cannot answer its own call.
        assert_eq!(
            error_code(&w.text(10, &signal("c1"))),
            Some(ErrorCode::Forbidden)
        );
        let e = w.act(10, call("c1", CallAction::Accept), &c1);
        assert_eq!(error_code(&e), Some(ErrorCode::Forbidden));

        w.now = 2_000;
        let e = w.act(1, call("c1", CallAction::Accept), &c1);
        assert_eq!(appends(&e), vec!["Voice call started"]);
        assert_eq!(
            sent(&w.text(10, &signal("c1"))),
            vec![(
                1,
                ServerMsg::Signal {
                    conversation: "c1".into(),
                    payload: "sdp".into()
                }
            )]
        );
        assert_eq!(sent(&w.text(1, &signal("c1")))[0].0, 10);
        // The visitor's other tab sees the call but is not in it.
        assert_eq!(
            error_code(&w.text(3, &signal("c1"))),
            Some(ErrorCode::Forbidden)
        );
        let e = w.act(3, call("c1", CallAction::HangUp), &c1);
        assert_eq!(error_code(&e), Some(ErrorCode::Forbidden));

        let camera = CallAction::Media {
            media: MediaKind::Camera,
            on: true,
        };
        // The record says so once the camera has stayed on a moment.
        assert!(appends(&w.act(1, call("c1", camera), &c1)).is_empty());
        w.now += TOGGLE_SETTLE_MS;
        assert_eq!(appends(&w.tick()), vec!["Visitor turned video on"]);
        w.now = 194_000;
        let e = w.act(1, call("c1", CallAction::HangUp), &c1);
        assert_eq!(appends(&e), vec!["Call ended, 3:12"]);
        assert!(call_views(&mut w, &e).iter().all(|(_, v)| v.is_none()));
    }

    #[test]
    fn device_toggles_leave_one_line_once_settled_and_are_limited_per_minute() {
        let (mut w, c1) = call_world();
        w.act(
            1,
            call(
                "c1",
                CallAction::Start {
                    kind: CallKind::Video,
                },
            ),
            &c1,
        );
        w.act(10, call("c1", CallAction::Accept), &c1);
        let camera = |on| CallAction::Media {
            media: MediaKind::Camera,
            on,
        };
        // Off and on again within the moment: nothing to record.
        w.act(1, call("c1", camera(false)), &c1);
        w.now += 500;
        w.act(1, call("c1", camera(true)), &c1);
        w.now += TOGGLE_SETTLE_MS;
        assert!(appends(&w.tick()).is_empty());
        // Flipped 30 times in a row: past 20 actions a minute (the start and the first two
        // counted) they are refused, and the record gets at most one line.
        let mut refused = 0;
        for i in 0..30 {
            w.now += 10;
            let e = w.act(1, call("c1", camera(i % 2 == 1)), &c1);
            assert!(appends(&e).is_empty());
            refused += usize::from(error_code(&e) == Some(ErrorCode::RateLimited));
        }
        assert!((11..=12).contains(&refused), "{refused} refused");
        w.now += TOGGLE_SETTLE_MS;
        assert!(appends(&w.tick()).len() <= 1);
        // Ending and answering are never limited; a toggle still settling is recorded
        // before the end.
        let shared = CallAction::Media {
            media: MediaKind::Screen,
            on: true,
        };
        w.now += 60_000;
        w.act(10, call("c1", shared), &c1);
        w.now += 100;
        let e = w.act(10, call("c1", CallAction::HangUp), &c1);
        let notes = appends(&e);
        assert_eq!(notes.len(), 2);
        assert_eq!(notes[0], "Agent a shared their screen");
        assert!(notes[1].starts_with("Call ended"));
    }

    #[test]
    fn unanswered_declined_and_abandoned_calls() {
        let (mut w, c1) = call_world();
        let video = CallAction::Start {
            kind: CallKind::Video,
        };
        w.now = 0;
        w.act(1, call("c1", video), &c1);
        let again = w.act(10, call("c1", video), &c1);
        assert_eq!(
            error_code(&again),
            Some(ErrorCode::Forbidden),
            "one call at a time"
        );
        // 30 s of ringing, as clock ticks: no waiting.
        w.now = 29_999;
        assert!(w.tick().is_empty());
        w.now = 30_000;
        assert_eq!(appends(&w.tick()), vec!["Missed call"]);

        w.now = 40_000;
        w.act(1, call("c1", video), &c1);
        let e = w.act(10, call("c1", CallAction::Decline), &c1);
        assert_eq!(appends(&e), vec!["Call declined"]);

        w.now = 50_000;
        w.act(10, call("c1", video), &c1);
        w.now = 51_000;
        w.act(3, call("c1", CallAction::Accept), &c1);
        // The tab that answered goes away for good: the call waits the grace period, then
        // ends with the time it really lasted.
        w.now = 116_000;
        let e = w.ev(Event::Closed { peer: PeerId(3) });
        assert!(appends(&e).is_empty());
        w.now = 116_000 + CALL_GRACE_MS - 1;
        assert!(appends(&w.tick()).is_empty());
        w.now = 116_000 + CALL_GRACE_MS;
        let e = w.tick();
        assert_eq!(appends(&e), vec!["Call ended, 1:05"]);
        assert!(e.contains(&Effect::SaveCall {
            conversation: "c1".into(),
            call: None
        }));
        // A ringing call whose caller leaves is cancelled at once.
        w.act(10, call("c1", VOICE), &c1);
        let e = w.ev(Event::Closed { peer: PeerId(10) });
        assert_eq!(appends(&e), vec!["Call cancelled"]);
    }

    #[test]
    fn a_call_outlives_a_dropped_connection_and_resumes_on_the_next() {
        let (mut w, c1) = call_world();
        w.act(10, call("c1", VOICE), &c1);
        let e = w.act(1, call("c1", CallAction::Accept), &c1);
        let saved = Effect::SaveCall {
            conversation: "c1".into(),
            call: Some(CallRecord {
                site: site("s1"),
                kind: CallKind::Voice,
                caller: Author::Agent,
                caller_name: "Agent a".into(),
                since: 1_000,
            }),
        };
        assert!(e.contains(&saved), "stored when answered");
        // The visitor's socket drops: nobody hangs up, the agent sees it reconnecting.
        w.now = 5_000;
        let e = w.ev(Event::Closed { peer: PeerId(1) });
        assert!(appends(&e).is_empty());
        let views = call_views(&mut w, &e);
        let agent_view = views
            .iter()
            .find(|(p, _)| *p == 10)
            .unwrap()
            .1
            .clone()
            .unwrap();
        assert!(agent_view.party && agent_view.away);
        // What the agent signals meanwhile is kept for the visitor.
        assert!(sent(&w.text(10, &signal("c1"))).is_empty());
        // Another tab of the visitor cannot pose as the end that left... unless it resumes.
        assert_eq!(
            error_code(&w.text(3, &signal("c1"))),
            Some(ErrorCode::Forbidden)
        );
        // The visitor comes back on a new socket and resumes before joining.
        w.visitor(4, &c1);
        let e = w.act(4, call("c1", CallAction::Resume), &c1);
        assert_eq!(
            sent(&e),
            vec![(
                4,
                ServerMsg::Signal {
                    conversation: "c1".into(),
                    payload: "sdp".into()
                }
            )]
        );
        let views = call_views(&mut w, &e);
        assert!(views.iter().all(|(_, v)| !v.as_ref().unwrap().away));
        assert!(views
            .iter()
            .any(|(p, v)| *p == 10 && v.as_ref().unwrap().party));
        assert_eq!(sent(&w.text(10, &signal("c1")))[0].0, 4);
        // Resuming takes the end over (the relay may still think a dead socket is open):
        // the former end is no longer in the call.
        w.act(3, call("c1", CallAction::Resume), &c1);
        assert_eq!(
            error_code(&w.text(4, &signal("c1"))),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(sent(&w.text(10, &signal("c1")))[0].0, 3);
        w.act(4, call("c1", CallAction::Resume), &c1);
        // Long after the grace period, nothing ends it: both ends are there.
        w.now = 5_000 + 10 * CALL_GRACE_MS;
        assert!(w.tick().is_empty());
        let e = w.act(4, call("c1", CallAction::HangUp), &c1);
        assert_eq!(appends(&e), vec!["Call ended, 5:04"]);
    }

    #[test]
    fn calls_under_way_survive_a_restart_of_the_relay() {
        let mut w = World::new();
        let c1 = meta("c1", "s1", Some("a"));
        let record = CallRecord {
            site: site("s1"),
            kind: CallKind::Video,
            caller: Author::Visitor,
            caller_name: "Visitor".into(),
            since: 0,
        };
        w.now = 60_000;
        w.ev(Event::Restored {
            open: Vec::new(),
            calls: vec![("c1".into(), record.clone()), ("c2".into(), record)],
        });
        w.visitor(1, &c1);
        w.agent(10, "a", Scope::All);
        for p in [1, 10] {
            let e = w.act(p, call("c1", CallAction::Resume), &c1);
            assert_eq!(error_code(&e), None);
        }
        w.join(1, &c1);
        let ServerMsg::Call {
            call: Some(info), ..
        } = w.core.call_msg(&"c1".into(), PeerId(1))
        else {
            panic!()
        };
        assert!(info.party && !info.away && info.phase == CallPhase::Active);
        // c2's parties never came back: it ends after the grace period, as long as it lasted.
        w.now = 60_000 + CALL_GRACE_MS;
        let e = w.tick();
        assert_eq!(appends(&e), vec!["Call ended, 1:00"]);
        assert!(w.core.calls.contains_key(&ConversationId::from("c1")));
    }

    /// Two nodes' cores and the bus between them: what either publishes reaches both, the
    /// publisher first (as the NATS bus hands its own events over at once).
    struct Pair {
        a: World,
        b: World,
    }

    impl Pair {
        fn new() -> Self {
            let node = |n| {
                let mut w = World::new();
                w.core.limits.node = n;
                w
            };
            Self {
                a: node(1),
                b: node(2),
            }
        }

        /// The visitor of c1 (connection 1) on node a and its agent's console (10) on b,
        /// both joined.
        fn split() -> (Self, ConversationMeta) {
            let mut n = Self::new();
            let c1 = meta("c1", "s1", Some("a"));
            n.a.visitor(1, &c1);
            n.a.join(1, &c1);
            n.b.agent(10, "a", Scope::All);
            n.b.join(10, &c1);
            (n, c1)
        }

        /// Both of c1's ends on node a (visitor 1, agent 10), in a voice call b has heard of.
        fn answered_on_a() -> (Self, ConversationMeta) {
            let mut n = Self::new();
            let c1 = meta("c1", "s1", Some("a"));
            n.a.visitor(1, &c1);
            n.a.agent(10, "a", Scope::All);
            for p in [1, 10] {
                n.a.join(p, &c1);
            }
            let e = n.a.act(1, call("c1", VOICE), &c1);
            n.bus(true, e);
            let e = n.a.act(10, call("c1", CallAction::Accept), &c1);
            n.bus(true, e);
            (n, c1)
        }

        fn at(&mut self, now: i64) {
            self.a.now = now;
            self.b.now = now;
        }

        /// Carries what `effects`, made on node a when `on_a`, publish (and what that
        /// publishes) to both nodes until the bus is quiet; the other effects, by node.
        fn bus(&mut self, on_a: bool, effects: Vec<Effect>) -> Vec<(bool, Effect)> {
            let mut queue: std::collections::VecDeque<_> =
                effects.into_iter().map(|e| (on_a, e)).collect();
            let mut rest = Vec::new();
            while let Some((from_a, e)) = queue.pop_front() {
                let Effect::Publish(event) = e else {
                    rest.push((from_a, e));
                    continue;
                };
                for to_a in [from_a, !from_a] {
                    let w = if to_a { &mut self.a } else { &mut self.b };
                    let effects = w.ev(Event::Delivered(event.clone()));
                    queue.extend(effects.into_iter().map(|e| (to_a, e)));
                }
            }
            rest
        }
    }

    /// The ids the notes in `effects` are stored under.
    fn note_ids(effects: &[Effect]) -> Vec<Option<ClientMsgId>> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Append { message, .. } => Some(message.client_id.clone()),
                _ => None,
            })
            .collect()
    }

    /// What `out` sends on node a (`on_a`) or b.
    fn sent_on(out: &[(bool, Effect)], on_a: bool) -> Vec<(u64, ServerMsg)> {
        let effects: Vec<Effect> = out
            .iter()
            .filter(|(a, _)| *a == on_a)
            .map(|(_, e)| e.clone())
            .collect();
        sent(&effects)
    }

    /// The calls `peer` is told of in `sent`.
    fn told(sent: &[(u64, ServerMsg)], peer: u64) -> Vec<Option<CallInfo>> {
        sent.iter()
            .filter_map(|(p, m)| match m {
                ServerMsg::Call { call, .. } if *p == peer => Some(call.clone()),
                _ => None,
            })
            .collect()
    }

    fn sdp(conv: &str) -> ServerMsg {
        ServerMsg::Signal {
            conversation: conv.into(),
            payload: "sdp".into(),
        }
    }

    #[test]
    fn a_call_between_two_nodes_signals_across_and_outlives_the_node_of_one_end() {
        let (mut n, c1) = Pair::split();
        let video = CallAction::Start {
            kind: CallKind::Video,
        };
        let e = n.a.act(1, call("c1", video), &c1);
        let out = n.bus(true, e);
        let rung = told(&sent_on(&out, false), 10);
        assert_eq!(rung.len(), 1, "{out:?}");
        let rung = rung[0].clone().unwrap();
        assert_eq!((rung.phase, rung.party), (CallPhase::Ringing, false));

        n.at(2_000);
        let e = n.b.act(10, call("c1", CallAction::Accept), &c1);
        let out = n.bus(false, e);
        let notes: Vec<Effect> = out.iter().map(|(_, e)| e.clone()).collect();
        assert_eq!(appends(&notes), vec!["Video call started"]);
        let visitor = told(&sent_on(&out, true), 1);
        assert!(visitor.iter().all(|c| c.as_ref().unwrap().party));
        assert_eq!(
            visitor.last().unwrap().as_ref().unwrap().phase,
            CallPhase::Active
        );

        // Signals cross the bus, each to the other end only.
        let e = n.a.text(1, &signal("c1"));
        let out = n.bus(true, e);
        assert_eq!(sent_on(&out, false), vec![(10, sdp("c1"))]);
        assert!(sent_on(&out, true).is_empty());
        let e = n.b.text(10, &signal("c1"));
        let out = n.bus(false, e);
        assert_eq!(sent_on(&out, true), vec![(1, sdp("c1"))]);

        // Node a dies: b stops hearing it, and the visitor's end is away.
        n.at(5_000);
        let e = n.b.ev(Event::Delivered(BusEvent::NodeGone { node: 1 }));
        let away = told(&sent(&e), 10);
        assert!(away[0].as_ref().unwrap().away);
        // What the agent says meanwhile waits on b for the visitor's next connection.
        assert!(sent(&n.b.text(10, &signal("c1"))).is_empty());
        n.b.visitor(2, &c1);
        n.b.join(2, &c1);
        let e = n.b.act(2, call("c1", CallAction::Resume), &c1);
        let e = n.b.through_bus(e);
        let to_visitor: Vec<ServerMsg> = sent(&e)
            .into_iter()
            .filter(|(p, _)| *p == 2)
            .map(|(_, m)| m)
            .collect();
        assert!(to_visitor.contains(&sdp("c1")), "{to_visitor:?}");
        assert!(!told(&sent(&e), 10).last().unwrap().as_ref().unwrap().away);
        // Back in full: the grace period does not end it.
        n.b.now += CALL_GRACE_MS * 2;
        assert!(appends(&n.b.tick()).is_empty());
        let e = n.b.act(2, call("c1", CallAction::HangUp), &c1);
        assert!(appends(&e)[0].starts_with("Call ended"));
    }

    #[test]
    fn a_node_taken_for_gone_and_heard_again_has_its_call_ends_back() {
        let (mut n, c1) = Pair::split();
        let e = n.a.act(1, call("c1", VOICE), &c1);
        n.bus(true, e);
        let e = n.b.act(10, call("c1", CallAction::Accept), &c1);
        n.bus(false, e);
        // a is cut off from the bus a while: b takes it for gone, and the visitor for away.
        let e = n.b.ev(Event::Delivered(BusEvent::NodeGone { node: 1 }));
        assert!(told(&sent(&e), 10)[0].as_ref().unwrap().away);
        // a is heard again, saying where its end is: back, and the agent is told.
        n.at(1_000 + CALL_RENEW_MS);
        let e = n.a.tick();
        let out = n.bus(true, e);
        let agent = told(&sent_on(&out, false), 10);
        assert!(!agent.last().unwrap().as_ref().unwrap().away, "{out:?}");
        // The grace period ends nothing, and signals reach the visitor again.
        n.b.now += CALL_GRACE_MS * 2;
        assert!(appends(&n.b.tick()).is_empty());
        let e = n.b.text(10, &signal("c1"));
        assert_eq!(sent_on(&n.bus(false, e), true), vec![(1, sdp("c1"))]);
    }

    #[test]
    fn calls_rung_and_cancelled_within_one_millisecond_are_each_recorded() {
        let (mut w, c1) = call_world();
        let mut ids = HashSet::new();
        for _ in 0..3 {
            w.act(10, call("c1", VOICE), &c1);
            let e = w.act(10, call("c1", CallAction::HangUp), &c1);
            for e in e {
                if let Effect::Append { message, .. } = e {
                    assert_eq!(message.text, "Call cancelled");
                    ids.insert(message.client_id);
                }
            }
        }
        assert_eq!(ids.len(), 3, "three notes, under three ids: {ids:?}");
    }

    #[test]
    fn what_two_nodes_both_decide_about_a_call_is_recorded_once() {
        let (mut n, c1) = Pair::split();
        let e = n.a.act(1, call("c1", VOICE), &c1);
        n.bus(true, e);
        // Each node sees it ring out, and writes the note under the call's one id.
        n.at(1_000 + RING_TIMEOUT_MS);
        let ids = note_ids(&[n.a.tick(), n.b.tick()].concat());
        assert_eq!(ids.len(), 2);
        assert!(ids[0].is_some());
        assert_eq!(ids[0], ids[1]);
    }

    #[test]
    fn a_call_that_outlives_its_ends_is_ended_once_by_its_node_and_one_that_read_it() {
        let (mut n, _) = Pair::answered_on_a();
        // Both ends gone; b starts meanwhile and reads the call from the store.
        for p in [1, 10] {
            let e = n.a.ev(Event::Closed { peer: PeerId(p) });
            n.bus(true, e);
        }
        let record = n.a.core.calls[&ConversationId::from("c1")].record();
        n.b.ev(Event::Restored {
            open: Vec::new(),
            calls: vec![("c1".into(), record)],
        });
        // Each ends it after the grace period, under one id: the record keeps one end.
        n.at(1_000 + CALL_GRACE_MS + 1_000);
        let ids = note_ids(&[n.a.tick(), n.b.tick()].concat());
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(ids[0].is_some());
        assert_eq!(ids[0], ids[1]);
    }

    #[test]
    fn a_node_that_starts_learns_where_a_restored_calls_ends_are() {
        let (mut n, _) = Pair::answered_on_a();
        // b starts with the call from the store, its ends unknown.
        let record = n.a.core.calls[&ConversationId::from("c1")].record();
        let e = n.b.ev(Event::Restored {
            open: Vec::new(),
            calls: vec![("c1".into(), record)],
        });
        assert!(e.contains(&Effect::Subscribe(Topic::Conversation("c1".into()))));
        // a says again where they are; b takes it, and never ends the call.
        n.at(1_000 + CALL_RENEW_MS);
        let e = n.a.tick();
        n.bus(true, e);
        let copy = &n.b.core.calls[&ConversationId::from("c1")];
        assert!(copy.caller_end.is_some() && copy.callee_end.is_some());
        n.b.now += CALL_GRACE_MS * 2;
        let e = n.b.tick();
        assert!(appends(&e).is_empty());
        // b follows nobody there: the copy goes, and so does its subscription.
        assert!(!n.b.core.calls.contains_key(&ConversationId::from("c1")));
        assert!(e.contains(&Effect::Unsubscribe(Topic::Conversation("c1".into()))));
    }

    #[test]
    fn a_restored_call_ended_elsewhere_before_any_renewal_is_over_here_too() {
        let (mut n, c1) = Pair::answered_on_a();
        let record = n.a.core.calls[&ConversationId::from("c1")].record();
        n.b.ev(Event::Restored {
            open: Vec::new(),
            calls: vec![("c1".into(), record)],
        });
        // Hung up on a before a said where its ends are: b's copy from the store goes too,
        // and b never writes an end of its own.
        let e = n.a.act(1, call("c1", CallAction::HangUp), &c1);
        n.bus(true, e);
        assert!(!n.b.core.calls.contains_key(&ConversationId::from("c1")));
        n.b.now += CALL_GRACE_MS * 2;
        assert!(appends(&n.b.tick()).is_empty());
    }

    #[test]
    fn two_nodes_resuming_their_ends_at_once_keep_both() {
        let mut n = Pair::new();
        let c1 = meta("c1", "s1", Some("a"));
        let record = CallRecord {
            site: site("s1"),
            kind: CallKind::Video,
            caller: Author::Visitor,
            caller_name: "Visitor".into(),
            since: 0,
        };
        // A whole-cluster restart: both nodes restore the call, the visitor comes back on
        // a and the agent on b, and both resume before either hears the other.
        for w in [&mut n.a, &mut n.b] {
            w.ev(Event::Restored {
                open: Vec::new(),
                calls: vec![("c1".into(), record.clone())],
            });
        }
        n.a.visitor(1, &c1);
        n.a.join(1, &c1);
        n.b.agent(10, "a", Scope::All);
        n.b.join(10, &c1);
        let from_a = n.a.act(1, call("c1", CallAction::Resume), &c1);
        let from_b = n.b.act(10, call("c1", CallAction::Resume), &c1);
        n.bus(true, from_a);
        n.bus(false, from_b);
        for w in [&n.a, &n.b] {
            let c = &w.core.calls[&ConversationId::from("c1")];
            assert_eq!(
                c.caller_end,
                Some(End {
                    node: 1,
                    peer: PeerId(1)
                })
            );
            assert_eq!(
                c.callee_end,
                Some(End {
                    node: 2,
                    peer: PeerId(10)
                })
            );
            assert_eq!(c.away_since, None);
        }
    }

    #[test]
    fn an_agent_on_one_node_is_available_to_the_visitors_and_routing_of_another() {
        let mut n = Pair::new();
        // A conversation waits on both nodes (both read it from the store as they started).
        let waiting = crate::store::OpenConversation {
            id: "c1".into(),
            site: site("s1"),
            agent: None,
            since: 500,
        };
        for w in [&mut n.a, &mut n.b] {
            w.ev(Event::Restored {
                calls: Vec::new(),
                open: vec![waiting.clone()],
            });
        }
        assert!(!n.a.core.team.any_available(&site("s1")));
        // The agent's console is on b: a hears of them, online, within a renewal.
        n.b.agent(10, "a", Scope::All);
        n.at(1_000 + CALL_RENEW_MS);
        let e = n.b.tick();
        let out = n.bus(false, e);
        assert!(n.a.core.team.any_available(&site("s1")));
        assert_eq!(
            n.a.core.team.presence(&AgentId::from("a")),
            Presence::Available
        );
        // a routes the waiting conversation to them (b did as their console opened; the
        // store lets one win).
        let assigns = out
            .iter()
            .filter(|(on_a, e)| *on_a && matches!(e, Effect::Assign { .. }))
            .count();
        assert_eq!(assigns, 1, "{out:?}");
        // a wins: b's routing knows it is theirs now, and offers it to nobody.
        let e = n.a.ev(Event::Assigned {
            peer: None,
            meta: meta("c1", "s1", None),
            agent: agent("a"),
            won: true,
            holder: None,
            then: AfterTake::Nothing,
        });
        n.bus(true, e);
        let c1 = ConversationId::from("c1");
        assert_eq!(n.b.core.desk.agent_of(&c1), Some(Some(&AgentId::from("a"))));
        // The console on b closes for good: a shows them offline.
        n.b.ev(Event::Closed { peer: PeerId(10) });
        n.at(1_000 + CALL_RENEW_MS + Limits::default().presence_grace_ms + 1_000);
        let e = n.b.tick();
        n.bus(false, e);
        assert_eq!(
            n.a.core.team.presence(&AgentId::from("a")),
            Presence::Offline
        );
    }

    #[test]
    fn only_the_conversations_two_sides_can_call() {
        let mut w = World::new();
        let waiting = meta("c1", "s1", None);
        w.visitor(1, &waiting);
        w.visitor(2, &meta("c2", "s1", None));
        w.agent(10, "a", Scope::All);
        w.agent(11, "b", Scope::Sites([site("s2")].into()));
        // A visitor cannot call before an agent joined.
        let e = w.act(1, call("c1", VOICE), &waiting);
        assert_eq!(error_code(&e), Some(ErrorCode::Forbidden));
        // An agent calling into a waiting conversation takes it first.
        assert!(matches!(
            w.act(10, call("c1", VOICE), &waiting)[..],
            [Effect::Assign {
                then: AfterTake::Call(_),
                ..
            }]
        ));
        let theirs = meta("c1", "s1", Some("z"));
        assert_eq!(
            error_code(&w.act(10, call("c1", VOICE), &theirs)),
            Some(ErrorCode::AlreadyTaken)
        );
        let assigned = meta("c1", "s1", Some("a"));
        assert_eq!(
            error_code(&w.act(2, call("c1", VOICE), &assigned)),
            Some(ErrorCode::NotFound)
        );
        assert_eq!(
            error_code(&w.act(11, call("c1", VOICE), &assigned)),
            Some(ErrorCode::NotFound)
        );
        assert_eq!(
            error_code(&w.act(1, call("c1", CallAction::HangUp), &assigned)),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(escalera_protocol::duration(3_725), "1:02:05");
    }

    #[test]
    fn an_upload_posts_as_its_uploader_and_answers_the_request() {
        let mut w = World::new();
        let c1 = meta("c1", "s1", None);
        let file = Attachment {
            id: "f".into(),
            name: "a.png".into(),
            size: 1,
            mime: "image/png".into(),
            sha256: "x".into(),
        };
        w.ev(Event::Opened {
            peer: PeerId(50),
            caller: Caller::Http(Role::Visitor {
                site: site("s1"),
                conversation: "c1".into(),
            }),
        });
        let e = w.ev(Event::Upload {
            peer: PeerId(50),
            conversation: "c1".into(),
            attachment: file.clone(),
            client_id: Some("u1".into()),
        });
        let [Effect::Load { request, .. }] = &e[..] else {
            panic!("{e:?}")
        };
        let e = w.ev(Event::Loaded {
            peer: PeerId(50),
            request: request.clone(),
            meta: Some(c1),
        });
        let [Effect::Append { message, reply, .. }] = &e[..] else {
            panic!("{e:?}")
        };
        assert_eq!(*reply, Reply::Http(PeerId(50)));
        assert_eq!(message.attachment.as_ref(), Some(&file));
        assert_eq!(message.text, "a.png");
    }

    #[test]
    fn permissions_are_written_once_on_the_role() {
        let visitor = Role::Visitor {
            site: site("s1"),
            conversation: "c1".into(),
        };
        let a = Role::Agent {
            agent: agent("a"),
            scope: Scope::All,
        };
        let waiting = meta("c1", "s1", None);
        assert_eq!(visitor.may_post(&waiting), Ok(()));
        assert_eq!(a.agent_post(&waiting), Ok(AgentPost::TakesIt));
        assert_eq!(
            a.agent_post(&meta("c1", "s1", Some("a"))),
            Ok(AgentPost::Assigned)
        );
        assert_eq!(
            a.may_post(&meta("c1", "s1", Some("z"))),
            Err(RelayError::AlreadyTaken("Agent z".into()))
        );
        assert_eq!(
            visitor.may_read(&meta("c2", "s1", None)),
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

    #[test]
    fn an_ended_session_closes_its_sockets_and_only_those() {
        let mut w = World::new();
        w.agent(10, "a", Scope::All);
        w.agent(11, "a", Scope::All);
        w.agent(12, "b", Scope::All);
        let closed = |e: &[Effect]| {
            let mut peers: Vec<u64> = e
                .iter()
                .filter_map(|e| match e {
                    Effect::Close(p) => Some(p.0),
                    _ => None,
                })
                .collect();
            peers.sort();
            peers
        };
        // Logout of one browser: that socket is told and closed, the agent's other stays.
        let e = w.ev(Event::Revoked {
            session: "session-10".into(),
        });
        assert_eq!(error_code(&e), Some(ErrorCode::SessionEnded));
        assert_eq!(closed(&e), [10]);
        w.ev(Event::Closed { peer: PeerId(10) });
        // Every 2 s the sessions still open are checked; those gone (expired, the agent
        // disabled from the command line) close.
        w.now += SESSION_CHECK_MS;
        let asked = match &w.ev(Event::Tick)[..] {
            [Effect::CheckSessions(asked)] => asked.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(asked, ["session-11", "session-12"]);
        assert!(w.ev(Event::Tick).is_empty(), "not again before 2 s");
        let e = w.ev(Event::SessionsLive {
            asked,
            live: vec!["session-12".into()],
        });
        assert_eq!(closed(&e), [11]);
    }

    #[test]
    fn a_socket_that_never_says_hello_is_closed_at_the_deadline() {
        let mut w = World::new();
        w.ev(Event::Opened {
            peer: PeerId(1),
            caller: Caller::Visitor {
                site: site("s1"),
                site_name: "S".into(),
                features: SiteFeatures::default(),
                look: SiteLook::default(),
                identity: IdentityRule::default(),
                address: home(),
            },
        });
        w.now += HELLO_DEADLINE_MS - 1;
        assert!(w.tick().is_empty());
        w.now += 1;
        let e = w.tick();
        assert_eq!(error_code(&e), Some(ErrorCode::BadHello));
        assert!(e.contains(&Effect::Close(PeerId(1))));
    }

    /// A new visitor (no token, or one nobody stored) at `address`: welcomed into `conv`,
    /// which is not stored.
    fn newcomer(w: &mut World, peer: u64, conv: &str, token: &str, address: IpAddr) -> Vec<Effect> {
        w.ev(Event::Opened {
            peer: PeerId(peer),
            caller: Caller::Visitor {
                site: site("s1"),
                site_name: "Shop".into(),
                features: SiteFeatures::default(),
                look: SiteLook::default(),
                identity: IdentityRule::default(),
                address,
            },
        });
        w.text(peer, &hello());
        w.ev(Event::VisitorReady {
            peer: PeerId(peer),
            token: VisitorToken::from(token),
            conversation: meta(conv, "s1", None),
            saved: false,
            media: media(),
        })
    }

    fn creates(effects: &[Effect]) -> Vec<ConversationId> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Create { conversation, .. } => Some(conversation.id.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_new_visitors_conversation_is_stored_with_their_first_message_only() {
        let mut w = World::new();
        newcomer(&mut w, 1, "c1", "t1", home());
        // Joining asks nothing of the store about the conversation: it is empty.
        let join = ClientMsg::Join {
            conversation: "c1".into(),
            after_seq: 0,
        };
        let e = w.text(1, &join);
        assert!(!e
            .iter()
            .any(|e| matches!(e, Effect::Load { .. } | Effect::Create { .. })));
        w.ev(page_of(PeerId(1), "c1".into(), Vec::new(), None));
        // A second tab with the same token gets the same conversation, still unstored.
        w.ev(Event::Opened {
            peer: PeerId(2),
            caller: Caller::Visitor {
                site: site("s1"),
                site_name: "Shop".into(),
                features: SiteFeatures::default(),
                look: SiteLook::default(),
                identity: IdentityRule::default(),
                address: home(),
            },
        });
        let again = ClientMsg::Hello {
            protocol: PROTOCOL_VERSION,
            token: Some("t1".into()),
            identity: None,
            resume: None,
        };
        assert!(matches!(
            &w.text(2, &again)[..],
            [Effect::ResolveVisitor { unsaved: Some(c), .. }] if *c == ConversationId::from("c1")
        ));
        assert_eq!(
            w.core.unsaved_visitor("t1"),
            Some(Role::Visitor {
                site: site("s1"),
                conversation: "c1".into()
            })
        );
        // The first message stores it; one from the other tab meanwhile waits for that.
        let e = w.text(1, &chat("c1", "m1"));
        assert_eq!(creates(&e), vec![ConversationId::from("c1")]);
        w.ev(Event::VisitorReady {
            peer: PeerId(2),
            token: "t1".into(),
            conversation: meta("c1", "s1", None),
            saved: false,
            media: media(),
        });
        assert!(w.text(2, &chat("c1", "m2")).is_empty());
        let e = w.ev(Event::Created {
            conversation: meta("c1", "s1", None),
            error: None,
        });
        let stored: Vec<_> = e
            .iter()
            .filter_map(|e| match e {
                Effect::Append { message, .. } => message.client_id.clone(),
                _ => None,
            })
            .collect();
        assert_eq!(
            stored,
            vec![ClientMsgId::from("m1"), ClientMsgId::from("m2")]
        );
        assert_eq!(w.core.unsaved_visitor("t1"), None);
        // Stored now: the next message asks the store as usual.
        assert!(matches!(
            &w.text(1, &chat("c1", "m3"))[..],
            [Effect::Load { .. }]
        ));
    }

    #[test]
    fn a_visitor_who_never_said_anything_is_forgotten_when_they_leave() {
        let mut w = World::new();
        newcomer(&mut w, 1, "c1", "t1", home());
        assert!(w.core.unsaved_meta(&"c1".into()).is_some());
        w.ev(Event::Closed { peer: PeerId(1) });
        assert!(w.core.unsaved_meta(&"c1".into()).is_none());
        assert_eq!(w.core.unsaved_visitor("t1"), None);
    }

    #[test]
    fn new_conversations_per_address_are_limited_per_hour() {
        let mut w = World::new();
        let limit = Limits::default().conversations_per_address;
        let other = IpAddr::from([198, 51, 100, 7]);
        let mut refused = Vec::new();
        for i in 0..limit + 5 {
            let (peer, conv) = (u64::from(i) + 1, format!("c{i}"));
            newcomer(&mut w, peer, &conv, &format!("t{i}"), home());
            let e = w.text(peer, &chat(&conv, "m1"));
            if creates(&e).is_empty() {
                refused.push(error_code(&e));
            } else {
                w.ev(Event::Created {
                    conversation: meta(&conv, "s1", None),
                    error: None,
                });
            }
        }
        assert_eq!(refused, vec![Some(ErrorCode::LimitReached); 5]);
        // Another address is not affected...
        newcomer(&mut w, 1000, "elsewhere", "te", other);
        assert_eq!(creates(&w.text(1000, &chat("elsewhere", "m1"))).len(), 1);
        // ...and this one gets another after a minute (60 an hour).
        w.now += 60_000;
        newcomer(&mut w, 1001, "later", "tl", home());
        assert_eq!(creates(&w.text(1001, &chat("later", "m1"))).len(), 1);
    }

    #[test]
    fn one_visitor_has_a_bounded_number_of_sockets() {
        let mut w = World::new();
        let c1 = meta("c1", "s1", None);
        let limit = Limits::default().sockets_per_visitor as u64;
        for peer in 1..=limit {
            w.visitor(peer, &c1);
        }
        let extra = limit + 1;
        w.ev(Event::Opened {
            peer: PeerId(extra),
            caller: Caller::Visitor {
                site: site("s1"),
                site_name: "Shop".into(),
                features: SiteFeatures::default(),
                look: SiteLook::default(),
                identity: IdentityRule::default(),
                address: home(),
            },
        });
        w.text(extra, &hello());
        let e = w.ev(Event::VisitorReady {
            peer: PeerId(extra),
            token: "t".into(),
            conversation: c1.clone(),
            saved: true,
            media: media(),
        });
        assert_eq!(error_code(&e), Some(ErrorCode::LimitReached));
        assert!(e.contains(&Effect::Close(PeerId(extra))));
        // One closes: there is room again.
        w.ev(Event::Closed { peer: PeerId(1) });
        w.visitor(extra + 1, &c1);
        assert!(w.core.visitors[&c1.id].contains(&PeerId(extra + 1)));
    }

    #[test]
    fn a_visitors_chat_rate_counts_all_their_sockets_and_their_address() {
        let mut w = World::new();
        let limits = Limits::default();
        let c1 = meta("c1", "s1", None);
        // Two tabs of one visitor share one budget.
        w.visitor(1, &c1);
        w.visitor(2, &c1);
        let mut loads = 0;
        for i in 0..limits.visitor_chat_burst + 10 {
            let peer = 1 + u64::from(i % 2);
            let e = w.text(peer, &chat("c1", &format!("m{i}")));
            loads += e
                .iter()
                .filter(|e| matches!(e, Effect::Load { .. }))
                .count() as u32;
        }
        assert_eq!(loads, limits.visitor_chat_burst);
        // Many visitors of one address share a larger one.
        let mut loads = 0;
        let visitors = limits.address_chat_burst / limits.visitor_chat_burst + 2;
        for v in 0..u64::from(visitors) {
            let conv = meta(&format!("v{v}"), "s1", None);
            w.visitor(100 + v, &conv);
            for i in 0..limits.visitor_chat_burst {
                let e = w.text(100 + v, &chat(&conv.id.0, &format!("m{i}")));
                loads += e
                    .iter()
                    .filter(|e| matches!(e, Effect::Load { .. }))
                    .count() as u32;
            }
        }
        // The first visitor's 30 already counted against the address.
        assert_eq!(loads, limits.address_chat_burst - limits.visitor_chat_burst);
    }

    #[test]
    fn turn_credentials_wait_for_an_agent() {
        let mut w = World::new();
        let with_turn = MediaConfig {
            ice_servers: vec![
                IceServer {
                    urls: vec!["stun:stun.example:3478".into()],
                    username: None,
                    credential: None,
                },
                IceServer {
                    urls: vec!["turn:turn.example:3478".into()],
                    username: Some("u".into()),
                    credential: Some("p".into()),
                },
            ],
            max_upload: 1,
            email: false,
        };
        let welcome = |w: &mut World, peer: u64, conv: &ConversationMeta| {
            w.ev(Event::Opened {
                peer: PeerId(peer),
                caller: Caller::Visitor {
                    site: site("s1"),
                    site_name: "Shop".into(),
                    features: SiteFeatures::default(),
                    look: SiteLook::default(),
                    identity: IdentityRule::default(),
                    address: home(),
                },
            });
            w.text(peer, &hello());
            let e = w.ev(Event::VisitorReady {
                peer: PeerId(peer),
                token: "t".into(),
                conversation: conv.clone(),
                saved: true,
                media: with_turn.clone(),
            });
            match &sent(&e)[..] {
                [(_, ServerMsg::WelcomeVisitor { media, .. })] => media.ice_servers.len(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(welcome(&mut w, 1, &meta("c1", "s1", None)), 1, "STUN only");
        assert_eq!(welcome(&mut w, 2, &meta("c2", "s1", Some("a"))), 2);
        // When an agent joins, the visitor's sockets get the full set.
        let e = w.ev(Event::Delivered(BusEvent::AgentJoined {
            conversation: "c1".into(),
            agent_name: "Ana".into(),
        }));
        assert!(e.contains(&Effect::SendMedia {
            peer: PeerId(1),
            conversation: "c1".into()
        }));
    }

    #[test]
    fn a_visitors_history_reads_wait_once_their_budget_is_spent() {
        let mut w = World::new(); // pages of 3
        w.core.limits.visitor_history_rate = 2; // 10 at once, 2 a second
        let c1 = meta("c1", "s1", Some("a"));
        w.visitor(1, &c1);
        w.visitor(2, &c1);
        let join = ClientMsg::Join {
            conversation: "c1".into(),
            after_seq: 0,
        };
        let reads = |e: &[Effect]| {
            e.iter()
                .filter(|e| matches!(e, Effect::ReadHistory { .. }))
                .count()
        };
        let page = |from: u64| (from..from + 3).map(|s| msg("c1", s)).collect::<Vec<_>>();
        // Both tabs re-join: their pages come out of one budget of 10.
        assert_eq!(reads(&w.act(1, join.clone(), &c1)), 1);
        assert_eq!(reads(&w.act(2, join, &c1)), 1);
        let next = |w: &mut World, peer: u64, from: u64| {
            reads(&w.ev(page_of(PeerId(peer), "c1".into(), page(from), None)))
        };
        assert_eq!(next(&mut w, 1, 1), 1); // 3 read
        assert_eq!(next(&mut w, 2, 1), 1); // 6
        assert_eq!(next(&mut w, 1, 4), 1); // 9
        assert_eq!(next(&mut w, 2, 4), 0, "12 read: the next page waits");
        w.now += 500;
        assert_eq!(reads(&w.tick()), 0, "still in debt");
        w.now += 1_000;
        let e = w.tick();
        assert_eq!(reads(&e), 1, "refilled: it goes on");
        // An agent is never held back.
        w.agent(10, "a", Scope::All);
        let join = ClientMsg::Join {
            conversation: "c1".into(),
            after_seq: 0,
        };
        assert_eq!(reads(&w.act(10, join, &c1)), 1);
    }

    #[test]
    fn a_closed_conversation_refuses_agents_and_reopens_with_its_agent_or_the_queue() {
        let mut w = World::new();
        let open = meta("c1", "s1", Some("a"));
        let closed = ConversationMeta {
            closed: true,
            ..open.clone()
        };
        w.agent(10, "a", Scope::All);
        w.visitor(1, &open);
        // The agent closes it: the store is asked, then the record and the visitor hear.
        let close = ClientMsg::Close {
            conversation: "c1".into(),
        };
        assert!(matches!(
            &w.act(10, close, &open)[..],
            [Effect::Conclude { .. }]
        ));
        let done = w.ev(Event::Concluded {
            peer: PeerId(10),
            meta: open.clone(),
            agent: agent("a"),
            ok: true,
        });
        assert_eq!(appends(&done), ["Agent a closed the conversation"]);
        assert!(done.contains(&Effect::Publish(BusEvent::Closed {
            conversation: "c1".into()
        })));
        // Nobody posts in it; the agent gets a clear refusal.
        let late = chat("c1", "late");
        assert_eq!(
            error_code(&w.act(10, late, &closed)),
            Some(ErrorCode::Forbidden)
        );
        // The visitor writes: back to the agent, who is available with room.
        let back = w.act(1, chat("c1", "again"), &closed);
        assert!(back.contains(&Effect::Reopen {
            conversation: "c1".into(),
            agent: Some(AgentId::from("a")),
        }));
        assert!(back.contains(&Effect::Publish(BusEvent::AgentJoined {
            conversation: "c1".into(),
            agent_name: "Agent a".into(),
        })));
        let texts = appends(&back);
        assert_eq!(texts, ["The visitor reopened the conversation", "hi"]);
        // Closed again while the agent is away: the next message puts it in the queue.
        w.ev(Event::Concluded {
            peer: PeerId(10),
            meta: open.clone(),
            agent: agent("a"),
            ok: true,
        });
        let away = ClientMsg::Presence {
            presence: Presence::Away,
        };
        w.text(10, &away);
        let queued = w.act(1, chat("c1", "hello?"), &closed);
        assert!(queued.contains(&Effect::Reopen {
            conversation: "c1".into(),
            agent: None,
        }));
        let told = sent(&queued);
        assert!(told.contains(&(
            1,
            ServerMsg::Queue {
                conversation: "c1".into(),
                position: 1,
                online: false,
            }
        )));
    }

    #[test]
    fn the_team_hears_an_agents_presence_change() {
        let (mut w, c1) = call_world(); // agent "a" on peer 10, visitor on 1
        w.agent(20, "b", Scope::All);
        let told = |e: &[Effect], to: u64| -> Vec<(String, Presence)> {
            sent(e)
                .into_iter()
                .filter(|(p, _)| *p == to)
                .filter_map(|(_, m)| match m {
                    ServerMsg::Presence(t) => Some((t.agent.id.0, t.presence)),
                    _ => None,
                })
                .collect()
        };
        let choose = |presence| ClientMsg::Presence { presence };
        let e = w.text(10, &choose(Presence::Away));
        assert!(e.contains(&Effect::SavePresence {
            agent: "a".into(),
            presence: Presence::Away
        }));
        assert_eq!(told(&e, 20), vec![("a".into(), Presence::Away)]);
        assert_eq!(told(&e, 10), vec![("a".into(), Presence::Away)]);
        // Busy is not a choice; visitors have no presence.
        assert_eq!(
            error_code(&w.text(10, &choose(Presence::Busy))),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            error_code(&w.text(1, &choose(Presence::Away))),
            Some(ErrorCode::Forbidden)
        );
        // In a call: busy; after it, away again.
        w.act(
            10,
            call(
                "c1",
                CallAction::Start {
                    kind: CallKind::Voice,
                },
            ),
            &c1,
        );
        let e = w.act(1, call("c1", CallAction::Accept), &c1);
        assert_eq!(told(&e, 20), vec![("a".into(), Presence::Busy)]);
        let e = w.act(10, call("c1", CallAction::HangUp), &c1);
        assert_eq!(told(&e, 20), vec![("a".into(), Presence::Away)]);
        // Gone: nothing within the grace period, offline past it.
        assert!(told(&w.ev(Event::Closed { peer: PeerId(10) }), 20).is_empty());
        w.now += 29_000;
        assert!(told(&w.tick(), 20).is_empty());
        w.now += 1_000;
        assert_eq!(told(&w.tick(), 20), vec![("a".into(), Presence::Offline)]);
    }
}
