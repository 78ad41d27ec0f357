//! The WebSocket to the relay, behind a hook: connects, says hello, reconnects by itself with
//! backoff, and reports whether it is online. Everything received is handed, parsed, to the
//! caller; everything sent is a [`ClientMsg`].

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use escalera_protocol::{ClientMsg, ServerMsg};
use leptos::prelude::*;
use wasm_bindgen::prelude::*;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

/// Where the connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// First attempt under way.
    Connecting,
    /// Open.
    Online,
    /// Lost; retrying after a pause.
    Offline,
}

struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Socket {
    /// Closes the socket for good. Its handlers are detached first: the browser fires `close`
    /// (and may still deliver a message) after this, when the closures are already dropped.
    fn shut(self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

struct Inner {
    url: String,
    socket: RefCell<Option<Socket>>,
    /// The pending reconnection, cancelled by dropping it.
    retry: RefCell<Option<gloo_timers::callback::Timeout>>,
    failures: Cell<u32>,
    disposed: Cell<bool>,
    status: RwSignal<Status>,
    on_open: Box<dyn Fn(Sender<'_>)>,
    decode: crate::frames::Decode,
    on_message: Box<dyn Fn(ServerMsg)>,
}

/// What `on_open` gets to say hello with.
pub struct Sender<'a>(&'a Inner);

impl Sender<'_> {
    /// Sends a message; `false` if the socket is not open.
    pub fn send(&self, msg: &ClientMsg) -> bool {
        send(self.0, msg)
    }
}

fn send(inner: &Inner, msg: &ClientMsg) -> bool {
    let text = serde_json::to_string(msg).expect("ClientMsg always serialises");
    inner
        .socket
        .borrow()
        .as_ref()
        .filter(|s| s.ws.ready_state() == WebSocket::OPEN)
        .is_some_and(|s| s.ws.send_with_str(&text).is_ok())
}

/// A handle to the connection; `Copy`, so it can go anywhere in the view.
#[derive(Clone, Copy)]
pub struct RelaySocket {
    inner: StoredValue<Rc<Inner>, LocalStorage>,
    /// Online or not, for the view.
    pub status: ReadSignal<Status>,
}

impl RelaySocket {
    /// Sends a message; `false` if the socket is not open (the caller keeps it to resend).
    pub fn send(&self, msg: &ClientMsg) -> bool {
        // After the owner is gone (a late timer) there is nothing to send on.
        self.inner
            .try_with_value(|inner| send(inner, msg))
            .unwrap_or(false)
    }
}

/// Opens a connection to `path` (e.g. `/ws/agent`) on the page's host. `on_open` runs on every
/// (re)connection, to say hello; `on_message` gets every frame, as `decode` reads it. Closed
/// when the owner is disposed.
pub fn use_relay_socket(
    path: &str,
    decode: crate::frames::Decode,
    on_open: impl Fn(Sender<'_>) + 'static,
    on_message: impl Fn(ServerMsg) + 'static,
) -> RelaySocket {
    let status = RwSignal::new(Status::Connecting);
    let inner = Rc::new(Inner {
        url: crate::browser::socket_url(path),
        socket: RefCell::new(None),
        retry: RefCell::new(None),
        failures: Cell::new(0),
        disposed: Cell::new(false),
        status,
        on_open: Box::new(on_open),
        decode,
        on_message: Box::new(on_message),
    });
    connect(inner.clone());
    let stored = StoredValue::new_local(inner);
    on_cleanup(move || {
        stored.with_value(|inner| {
            inner.disposed.set(true);
            inner.retry.borrow_mut().take();
            if let Some(s) = inner.socket.borrow_mut().take() {
                s.shut();
            }
        })
    });
    RelaySocket {
        inner: stored,
        status: status.read_only(),
    }
}

/// Backoff before the next attempt: 0.5 s doubling to 10 s, with jitter so a relay restart
/// is not met by every client at once.
fn backoff_ms(failures: u32) -> u32 {
    let base = 500u32.saturating_mul(1 << failures.min(5)).min(10_000);
    base / 2 + (js_sys::Math::random() * f64::from(base / 2)) as u32
}

fn connect(inner: Rc<Inner>) {
    if inner.disposed.get() {
        return;
    }
    let Ok(ws) = WebSocket::new(&inner.url) else {
        schedule_retry(inner);
        return;
    };
    let on_open = {
        let inner = inner.clone();
        Closure::<dyn FnMut()>::new(move || {
            inner.failures.set(0);
            inner.status.set(Status::Online);
            (inner.on_open)(Sender(&inner));
        })
    };
    let on_message = {
        let inner = inner.clone();
        Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            let Some(text) = e.data().as_string() else {
                return;
            };
            match (inner.decode)(&text) {
                Ok(msg) => (inner.on_message)(msg),
                Err(err) => leptos::logging::warn!("unreadable frame from the relay: {err}"),
            }
        })
    };
    let on_close = {
        let inner = inner.clone();
        Closure::<dyn FnMut(CloseEvent)>::new(move |_: CloseEvent| {
            if inner.disposed.get() {
                return;
            }
            inner.status.set(Status::Offline);
            inner.failures.set(inner.failures.get() + 1);
            schedule_retry(inner.clone());
        })
    };
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    let old = inner.socket.borrow_mut().replace(Socket {
        ws,
        _on_open: on_open,
        _on_message: on_message,
        _on_close: on_close,
    });
    if let Some(old) = old {
        old.shut();
    }
}

fn schedule_retry(inner: Rc<Inner>) {
    let delay = backoff_ms(inner.failures.get());
    let timer = {
        let inner = inner.clone();
        gloo_timers::callback::Timeout::new(delay, move || {
            inner.retry.borrow_mut().take();
            connect(inner.clone());
        })
    };
    inner.retry.borrow_mut().replace(timer);
}
