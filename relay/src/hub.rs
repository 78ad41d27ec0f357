//! The hub executes what the [`Core`] decides: it feeds the core events (frames, store
//! answers, bus deliveries, clock ticks) and carries out the effects (send, close, read,
//! write, publish). It holds no rule of its own.
//!
//! - Each connection is one task, generic over any `Stream`/`Sink` of WebSocket messages
//!   (axum's socket in production, channels in tests): it reads frames, handles each to the
//!   end, and all the while writes out its bounded outbox of frames already serialised. A
//!   connection whose outbox is full is cut (it reconnects and resumes from its last seq)
//!   rather than slowing anyone else. An idle connection holds no more than it must: the
//!   outbox allocates per frame, and a frame's handling is boxed only while it runs.
//! - The core's lock is held only while it decides, never across a store call.
//! - Messages of one conversation are stored and published one after another (a lane per
//!   conversation, hashed into [`LANES`]); different conversations go in parallel, and the
//!   store commits whatever arrives together in one transaction.
//! - History is read outside every lock; the core holds live messages for a joiner until its
//!   history is sent.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Message as WsMessage;
use escalera_protocol::{
    AgentId, ClientMsgId, ConversationId, ErrorCode, MediaConfig, Message, ServerMsg, VisitorToken,
};
use futures_channel::mpsc as outbox;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::{mpsc, watch};

use crate::bus::Bus;
use crate::core::{
    Caller, ConversationMeta, Core, Effect, Event, Limits, PeerId, Reply, Role, Scope,
};
use crate::error::{RelayError, StoreError};
use crate::secrets;
use crate::store::{Directory, Log};
use crate::{now_ms, Config};

/// What an agent's console starts with: the team, their list and their read marks.
type Desk = (
    Vec<(
        escalera_protocol::AgentRef,
        Scope,
        escalera_protocol::Presence,
        u32,
    )>,
    Vec<escalera_protocol::ConversationSummary>,
    Vec<escalera_protocol::ReadMark>,
);

/// The sending end of a connection's outbox (boxed: a queue allocates a node per frame,
/// and one empty node up front).
type Outbox = outbox::Sender<Box<ServerMsg>>;

/// How many frames may wait for a slow connection before it is cut.
const OUTBOX: usize = 256;
/// How often the agents' list rows of conversations with new messages go out: one update
/// per conversation per flush, however many messages came.
const FLUSH_MS: u64 = 200;
/// Conversation lanes: appends to conversations in one lane are serialised.
const LANES: usize = 1024;

/// An HTTP request the core refused: the wire code and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// For programs.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
}

impl From<RelayError> for Refused {
    fn from(e: RelayError) -> Self {
        Self {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

/// The hub shared by every connection.
pub struct Hub {
    directory: Arc<dyn Directory>,
    log: Arc<dyn Log>,
    bus: Arc<dyn Bus>,
    config: Arc<Config>,
    core: Mutex<Core>,
    outboxes: Mutex<HashMap<PeerId, Outbox>>,
    lanes: Vec<tokio::sync::Mutex<()>>,
    lane_hasher: std::collections::hash_map::RandomState,
    next_peer: AtomicU64,
    shutdown: watch::Receiver<bool>,
    /// Email, when the relay has an SMTP server.
    mail: Option<Arc<crate::mail::Mail>>,
}

impl Hub {
    /// A hub over a store and a bus; connections close when `shutdown` turns true.
    pub fn new(
        directory: Arc<dyn Directory>,
        log: Arc<dyn Log>,
        bus: Arc<dyn Bus>,
        config: Arc<Config>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let limits = Limits {
            ring_timeout_ms: config.ring_timeout_ms,
            call_grace_ms: config.call_grace_ms,
            node: bus.node(),
            frame_rate: config.frame_rate,
            frame_burst: config.frame_burst,
            hello_deadline_ms: config.hello_deadline_secs.max(1) as i64 * 1000,
            sockets_per_visitor: config.sockets_per_visitor.max(1),
            conversations_per_address: config.conversations_per_address.max(1),
            visitor_chat_rate: config.visitor_chat_rate.max(1),
            visitor_chat_burst: config.visitor_chat_rate.max(1) * 15,
            address_chat_rate: config.address_chat_rate.max(1),
            address_chat_burst: config.address_chat_rate.max(1) * 10,
            call_actions_per_minute: config.call_actions_per_minute.max(1),
            visitor_history_rate: config.visitor_history_rate.max(1),
            presence_grace_ms: config.presence_grace_secs as i64 * 1000,
            away_after_secs: config.away_after_secs,
            email: config.mail.is_some(),
            alert_after_ms: config.alert_after_secs as i64 * 1000,
            ..Limits::default()
        };
        // `serve` checked the SMTP settings before it started.
        let mail = config.mail.as_ref().and_then(|m| {
            let mailer = crate::mail::Mailer::new(m)
                .inspect_err(|e| tracing::error!("email is off: {e}"))
                .ok()?;
            let public_url = config.public_url.clone().unwrap_or_default();
            let mail =
                crate::mail::Mail::new(mailer, m, directory.clone(), log.clone(), public_url);
            Some(Arc::new(mail))
        });
        Self {
            mail,
            directory,
            log,
            bus,
            config,
            core: Mutex::new(Core::new(limits)),
            outboxes: Mutex::new(HashMap::new()),
            lanes: (0..LANES).map(|_| tokio::sync::Mutex::new(())).collect(),
            lane_hasher: Default::default(),
            next_peer: AtomicU64::new(1),
            shutdown,
        }
    }

    /// Sites, agents and sessions, for the HTTP handlers.
    pub fn directory(&self) -> &Arc<dyn Directory> {
        &self.directory
    }

    /// Conversations and messages, for the HTTP handlers.
    pub fn log(&self) -> &Arc<dyn Log> {
        &self.log
    }

    /// The bus between nodes.
    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    fn outboxes(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, Outbox>> {
        self.outboxes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sockets and calls open on this node now (for the metrics).
    pub fn census(&self) -> crate::core::Census {
        self.lock_core().census()
    }

    fn lock_core(&self) -> std::sync::MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the core makes of `event`, now. What it sends is queued on the sockets before
    /// the core is unlocked, so a socket gets what one decision sends before what any later
    /// one does (a welcome before the list's first update, a history before the live
    /// messages that follow it); the other effects are returned.
    fn feed(&self, event: Event) -> Vec<Effect> {
        let mut core = self.lock_core();
        let effects = core.handle(now_ms(), event);
        let later = effects
            .into_iter()
            .filter_map(|e| self.queue_on_socket(e))
            .collect();
        drop(core);
        later
    }

    /// Queues a send (or a close) on its socket; any other effect is given back.
    fn queue_on_socket(&self, effect: Effect) -> Option<Effect> {
        match effect {
            Effect::Send(peer, msg) => self.deliver(peer, msg),
            Effect::Close(peer) => {
                // Dropping the outbox ends the socket after what was queued goes out.
                self.outboxes().remove(&peer);
            }
            Effect::SendMedia { peer, conversation } => {
                let media = self.media_config();
                let msg = ServerMsg::Media {
                    conversation,
                    media,
                };
                self.deliver(peer, msg);
            }
            other => return Some(other),
        }
        None
    }

    /// Feeds `event` and carries out everything that follows from it, to the end.
    async fn run(&self, event: Event) {
        let mut queue: VecDeque<Effect> = self.feed(event).into();
        while let Some(effect) = queue.pop_front() {
            queue.extend(self.execute(effect).await);
        }
    }

    /// Carries out effects that need no waiting; returns the others.
    fn execute_now(&self, effects: Vec<Effect>) -> Vec<Effect> {
        let mut later = Vec::new();
        for effect in effects.into_iter().filter_map(|e| self.queue_on_socket(e)) {
            match effect {
                Effect::Publish(event) => self.bus.publish(event),
                Effect::Subscribe(topic) => self.bus.subscribe(topic),
                Effect::Unsubscribe(topic) => self.bus.unsubscribe(topic),
                other => later.push(other),
            }
        }
        later
    }

    /// Carries out one effect; returns the effects of the answer, if it had one.
    async fn execute(&self, effect: Effect) -> Vec<Effect> {
        let event = match effect {
            Effect::CheckSessions(asked) => {
                match self.directory.live_sessions(asked.clone(), now_ms()).await {
                    Ok(live) => Event::SessionsLive { asked, live },
                    Err(e) => {
                        tracing::warn!("cannot check the agents' sessions: {e}");
                        return Vec::new();
                    }
                }
            }
            Effect::Load {
                peer,
                conversation,
                request,
            } => match self.log.conversation(conversation.clone()).await {
                Ok(meta) => Event::Loaded {
                    peer,
                    request,
                    meta,
                },
                Err(e) => failed(peer, Some(conversation), None, e),
            },
            Effect::ResolveVisitor {
                peer,
                site,
                token,
                unsaved,
                user,
                resume,
            } => match self
                .resolve_visitor(site, token, unsaved, user, resume)
                .await
            {
                Ok((token, conversation, saved)) => Event::VisitorReady {
                    peer,
                    token,
                    conversation,
                    saved,
                    media: self.media_config(),
                },
                Err(e) => failed(peer, None, None, e),
            },
            Effect::Create {
                conversation,
                token,
                address,
                user,
            } => {
                // With other nodes, the per-address limit counts theirs too (this node's own
                // count, kept in the core, was checked first).
                if let Err(error) = self.cluster_limit(address).await {
                    let event = Event::Created {
                        conversation,
                        error: Some(error),
                    };
                    return self.feed(event);
                }
                let hash = secrets::token_hash(&token.0);
                let add =
                    self.log
                        .add_visitor(conversation.clone(), hash, address.to_string(), now_ms());
                let mut stored = add.await;
                if let (Ok(()), Some(user)) = (&stored, user) {
                    // Lost to another device of the same user meanwhile: this one stays theirs
                    // anyway, unmarked (their next hello finds the other).
                    stored = self
                        .log
                        .claim(conversation.id.clone(), user)
                        .await
                        .map(|_| ());
                }
                Event::Created {
                    conversation,
                    error: stored.err().map(RelayError::from),
                }
            }
            Effect::LoadSummaries(ids) => match self.log.summaries_of(ids).await {
                Ok(rows) => Event::Summaries(rows),
                Err(e) => {
                    tracing::warn!("cannot read the agents' list rows: {e}");
                    return Vec::new();
                }
            },
            Effect::LoadDesk { peer, agent, scope } => match self.desk(agent, scope).await {
                Ok((team, conversations, read)) => Event::DeskReady {
                    peer,
                    team,
                    conversations,
                    read,
                    media: self.media_config(),
                },
                Err(e) => failed(peer, None, None, e),
            },
            Effect::SavePresence { agent, presence } => {
                if let Err(e) = self.directory.set_presence(agent, presence).await {
                    tracing::error!("store: presence: {e}");
                }
                return Vec::new();
            }
            Effect::ReadHistory {
                peer,
                conversation,
                after,
                limit,
                for_visitor,
            } => {
                let page =
                    self.log
                        .messages_after(conversation.clone(), after, limit, !for_visitor);
                let read = async {
                    match for_visitor {
                        true => self.log.read_upto(conversation.clone()).await.map(Some),
                        false => Ok(None),
                    }
                };
                let timer = crate::metrics::get()
                    .store_seconds
                    .with_label_values(&["history"])
                    .start_timer();
                let answer = tokio::try_join!(page, read);
                timer.observe_duration();
                match answer {
                    Ok((page, read)) => Event::History {
                        peer,
                        conversation,
                        messages: page.messages,
                        upto: page.upto,
                        full: page.full,
                        read,
                    },
                    Err(e) => failed(peer, Some(conversation), None, e),
                }
            }
            Effect::Assign {
                peer,
                meta,
                agent,
                then,
            } => match self.assign(&meta, &agent).await {
                Ok((won, holder)) => Event::Assigned {
                    peer,
                    meta,
                    agent,
                    won,
                    holder,
                    then,
                },
                Err(e) => match peer {
                    Some(peer) => failed(peer, Some(meta.id), None, e),
                    None => {
                        tracing::error!("store: routing an assignment: {e}");
                        return Vec::new();
                    }
                },
            },
            Effect::Conclude { peer, meta, agent } => {
                match self
                    .log
                    .close(meta.id.clone(), agent.id.clone(), now_ms())
                    .await
                {
                    Ok(ok) => Event::Concluded {
                        peer,
                        meta,
                        agent,
                        ok,
                    },
                    Err(e) => failed(peer, Some(meta.id), None, e),
                }
            }
            Effect::Transfer {
                peer,
                meta,
                from,
                to,
                note,
            } => {
                let moved = self.log.reassign(
                    meta.id.clone(),
                    Some(from.id.clone()),
                    to.as_ref().map(|a| a.id.clone()),
                );
                match moved.await {
                    Ok(ok) => Event::Transferred {
                        peer,
                        meta,
                        from,
                        to,
                        note,
                        ok,
                    },
                    Err(e) => failed(peer, Some(meta.id), None, e),
                }
            }
            Effect::Rate {
                peer,
                meta,
                rating,
                comment,
            } => match self.log.rate(meta.id.clone(), rating).await {
                Ok(ok) => Event::Rated {
                    peer,
                    meta,
                    rating,
                    comment,
                    ok,
                },
                Err(e) => failed(peer, Some(meta.id), None, e),
            },
            Effect::Reopen {
                conversation,
                agent,
            } => {
                if let Err(e) = self.log.reopen(conversation, agent).await {
                    tracing::error!("store: reopening a conversation: {e}");
                }
                return Vec::new();
            }
            Effect::SaveVisit { conversation, info } => {
                if let Err(e) = self.log.set_visitor_info(conversation, info).await {
                    tracing::error!("store: a visitor's page: {e}");
                }
                return Vec::new();
            }
            Effect::SaveVisitor {
                conversation,
                name,
                email,
            } => {
                if let Err(e) = self.log.set_visitor(conversation, name, email).await {
                    tracing::error!("store: a visitor's details: {e}");
                }
                return Vec::new();
            }
            Effect::MailReply {
                conversation,
                site,
                seq,
            } => {
                if let Some(mail) = &self.mail {
                    mail.reply(conversation, site, seq);
                }
                return Vec::new();
            }
            Effect::MailAlert {
                conversation,
                site,
                since,
            } => {
                if let Some(mail) = &self.mail {
                    mail.alert(conversation, site, since);
                }
                return Vec::new();
            }
            Effect::MailTranscript {
                conversation,
                site,
                email,
            } => {
                if let Some(mail) = &self.mail {
                    mail.transcript(conversation, site, email);
                }
                return Vec::new();
            }
            Effect::SaveEmail {
                conversation,
                email,
            } => {
                if let Err(e) = self.log.set_email(conversation, email).await {
                    tracing::error!("store: a visitor's email: {e}");
                }
                return Vec::new();
            }
            Effect::Append {
                message,
                site,
                reply,
            } => return self.append(message, site, reply).await,
            Effect::SaveCall { conversation, call } => {
                if let Err(e) = self.log.save_call(conversation, call).await {
                    tracing::error!("store: call: {e}");
                }
                return Vec::new();
            }
            Effect::MarkRead {
                agent,
                conversation,
                seq,
            } => match self.log.mark_read(agent, conversation.clone(), seq).await {
                Ok(()) => Event::MarkedRead { conversation, seq },
                Err(e) => {
                    tracing::error!("store: read mark: {e}");
                    return Vec::new();
                }
            },
            now @ (Effect::Send(..)
            | Effect::Close(_)
            | Effect::SendMedia { .. }
            | Effect::Publish(_)
            | Effect::Subscribe(_)
            | Effect::Unsubscribe(_)) => return self.execute_now(vec![now]),
        };
        self.execute_now(self.feed(event))
    }

    /// Stores a message in its conversation's lane: the commit, the ack and the publication
    /// happen in seq order for each conversation.
    async fn append(
        &self,
        message: crate::core::NewMessage,
        site: escalera_protocol::SiteKey,
        reply: Reply,
    ) -> Vec<Effect> {
        let (conversation, client_id) = (message.conversation.clone(), message.client_id.clone());
        let _lane = self.lane(&conversation).lock().await;
        let timer = crate::metrics::get()
            .store_seconds
            .with_label_values(&["append"])
            .start_timer();
        let appended = self.log.append(message).await;
        timer.observe_duration();
        match appended {
            Ok(a) => {
                if a.fresh {
                    crate::metrics::get().messages.inc();
                }
                self.execute_now(self.feed(Event::Appended {
                    reply,
                    site,
                    message: a.message,
                    fresh: a.fresh,
                }))
            }
            Err(e) => match reply {
                Reply::Ack(peer) | Reply::Http(peer) => {
                    self.execute_now(self.feed(failed(peer, Some(conversation), client_id, e)))
                }
                Reply::None => {
                    tracing::error!("store: a system note was not stored: {e}");
                    Vec::new()
                }
            },
        }
    }

    fn lane(&self, conversation: &ConversationId) -> &tokio::sync::Mutex<()> {
        let mut h = self.lane_hasher.build_hasher();
        conversation.hash(&mut h);
        &self.lanes[(std::hash::Hasher::finish(&h) as usize) % LANES]
    }

    /// The visitor's token and conversation, and whether it is stored: theirs from the
    /// store, the one this node knows and has not stored yet, or a new pair (stored only when
    /// they first say something).
    /// The visitor's token and conversation: a verified user's own (on any device), else the
    /// token's (which a verified user claims, unless it is another user's), else a new one.
    async fn resolve_visitor(
        &self,
        site: escalera_protocol::SiteKey,
        token: Option<VisitorToken>,
        unsaved: Option<ConversationId>,
        user: Option<crate::store::VerifiedUser>,
        resume: Option<String>,
    ) -> Result<(VisitorToken, ConversationMeta, bool), StoreError> {
        let fresh = |id, site| ConversationMeta::new(id, site, None);
        // A link from an email, once: the conversation it was sent for, with a new token. A
        // used or expired one is passed over (the visitor goes on as without it).
        if let Some(link) = resume {
            let t = VisitorToken(secrets::random_token());
            let redeem = self.log.redeem_link(
                site.clone(),
                secrets::token_hash(&link),
                secrets::token_hash(&t.0),
                now_ms(),
            );
            if let Some(meta) = redeem.await? {
                return Ok((t, meta, true));
            }
        }
        if let Some(user) = &user {
            let theirs = self.log.user_conversation(site.clone(), user.id.clone());
            if let Some(meta) = theirs.await? {
                let t = VisitorToken(secrets::random_token());
                let hash = secrets::token_hash(&t.0);
                let add = self.log.add_token(meta.id.clone(), site, hash, now_ms());
                add.await?;
                return Ok((t, meta, true));
            }
        }
        if let Some(t) = token {
            if let Some(id) = unsaved {
                return Ok((t, fresh(id, site), false));
            }
            let hash = secrets::token_hash(&t.0);
            if let Some(meta) = self.log.visitor_conversation(site.clone(), hash).await? {
                let mine = match &user {
                    Some(u) => self.log.claim(meta.id.clone(), u.clone()).await?,
                    None => true,
                };
                if mine {
                    return Ok((t, meta, true));
                }
            }
        }
        let t = VisitorToken(secrets::random_token());
        let id = ConversationId(secrets::random_id());
        Ok((t, fresh(id, site), false))
    }

    async fn desk(
        &self,
        agent: escalera_protocol::AgentId,
        scope: Scope,
    ) -> Result<Desk, StoreError> {
        let team = self
            .directory
            .agents(now_ms())
            .await?
            .into_iter()
            .filter(|a| !a.disabled)
            .map(|a| {
                (
                    a.agent.agent,
                    a.agent.scope,
                    a.agent.presence,
                    a.agent.limit,
                )
            })
            .collect();
        Ok((
            team,
            self.log.summaries(scope, 500).await?,
            self.log.read_marks(agent).await?,
        ))
    }

    /// Assigns, first come first served; when lost, who has it.
    async fn assign(
        &self,
        meta: &ConversationMeta,
        agent: &escalera_protocol::AgentRef,
    ) -> Result<(bool, Option<escalera_protocol::AgentRef>), StoreError> {
        let taken = self
            .log
            .reassign(meta.id.clone(), None, Some(agent.id.clone()));
        if taken.await? {
            return Ok((true, None));
        }
        let now = self.log.conversation(meta.id.clone()).await?;
        Ok((false, now.and_then(|m| m.agent)))
    }

    /// With other nodes on the database: counts one more event under `key` over every node
    /// ([`crate::store::Directory::count`]); when that is past `limit` in the window, how long
    /// until the window ends (ms). Alone, this node's own limiters are the whole count, and
    /// nothing is counted here.
    pub async fn over_cluster_limit(
        &self,
        key: String,
        window_ms: i64,
        limit: u32,
    ) -> Result<Option<i64>, crate::error::StoreError> {
        if self.bus.node() == 0 {
            return Ok(None);
        }
        let now = now_ms();
        let (n, ends) = self.directory.count(key, window_ms, now).await?;
        Ok((n > limit.max(1)).then_some(ends - now))
    }

    /// Whether `address` may store one more conversation this hour, counted over every node
    /// (`--conversations-per-address`; the core counted this node's first).
    async fn cluster_limit(&self, address: std::net::IpAddr) -> Result<(), RelayError> {
        let key = format!("conversations {address}");
        let limit = self.config.conversations_per_address;
        if self
            .over_cluster_limit(key, crate::core::HOUR_MS, limit)
            .await?
            .is_some()
        {
            crate::metrics::limited("cap");
            return Err(RelayError::Limit(
                "too many new conversations from your network; try again later",
            ));
        }
        Ok(())
    }

    /// Queues `msg` for `peer`. A peer whose outbox is full loses it, which ends its writer
    /// and so its connection.
    fn deliver(&self, peer: PeerId, msg: ServerMsg) {
        if let ServerMsg::Error { code, .. } = &msg {
            match code {
                ErrorCode::RateLimited => crate::metrics::limited("rate"),
                ErrorCode::LimitReached => crate::metrics::limited("cap"),
                _ => {}
            }
        }
        let mut outboxes = self.outboxes();
        let Some(tx) = outboxes.get_mut(&peer) else {
            return;
        };
        if tx.try_send(Box::new(msg)).is_err() {
            tracing::warn!(?peer, "outbox full or closed, cutting the connection");
            outboxes.remove(&peer);
        }
    }

    /// ICE servers and the upload limit for a new socket. Its TURN username is a random id:
    /// it tells the TURN server's logs nothing about how many sockets the relay served.
    fn media_config(&self) -> MediaConfig {
        let now_secs = u64::try_from(now_ms() / 1000).unwrap_or(0);
        let who = crate::secrets::random_id();
        MediaConfig {
            ice_servers: self.config.ice.servers(now_secs, &who[..12.min(who.len())]),
            max_upload: self.config.max_upload,
            email: self.mail.is_some(),
        }
    }

    /// A session ended here (logout): its sockets are told and closed now.
    pub async fn revoke(&self, session: String) {
        self.run(Event::Revoked { session }).await;
    }

    /// A site's settings changed: its open widgets follow.
    pub async fn site_changed(&self, site: &crate::store::Site) {
        self.run(Event::SiteChanged {
            site: site.key.clone(),
            site_name: site.name.clone(),
            features: site.features,
            look: site.look.clone(),
        })
        .await;
    }

    /// An agent changed, or their sessions ended (`ended`): their consoles close now.
    pub async fn agent_changed(&self, agent: AgentId, ended: bool) {
        self.run(Event::AgentChanged { agent, ended }).await;
    }

    /// Brings back the calls that were active when the relay stopped: their ends have the
    /// grace period to reconnect and resume.
    pub async fn restore_calls(&self) -> Result<usize, StoreError> {
        let calls = self.log.calls().await?;
        let open = self.log.open_conversations().await?;
        let n = calls.len();
        self.run(Event::Restored { calls, open }).await;
        Ok(n)
    }

    /// Flushes the agents' list rows every [`FLUSH_MS`] and ticks the core's clock once a
    /// second, until shutdown.
    pub async fn run_clock(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(FLUSH_MS));
        for n in 0u64.. {
            tokio::select! {
                _ = every.tick() => {
                    self.run(Event::Flush).await;
                    if n.is_multiple_of(1000 / FLUSH_MS) {
                        self.run(Event::Tick).await;
                    }
                }
                () = stopped(&mut shutdown) => return,
            }
        }
    }

    /// Feeds what the bus delivers to the core, in order, until the bus closes.
    pub async fn run_bus(
        self: Arc<Self>,
        mut events: mpsc::UnboundedReceiver<crate::core::BusEvent>,
    ) {
        while let Some(event) = events.recv().await {
            let mut queue: VecDeque<Effect> =
                self.execute_now(self.feed(Event::Delivered(event))).into();
            while let Some(effect) = queue.pop_front() {
                queue.extend(self.execute(effect).await);
            }
        }
    }

    fn open(&self, caller: Caller, room: usize) -> (PeerId, outbox::Receiver<Box<ServerMsg>>) {
        let peer = PeerId(self.next_peer.fetch_add(1, Ordering::Relaxed));
        // A sender's own slot counts too: `room` frames in all.
        let (tx, rx) = outbox::channel::<Box<ServerMsg>>(room.saturating_sub(1));
        self.outboxes().insert(peer, tx);
        let effects = self.feed(Event::Opened { peer, caller });
        debug_assert!(effects.is_empty());
        (peer, rx)
    }

    /// Serves one socket, given as its two halves, until it closes or the relay shuts down.
    pub async fn serve<W, R, E>(self: Arc<Self>, mut sink: W, mut stream: R, caller: Caller)
    where
        W: Sink<WsMessage> + Send + Unpin,
        R: Stream<Item = Result<WsMessage, E>> + Send + Unpin,
    {
        let (peer, mut outbox) = self.open(caller, OUTBOX);
        // Heartbeat: a ping every third of the idle timeout (browsers answer by themselves);
        // a socket that sends nothing, not even a pong, for the whole timeout is closed.
        let idle = std::time::Duration::from_secs(self.config.idle_timeout_secs.max(3));
        let start = tokio::time::Instant::now();
        let mut heartbeat = tokio::time::interval_at(start + idle / 3, idle / 3);
        let mut heard = start;
        let mut shutdown = self.shutdown.clone();
        // Whether the socket can still be written to.
        let mut open = true;
        // Whether this relay is stopping (the close then says so).
        let mut stopping = false;
        loop {
            let frame = tokio::select! {
                frame = stream.next() => frame,
                msg = outbox.next() => match msg {
                    Some(msg) => {
                        open = sink.send(text(&msg)).await.is_ok();
                        if open { continue } else { break }
                    }
                    None => break, // closed by the core, or cut
                },
                now = heartbeat.tick() => {
                    if now.duration_since(heard) >= idle {
                        tracing::debug!("closing a socket silent for {idle:?}");
                        break;
                    }
                    open = sink.send(WsMessage::Ping(Default::default())).await.is_ok();
                    if open { continue } else { break }
                }
                () = stopped(&mut shutdown) => {
                    stopping = true;
                    break;
                }
            };
            heard = tokio::time::Instant::now();
            let event = match frame {
                Some(Ok(WsMessage::Text(text))) => Event::Text {
                    peer,
                    text: text.as_str().to_owned(),
                },
                Some(Ok(WsMessage::Binary(_))) => Event::Binary { peer },
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                Some(Ok(WsMessage::Close(_)) | Err(_)) | None => break,
            };
            // A frame, once read, is handled to the end (its store write and its ack) before
            // the next; meanwhile what it and others queue for this socket goes out.
            let mut handling = Box::pin(self.run(event));
            loop {
                tokio::select! {
                    biased;
                    () = &mut handling => break,
                    Some(msg) = outbox.next(), if open => {
                        open = sink.send(text(&msg)).await.is_ok();
                    }
                }
            }
            if !open || !self.outboxes().contains_key(&peer) {
                break; // closed by the core, or cut
            }
        }
        self.outboxes().remove(&peer);
        Box::pin(self.run(Event::Closed { peer })).await;
        if open {
            // What was queued before the end goes out, then a close frame: briefly.
            let flush = async {
                while let Some(msg) = outbox.next().await {
                    if sink.send(text(&msg)).await.is_err() {
                        return;
                    }
                }
                // 1012 (service restart): this node is going; the client reconnects, through
                // a proxy to another node.
                let close = stopping.then(|| axum::extract::ws::CloseFrame {
                    code: 1012,
                    reason: "the relay is restarting: reconnect".into(),
                });
                let _ = sink.send(WsMessage::Close(close)).await;
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), flush).await;
        }
    }

    /// The conversation, for the HTTP handlers' permission checks (a new visitor's, not
    /// stored yet, included).
    pub async fn meta(&self, id: &ConversationId) -> Result<ConversationMeta, RelayError> {
        if let Some(meta) = self.lock_core().unsaved_meta(id) {
            return Ok(meta);
        }
        self.log
            .conversation(id.clone())
            .await?
            .ok_or(RelayError::NotFound)
    }

    /// The visitor whose token this is, when their conversation is not stored yet.
    pub fn unsaved_visitor(&self, token: &str) -> Option<Role> {
        self.lock_core().unsaved_visitor(token)
    }

    /// Posts a file already on disk into a conversation as a message whose text is the file's
    /// name, through the same rules as a chat frame (an agent takes a waiting conversation).
    pub async fn post_file(
        &self,
        role: Role,
        conversation: ConversationId,
        attachment: escalera_protocol::Attachment,
        client_id: Option<ClientMsgId>,
    ) -> Result<Message, Refused> {
        let (peer, mut answers) = self.open(Caller::Http(role), 16);
        self.run(Event::Upload {
            peer,
            conversation,
            attachment,
            client_id,
        })
        .await;
        self.outboxes().remove(&peer);
        self.run(Event::Closed { peer }).await;
        while let Some(answer) = answers.next().await {
            match *answer {
                ServerMsg::Message(m) => return Ok(m),
                ServerMsg::Error { code, message, .. } => return Err(Refused { code, message }),
                _ => {}
            }
        }
        Err(RelayError::Internal.into())
    }
}

/// A server message as a WebSocket text frame.
fn text(msg: &ServerMsg) -> WsMessage {
    let json = serde_json::to_string(msg).expect("ServerMsg always serialises");
    WsMessage::Text(json.into())
}

fn failed(
    peer: PeerId,
    conversation: Option<ConversationId>,
    client_id: Option<ClientMsgId>,
    e: StoreError,
) -> Event {
    tracing::error!("store: {e}");
    Event::Failed {
        peer,
        conversation,
        client_id,
        error: RelayError::Internal,
    }
}

/// Resolves once the relay shuts down.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|down| *down).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::LocalBus;
    use crate::sqlite::SqliteStore;
    use escalera_protocol::{ClientMsg, PROTOCOL_VERSION};

    /// The connection loop needs no real socket: two channels stand in for it.
    #[tokio::test]
    async fn a_connection_is_served_over_plain_channels() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let site = store
            .add_site("Shop".into(), Vec::new(), now_ms())
            .await
            .unwrap();
        let (bus, events) = LocalBus::new();
        let (_down, shutdown) = watch::channel(false);
        let hub = Arc::new(Hub::new(
            Arc::new(store.clone()),
            Arc::new(store),
            Arc::new(bus),
            Arc::new(Config::default()),
            shutdown,
        ));
        tokio::spawn(hub.clone().run_bus(events));

        let (to_relay, mut from_test) = mpsc::channel::<WsMessage>(8);
        let (to_test, mut from_relay) = mpsc::channel::<WsMessage>(8);
        let stream = futures_util::stream::poll_fn(move |cx| {
            from_test
                .poll_recv(cx)
                .map(|m| m.map(Ok::<_, std::io::Error>))
        });
        let sink = futures_util::sink::unfold(to_test, |tx, m: WsMessage| async move {
            tx.send(m)
                .await
                .map_err(|_| std::io::ErrorKind::BrokenPipe)?;
            Ok::<_, std::io::Error>(tx)
        });
        let caller = Caller::Visitor {
            site: site.key,
            site_name: site.name,
            features: site.features,
            look: site.look,
            identity: crate::core::IdentityRule {
                secret: site.identity_secret,
                required: site.identity_required,
            },
            address: std::net::IpAddr::from([127, 0, 0, 1]),
        };
        let served = hub.clone().serve(Box::pin(sink), Box::pin(stream), caller);
        // An idle socket holds this future: a frame's handling is boxed only while it runs.
        assert!(
            std::mem::size_of_val(&served) < 2048,
            "{}",
            std::mem::size_of_val(&served)
        );
        let served = tokio::spawn(served);

        let send = |m: ClientMsg| WsMessage::Text(serde_json::to_string(&m).unwrap().into());
        let mut recv = async || loop {
            match from_relay.recv().await {
                Some(WsMessage::Text(t)) => {
                    return serde_json::from_str::<ServerMsg>(t.as_str()).unwrap()
                }
                Some(_) => continue,
                None => panic!("the relay closed the connection"),
            }
        };
        to_relay
            .send(send(ClientMsg::Hello {
                protocol: PROTOCOL_VERSION,
                token: None,
                identity: None,
                resume: None,
            }))
            .await
            .unwrap();
        let ServerMsg::WelcomeVisitor { conversation, .. } = recv().await else {
            panic!("no welcome")
        };
        to_relay
            .send(send(ClientMsg::Chat {
                conversation: conversation.clone(),
                client_id: "m1".into(),
                text: "over a channel".into(),
            }))
            .await
            .unwrap();
        // Before the ack: where the visitor stands in the queue (nobody is there).
        let ack = loop {
            match recv().await {
                ServerMsg::Queue { online: false, .. } => continue,
                other => break other,
            }
        };
        assert!(matches!(ack, ServerMsg::Ack { seq: 1, .. }), "{ack:?}");
        drop(to_relay);
        served.await.unwrap();
        assert!(hub.outboxes().is_empty());
    }
}
