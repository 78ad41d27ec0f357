//! The conversation layer shared by the widget and the console: one socket to the relay, the
//! conversations' threads with their outbox, and one dispatcher that the rest (the chat, the
//! call controller, the console's list) subscribe to.
//!
//! What a connection has joined is forgotten when it drops; joining again after a reconnect
//! asks history after the last seq held and resends every unacknowledged message, so a reply
//! typed offline is delivered once when the relay is back.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;

use escalera_protocol::{ClientMsg, ClientMsgId, ConversationId, ErrorCode, ServerMsg};
use leptos::prelude::*;

use crate::chat::{Pending, Threads};
use crate::relay::{use_relay_socket, RelaySocket, Status};

type Subscriber = Rc<dyn Fn(&ServerMsg)>;

struct Shared {
    subscribers: RefCell<Vec<Subscriber>>,
    /// Conversations joined on the current connection.
    joined: RefCell<HashSet<ConversationId>>,
    /// The socket, once made (retries send on it).
    socket: Cell<Option<RelaySocket>>,
    /// Chat messages refused for the moment, to send again when `retry` fires (dropped, and
    /// so cancelled, with the link).
    later: RefCell<Vec<(ConversationId, ClientMsgId)>>,
    retry: RefCell<Option<gloo_timers::callback::Timeout>>,
}

/// A handle to the layer; `Copy`, so it can go anywhere in the view.
#[derive(Clone, Copy)]
pub struct Link {
    /// The socket (for frames that are not chat).
    pub socket: RelaySocket,
    /// Every conversation's messages and outbox.
    pub threads: RwSignal<Threads>,
    shared: StoredValue<Rc<Shared>, LocalStorage>,
}

/// Connects to `path` (e.g. `/ws/agent`), reading frames with `decode`; `hello` makes the first
/// frame of each connection.
pub fn use_link(
    path: &str,
    decode: crate::frames::Decode,
    hello: impl Fn() -> ClientMsg + 'static,
) -> Link {
    let threads = RwSignal::new(Threads::default());
    let shared = Rc::new(Shared {
        subscribers: RefCell::new(Vec::new()),
        joined: RefCell::new(HashSet::new()),
        socket: Cell::new(None),
        later: RefCell::new(Vec::new()),
        retry: RefCell::new(None),
    });
    let socket = {
        let on_open = shared.clone();
        let on_message = shared.clone();
        use_relay_socket(
            path,
            decode,
            move |tx| {
                on_open.joined.borrow_mut().clear();
                tx.send(&hello());
            },
            move |msg| {
                // Watchers are notified only when the threads really changed.
                threads.maybe_update(|t| t.apply(&msg));
                if let ServerMsg::Error {
                    code,
                    conversation: Some(conversation),
                    client_id: Some(client_id),
                    ..
                } = &msg
                {
                    refused(&on_message, threads, *code, conversation, client_id);
                }
                // A subscriber may subscribe another; dispatch to the ones known now.
                let subscribers = on_message.subscribers.borrow().clone();
                for s in subscribers {
                    s(&msg);
                }
            },
        )
    };
    shared.socket.set(Some(socket));
    let shared = StoredValue::new_local(shared);
    // The pending retry holds the layer: it goes with the owner.
    on_cleanup(move || {
        shared.try_with_value(|s| s.retry.borrow_mut().take());
    });
    Link {
        socket,
        threads,
        shared,
    }
}

/// How long a chat message refused for the moment (too fast, or a store failure) waits before
/// it is sent again.
const RETRY_MS: u32 = 1_500;

/// The relay refused one of our chat messages. Refused for now (too fast, a store failure, or
/// a limit such as new conversations from one network, which clears over time): it is sent
/// again after a pause (if its conversation is still joined then), so nothing typed is lost.
/// Refused for good (too long, not allowed): it leaves the outbox; the error itself tells the
/// person why.
fn refused(
    shared: &Rc<Shared>,
    threads: RwSignal<Threads>,
    code: ErrorCode,
    conversation: &ConversationId,
    client_id: &ClientMsgId,
) {
    if !matches!(
        code,
        ErrorCode::RateLimited | ErrorCode::Internal | ErrorCode::LimitReached
    ) {
        threads.update(|t| {
            t.refused(conversation, client_id);
        });
        return;
    }
    shared
        .later
        .borrow_mut()
        .push((conversation.clone(), client_id.clone()));
    if shared.retry.borrow().is_some() {
        return;
    }
    let again = shared.clone();
    let timer = gloo_timers::callback::Timeout::new(RETRY_MS, move || {
        again.retry.borrow_mut().take();
        let later = std::mem::take(&mut *again.later.borrow_mut());
        let Some(socket) = again.socket.get() else {
            return;
        };
        for (conversation, client_id) in later {
            if !again.joined.borrow().contains(&conversation) {
                continue; // the next join resends it
            }
            let frame = threads
                .try_with_untracked(|t| t.resend(&conversation, &client_id))
                .flatten();
            if let Some(frame) = frame {
                socket.send(&frame);
            }
        }
    });
    shared.retry.borrow_mut().replace(timer);
}

impl Link {
    /// Calls `f` with every frame from the relay, after the threads have taken theirs in.
    pub fn subscribe(&self, f: impl Fn(&ServerMsg) + 'static) {
        self.shared
            .with_value(|s| s.subscribers.borrow_mut().push(Rc::new(f)));
    }

    /// Whether the socket is up.
    pub fn status(&self) -> Status {
        self.socket.status.get()
    }

    /// Follows `id` on this connection (once): history after what we hold, then live, and
    /// whatever of ours it has not acknowledged yet.
    pub fn join(&self, id: &ConversationId) {
        let fresh = self
            .shared
            .with_value(|s| s.joined.borrow_mut().insert(id.clone()));
        if !fresh {
            return;
        }
        for msg in self.threads.with_untracked(|t| t.rejoin(id)) {
            if !self.socket.send(&msg) {
                // The socket went away meanwhile: the next connection joins again.
                self.shared.with_value(|s| s.joined.borrow_mut().remove(id));
                return;
            }
        }
    }

    /// Whether `id` is joined on the current connection.
    pub fn joined(&self, id: &ConversationId) -> bool {
        self.shared.with_value(|s| s.joined.borrow().contains(id))
    }

    /// Sends a chat message: it shows as "Sending…" at once and stays in the outbox until the
    /// relay acknowledges it. Offline, or before `id` is joined, it waits for the join.
    pub fn chat(&self, id: &ConversationId, text: String) {
        self.post(id, text, false);
    }

    /// Sends an agent's private note (like [`Link::chat`]: kept until acknowledged).
    pub fn note(&self, id: &ConversationId, text: String) {
        self.post(id, text, true);
    }

    fn post(&self, id: &ConversationId, text: String, note: bool) {
        let pending = Pending {
            client_id: ClientMsgId(crate::browser::random_id()),
            text,
            note,
        };
        let mut frame = None;
        self.threads.update(|t| frame = Some(t.queue(id, pending)));
        if let Some(frame) = frame.filter(|_| self.joined(id)) {
            self.socket.send(&frame);
        }
    }
}
