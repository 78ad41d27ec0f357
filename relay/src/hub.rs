//! The WebSocket hub: one task pair per connection, the shared [`Core`] and the [`Store`].
//!
//! A connection's reader parses frames and calls [`Hub::handle`]; everything a connection must
//! receive goes through its bounded outbox, drained by its writer task. A connection whose outbox
//! is full is cut (it reconnects and resumes from its last seq) rather than slowing anyone else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message as WsMessage, WebSocket};
use escalera_protocol::{
    check_text, Attachment, Author, CallAction, ClientMsg, ClientMsgId, ConversationId,
    MediaConfig, Message, ServerMsg, VisitorToken, MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};

use crate::core::{AgentPost, ConversationMeta, Core, PeerId, RateLimit, Role};
use crate::error::{RelayError, StoreError};
use crate::secrets;
use crate::store::{Agent, NewMessage, Site, Store};
use crate::{now_ms, Config};

/// How many frames may wait for a slow connection before it is cut.
const OUTBOX: usize = 256;
/// Messages per History frame when catching up.
const HISTORY_PAGE: u32 = 500;

/// Who opened a socket, as established at the HTTP upgrade (before any frame).
#[derive(Clone, Debug)]
pub enum Caller {
    /// A widget of this site (origin already checked).
    Visitor(Site),
    /// An agent with a valid session cookie.
    Agent(Agent),
}

struct Shared {
    core: Core,
    outboxes: HashMap<PeerId, mpsc::Sender<ServerMsg>>,
}

/// The hub shared by every connection.
pub struct Hub {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    shared: Mutex<Shared>,
    /// Serialises "store a message, then fan it out" and "join, then read history", so every
    /// subscriber sees a conversation's messages in seq order with none missed.
    log: tokio::sync::Mutex<()>,
    next_peer: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

impl Hub {
    /// A hub over `store`; connections close when `shutdown` turns true.
    pub fn new(
        store: Arc<dyn Store>,
        config: Arc<Config>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            store,
            config,
            shared: Mutex::new(Shared {
                core: Core::default(),
                outboxes: HashMap::new(),
            }),
            log: tokio::sync::Mutex::new(()),
            next_peer: AtomicU64::new(1),
            shutdown,
        }
    }

    /// The store, for the HTTP handlers.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Runs a store call on the blocking pool.
    pub async fn db<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&*store))
            .await
            .map_err(|e| StoreError::Join(e.to_string()))?
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with_core<T>(&self, f: impl FnOnce(&mut Core) -> T) -> T {
        f(&mut self.lock().core)
    }

    /// Delivers what the core decided. A peer whose outbox is full loses it, which ends its
    /// writer and so its connection (the reader's cleanup then tells the core).
    fn deliver(&self, out: Vec<(PeerId, ServerMsg)>) {
        let mut shared = self.lock();
        for (peer, msg) in out {
            let Some(tx) = shared.outboxes.get(&peer) else {
                continue;
            };
            if tx.try_send(msg).is_err() {
                tracing::warn!(?peer, "outbox full or closed, cutting the connection");
                shared.outboxes.remove(&peer);
            }
        }
    }

    /// Ends calls that rang too long, once a second, until shutdown.
    pub async fn run_clock(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = every.tick() => {
                    let timeout = self.config.ring_timeout_ms;
                    let ended = self.with_core(|c| c.tick(now_ms(), timeout));
                    self.calls_ended(ended).await;
                }
                () = stopped(&mut shutdown) => return,
            }
        }
    }

    /// Records the end of calls and tells everyone joined.
    async fn calls_ended(&self, ended: Vec<(ConversationId, String)>) {
        for (conv, note) in ended {
            self.deliver(self.with_core(|c| c.call_updates(&conv)));
            if let Ok(meta) = self.meta(&conv).await {
                let _ = self.post(&meta, system_note(&conv, note), None).await;
            }
        }
    }

    fn media_config(&self, who: &str) -> MediaConfig {
        let now_secs = u64::try_from(now_ms() / 1000).unwrap_or(0);
        MediaConfig {
            ice_servers: self.config.ice.servers(now_secs, who),
            max_upload: self.config.max_upload,
        }
    }

    fn reply(&self, peer: PeerId, msg: ServerMsg) {
        self.deliver(vec![(peer, msg)]);
    }

    /// Serves one upgraded socket until it closes or the relay shuts down.
    pub async fn serve(self: Arc<Self>, socket: WebSocket, caller: Caller) {
        let peer = PeerId(self.next_peer.fetch_add(1, Ordering::Relaxed));
        let (tx, mut rx) = mpsc::channel::<ServerMsg>(OUTBOX);
        {
            let mut shared = self.lock();
            shared.core.connect(peer);
            shared.outboxes.insert(peer, tx);
        }
        let (mut sink, mut stream) = socket.split();
        let mut writer = tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                let text = serde_json::to_string(&msg).expect("ServerMsg always serialises");
                if sink.send(WsMessage::Text(text.into())).await.is_err() {
                    return;
                }
            }
            let _ = sink.send(WsMessage::Close(None)).await;
        });
        let mut shutdown = self.shutdown.clone();
        let mut limit = RateLimit::new(self.config.frame_burst, self.config.frame_rate, now_ms());
        let mut writer_done = false;
        loop {
            tokio::select! {
                frame = stream.next() => {
                    let text = match frame {
                        Some(Ok(WsMessage::Text(t))) => t,
                        Some(Ok(WsMessage::Binary(_))) => {
                            self.reply(peer, RelayError::BadFrame("binary frames are not used".into()).into());
                            continue;
                        }
                        Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                        Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
                    };
                    if !limit.allow(now_ms()) {
                        self.reply(peer, RelayError::RateLimited.into());
                        continue;
                    }
                    if let Err(e) = self.handle_text(peer, &caller, text.as_str()).await {
                        // Without a good hello there is nothing more to say: close.
                        let close = matches!(e, RelayError::NoHello | RelayError::BadVersion(_));
                        self.reply(peer, e.into());
                        if close {
                            break;
                        }
                    }
                }
                _ = &mut writer => {
                    writer_done = true;
                    break;
                }
                () = stopped(&mut shutdown) => break,
            }
        }
        let ended = {
            // Dropping the outbox ends the writer after it flushed what was queued.
            let mut shared = self.lock();
            shared.outboxes.remove(&peer);
            shared.core.disconnect(peer, now_ms())
        };
        self.calls_ended(ended).await;
        if !writer_done {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
        }
    }

    async fn handle_text(
        &self,
        peer: PeerId,
        caller: &Caller,
        text: &str,
    ) -> Result<(), RelayError> {
        if text.len() > MAX_FRAME_BYTES {
            return Err(RelayError::TooLarge(text.len()));
        }
        let msg: ClientMsg =
            serde_json::from_str(text).map_err(|e| RelayError::BadFrame(e.to_string()))?;
        self.handle(peer, caller, msg).await
    }

    /// Handles one parsed frame from `peer`.
    async fn handle(
        &self,
        peer: PeerId,
        caller: &Caller,
        msg: ClientMsg,
    ) -> Result<(), RelayError> {
        let said_hello = self.with_core(|c| c.role(peer).is_some());
        match msg {
            ClientMsg::Hello { protocol, token } => {
                if said_hello {
                    return Err(RelayError::NoHello);
                }
                if protocol != PROTOCOL_VERSION {
                    return Err(RelayError::BadVersion(protocol));
                }
                self.hello(peer, caller, token).await?;
            }
            _ if !said_hello => return Err(RelayError::NoHello),
            ClientMsg::Join {
                conversation,
                after_seq,
            } => self.join(peer, conversation, after_seq).await?,
            ClientMsg::Chat {
                conversation,
                client_id,
                text,
            } => self.chat(peer, conversation, client_id, text).await?,
            ClientMsg::Take { conversation } => {
                let meta = self.meta(&conversation).await?;
                let me = self.with_core(|c| c.may_take(peer, &meta))?;
                self.take(&meta, me).await?;
            }
            ClientMsg::Read { conversation, seq } => {
                let meta = self.meta(&conversation).await?;
                let agent = match self
                    .with_core(|c| c.may_read(peer, &meta).map(|_| c.role(peer).cloned()))?
                {
                    Some(Role::Agent { agent, .. }) => agent,
                    _ => return Err(RelayError::Forbidden("only agents keep read marks")),
                };
                self.db(move |s| s.mark_read(&agent.id, &conversation, seq))
                    .await?;
            }
            ClientMsg::Call {
                conversation,
                action,
            } => self.call(peer, conversation, action).await?,
            ClientMsg::Signal {
                conversation,
                payload,
            } => {
                let to = self.with_core(|c| c.signal_target(peer, &conversation))?;
                self.reply(
                    to,
                    ServerMsg::Signal {
                        conversation,
                        payload,
                    },
                );
            }
            ClientMsg::Ping => self.reply(peer, ServerMsg::Pong),
        }
        Ok(())
    }

    async fn hello(
        &self,
        peer: PeerId,
        caller: &Caller,
        token: Option<VisitorToken>,
    ) -> Result<(), RelayError> {
        match caller {
            Caller::Visitor(site) => {
                let key = site.key.clone();
                let (token, conversation) = self
                    .db(move |s| {
                        if let Some(t) = token {
                            if let Some(c) =
                                s.visitor_conversation(&key, &secrets::token_hash(&t.0))?
                            {
                                return Ok((t, c));
                            }
                        }
                        let t = VisitorToken(secrets::random_token());
                        let c = s.add_visitor(&key, &secrets::token_hash(&t.0), now_ms())?;
                        Ok((t, c))
                    })
                    .await?;
                let meta = self.meta(&conversation).await?;
                self.with_core(|c| {
                    c.identify(
                        peer,
                        Role::Visitor {
                            site: site.key.clone(),
                            conversation: conversation.clone(),
                        },
                    )
                });
                self.reply(
                    peer,
                    ServerMsg::WelcomeVisitor {
                        token,
                        conversation,
                        site_name: site.name.clone(),
                        agent_name: meta.agent.map(|a| a.name),
                        media: self.media_config(&format!("v{}", peer.0)),
                    },
                );
            }
            Caller::Agent(agent) => {
                let (scope, id) = (agent.scope.clone(), agent.agent.id.clone());
                let (conversations, read) = self
                    .db(move |s| Ok((s.summaries(&scope, 500)?, s.read_marks(&id)?)))
                    .await?;
                self.with_core(|c| {
                    c.identify(
                        peer,
                        Role::Agent {
                            agent: agent.agent.clone(),
                            scope: agent.scope.clone(),
                        },
                    )
                });
                self.reply(
                    peer,
                    ServerMsg::WelcomeAgent {
                        agent: agent.agent.clone(),
                        conversations,
                        read,
                        media: self.media_config(&format!("a{}", peer.0)),
                    },
                );
            }
        }
        Ok(())
    }

    async fn meta(&self, id: &ConversationId) -> Result<ConversationMeta, RelayError> {
        let id = id.clone();
        self.db(move |s| s.conversation(&id))
            .await?
            .ok_or(RelayError::NotFound)
    }

    async fn join(
        &self,
        peer: PeerId,
        conversation: ConversationId,
        after_seq: u64,
    ) -> Result<(), RelayError> {
        let meta = self.meta(&conversation).await?;
        let _log = self.log.lock().await;
        self.with_core(|c| c.join(peer, &meta))?;
        let mut after = after_seq;
        loop {
            let id = conversation.clone();
            let messages = self
                .db(move |s| s.messages_after(&id, after, HISTORY_PAGE))
                .await?;
            let full_page = messages.len() == HISTORY_PAGE as usize;
            after = messages.last().map_or(after, |m| m.seq);
            self.reply(
                peer,
                ServerMsg::History {
                    conversation: conversation.clone(),
                    messages,
                },
            );
            if !full_page {
                // And the call, if there is one, so a late joiner knows.
                self.reply(peer, self.with_core(|c| c.call_msg(&conversation, peer)));
                return Ok(());
            }
        }
    }

    async fn chat(
        &self,
        peer: PeerId,
        conversation: ConversationId,
        client_id: ClientMsgId,
        text: String,
    ) -> Result<(), RelayError> {
        check_text(&text).map_err(RelayError::BadText)?;
        let mut meta = self.meta(&conversation).await?;
        let role = self
            .with_core(|c| c.role(peer).cloned())
            .ok_or(RelayError::NoHello)?;
        let (author, author_name) = self.author_for(&role, &mut meta).await?;
        let msg = NewMessage {
            conversation,
            client_id: Some(client_id),
            author,
            author_name,
            text,
            attachment: None,
            at: now_ms(),
        };
        self.post(&meta, msg, Some(peer)).await.map(drop)
    }

    /// Who `role` writes as in `meta`, after the checks; an agent writing into a waiting
    /// conversation takes it first.
    async fn author_for(
        &self,
        role: &Role,
        meta: &mut ConversationMeta,
    ) -> Result<(Author, Option<String>), RelayError> {
        self.take_if_waiting(role, meta).await?;
        match role {
            Role::Agent { agent, .. } => Ok((Author::Agent, Some(agent.name.clone()))),
            Role::Visitor { .. } => {
                role.may_read(meta)?;
                Ok((Author::Visitor, None))
            }
        }
    }

    /// An agent acting in a waiting conversation (replying, uploading, calling) takes it
    /// first; `meta` then names them. Another agent's conversation is refused. No-op for
    /// visitors.
    async fn take_if_waiting(
        &self,
        role: &Role,
        meta: &mut ConversationMeta,
    ) -> Result<(), RelayError> {
        if let Role::Agent { agent, .. } = role {
            if role.agent_post(meta)? == AgentPost::TakesIt {
                self.take(meta, agent.clone()).await?;
                meta.agent = Some(agent.clone());
            }
        }
        Ok(())
    }

    /// Whether `role` may post into `conversation` (checked before an upload is read).
    pub async fn may_post(
        &self,
        role: &Role,
        conversation: &ConversationId,
    ) -> Result<(), RelayError> {
        let meta = self.meta(conversation).await?;
        match role {
            Role::Agent { .. } => role.agent_post(&meta).map(|_| ()),
            Role::Visitor { .. } => role.may_read(&meta),
        }
    }

    /// Whether `role` may read `conversation` (for downloads).
    pub async fn may_read(
        &self,
        role: &Role,
        conversation: &ConversationId,
    ) -> Result<(), RelayError> {
        role.may_read(&self.meta(conversation).await?)
    }

    /// Records an uploaded file (already on disk) and posts it into the conversation as a
    /// message whose text is the file's name.
    pub async fn post_file(
        &self,
        role: &Role,
        conversation: &ConversationId,
        file: Attachment,
        client_id: Option<ClientMsgId>,
    ) -> Result<Message, RelayError> {
        let mut meta = self.meta(conversation).await?;
        let (author, author_name) = self.author_for(role, &mut meta).await?;
        let (id, record) = (meta.id.clone(), file.clone());
        self.db(move |s| s.add_file(&id, &record, now_ms())).await?;
        let msg = NewMessage {
            conversation: meta.id.clone(),
            client_id,
            author,
            author_name,
            text: file.name.clone(),
            attachment: Some(file),
            at: now_ms(),
        };
        self.post(&meta, msg, None).await
    }

    /// Stores `msg`, acknowledges it to `sender` after the commit, and tells everyone concerned
    /// (unless it was a resend of something already stored, which only gets the ack again).
    async fn post(
        &self,
        meta: &ConversationMeta,
        msg: NewMessage,
        sender: Option<PeerId>,
    ) -> Result<Message, RelayError> {
        let _log = self.log.lock().await;
        let id = meta.id.clone();
        let (stored, fresh, summary) = self
            .db(move |s| {
                let (stored, fresh) = s.append(msg)?;
                let summary = if fresh { s.summary(&id)? } else { None };
                Ok((stored, fresh, summary))
            })
            .await?;
        if let (Some(peer), Some(client_id)) = (sender, &stored.client_id) {
            self.reply(
                peer,
                ServerMsg::Ack {
                    conversation: stored.conversation.clone(),
                    client_id: client_id.clone(),
                    seq: stored.seq,
                },
            );
        }
        if fresh {
            let out = self.with_core(|c| {
                let mut out = c.to_joined(&meta.id, &ServerMsg::Message(stored.clone()));
                if let Some(summary) = summary {
                    out.extend(c.to_site_agents(&meta.site, &ServerMsg::Conversation(summary)));
                }
                out
            });
            self.deliver(out);
        }
        Ok(stored)
    }

    async fn call(
        &self,
        peer: PeerId,
        conversation: ConversationId,
        action: CallAction,
    ) -> Result<(), RelayError> {
        let mut meta = self.meta(&conversation).await?;
        let role = self
            .with_core(|c| c.role(peer).cloned())
            .ok_or(RelayError::NoHello)?;
        self.take_if_waiting(&role, &mut meta).await?;
        let note = self.with_core(|c| c.call_action(now_ms(), peer, &meta, action))?;
        self.deliver(self.with_core(|c| c.call_updates(&meta.id)));
        if let Some(note) = note {
            self.post(&meta, system_note(&meta.id, note), None).await?;
        }
        Ok(())
    }

    /// Assigns `meta` to `agent` (first come, first served), records it in the conversation and
    /// tells the visitor and the site's agents.
    async fn take(
        &self,
        meta: &ConversationMeta,
        agent: escalera_protocol::AgentRef,
    ) -> Result<(), RelayError> {
        if meta.agent.as_ref().is_some_and(|a| a.id == agent.id) {
            return Ok(());
        }
        let (id, agent_id) = (meta.id.clone(), agent.id.clone());
        let won = self.db(move |s| s.assign(&id, &agent_id)).await?;
        if !won {
            let now = self.meta(&meta.id).await?;
            let name = now
                .agent
                .map_or_else(|| "Another agent".to_owned(), |a| a.name);
            return Err(RelayError::AlreadyTaken(name));
        }
        let joined = ServerMsg::AgentJoined {
            conversation: meta.id.clone(),
            agent_name: agent.name.clone(),
        };
        self.deliver(self.with_core(|c| c.to_visitors(&meta.id, &joined)));
        let note = system_note(&meta.id, format!("{} joined the conversation", agent.name));
        let assigned = ConversationMeta {
            agent: Some(agent),
            ..meta.clone()
        };
        self.post(&assigned, note, None).await.map(drop)
    }
}

/// A system message for the record.
fn system_note(conversation: &ConversationId, text: String) -> NewMessage {
    NewMessage {
        conversation: conversation.clone(),
        client_id: None,
        author: Author::System,
        author_name: None,
        text,
        attachment: None,
        at: now_ms(),
    }
}

/// Resolves once the relay shuts down.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|down| *down).await;
}
