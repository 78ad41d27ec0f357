//! Talking to the host page around the iframe, by `postMessage` only, with the host's exact
//! origin (given to us in the URL by widget.js and checked by the relay's `frame-ancestors`).

use escalera_protocol::Identity;
use leptos::prelude::*;
use wasm_bindgen::prelude::*;
use web_sys::MessageEvent;

use crate::browser::window;

/// The host page's address, title and referrer, as widget.js says.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostPage {
    /// `location.href`.
    pub url: String,
    /// `document.title`.
    pub title: String,
    /// `document.referrer`.
    pub referrer: String,
}

/// What the agent's side panel shows of this visitor: the host page, and what the browser
/// says of its language, time zone and itself.
pub fn visitor_info(page: HostPage) -> escalera_protocol::VisitorInfo {
    let nav = window().navigator();
    let time_zone = js_sys::Reflect::get(
        &js_sys::Intl::DateTimeFormat::new(&js_sys::Array::new(), &js_sys::Object::new())
            .resolved_options(),
        &"timeZone".into(),
    )
    .ok()
    .and_then(|v| v.as_string())
    .unwrap_or_default();
    escalera_protocol::VisitorInfo {
        page: page.url,
        title: page.title,
        referrer: page.referrer,
        language: nav.language().unwrap_or_default(),
        time_zone,
        utc_offset_minutes: -(js_sys::Date::new_0().get_timezone_offset() as i32),
        user_agent: nav.user_agent().unwrap_or_default(),
    }
    .bounded()
}

/// The host page, if we are framed by one.
#[derive(Clone, Copy)]
pub struct Host {
    origin: StoredValue<Option<String>>,
    /// Whether the host shows the widget (the launcher is open).
    pub open: ReadSignal<bool>,
    /// Where the visitor is on the host site (updated as they navigate).
    pub page: ReadSignal<Option<HostPage>>,
    /// The host page asked to forget the visitor (`Escalera.logout()`).
    pub logout: ReadSignal<bool>,
    /// Who the host page says its logged-in user is (`Escalera.identify`): `None` until it
    /// has said (not framed: at once, nobody).
    pub identity: ReadSignal<Option<Option<Identity>>>,
}

impl Host {
    /// Tells the host page a message came from the other side (its `Escalera.on('message')`).
    pub fn message(&self, author: &str, name: Option<&str>, text: &str) {
        self.post_with("escalera:message", |msg| {
            let _ = js_sys::Reflect::set(msg, &"author".into(), &author.into());
            let _ = js_sys::Reflect::set(msg, &"name".into(), &name.unwrap_or_default().into());
            let _ = js_sys::Reflect::set(msg, &"text".into(), &text.into());
        });
    }

    /// Posts `{type, count?}` to the host page, to its exact origin only.
    fn post(&self, kind: &str, count: Option<usize>) {
        self.post_with(kind, |msg| {
            if let Some(n) = count {
                let _ = js_sys::Reflect::set(msg, &"count".into(), &JsValue::from(n as u32));
            }
        });
    }

    /// Posts `{type, ...}` (what `fill` adds) to the host page, to its exact origin only.
    fn post_with(&self, kind: &str, fill: impl FnOnce(&js_sys::Object)) {
        let Some(origin) = self.origin.get_value() else {
            return;
        };
        let Ok(Some(parent)) = window().parent() else {
            return;
        };
        let msg = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&msg, &"type".into(), &kind.into());
        fill(&msg);
        let _ = parent.post_message(&msg, &origin);
    }

    /// Asks the host to close the widget.
    pub fn close(&self) {
        self.post("escalera:close", None);
    }

    /// Tells the host the launcher's colour and corner (the site's, live as its owner
    /// changes them).
    pub fn look(&self, look: &escalera_protocol::SiteLook) {
        let side = match look.position {
            escalera_protocol::Corner::Left => "left",
            escalera_protocol::Corner::Right => "right",
        };
        self.post_with("escalera:look", |msg| {
            let _ = js_sys::Reflect::set(msg, &"color".into(), &look.color.as_str().into());
            let _ = js_sys::Reflect::set(msg, &"position".into(), &side.into());
        });
    }

    /// Tells the host how many agent messages the visitor has not seen.
    pub fn unread(&self, count: usize) {
        self.post("escalera:unread", Some(count));
    }
}

/// Listens to the host page (origin from `?origin=`); not framed, the widget counts as open.
pub fn use_host() -> Host {
    let origin = crate::browser::query_param("origin");
    let framed = origin.is_some() && window().parent().ok().flatten().is_some();
    let (open, set_open) = signal(!framed);
    let (page, set_page) = signal(None::<HostPage>);
    let (logout, set_logout) = signal(false);
    let (identity, set_identity) = signal((!framed).then_some(None::<Identity>));
    let host = Host {
        origin: StoredValue::new(origin.clone()),
        open,
        page,
        logout,
        identity,
    };
    if framed {
        let expected = origin;
        let listener = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if Some(e.origin()) != expected {
                return;
            }
            let data = e.data();
            let kind = js_sys::Reflect::get(&data, &"type".into())
                .ok()
                .and_then(|v| v.as_string());
            let text = |key: &str| {
                js_sys::Reflect::get(&data, &key.into())
                    .ok()
                    .and_then(|v| v.as_string())
                    .unwrap_or_default()
            };
            if kind.as_deref() == Some("escalera:identity") {
                // `{id, name?, email?, hash}` or null; anything unreadable counts as nobody.
                let said = js_sys::Reflect::get(&data, &"identity".into())
                    .ok()
                    .and_then(|v| js_sys::JSON::stringify(&v).ok())
                    .and_then(|j| j.as_string())
                    .and_then(|j| serde_json::from_str::<Option<Identity>>(&j).ok())
                    .flatten();
                if identity.get_untracked() != Some(said.clone()) {
                    set_identity.set(Some(said));
                }
            }
            if kind.as_deref() == Some("escalera:logout") {
                set_logout.set(true);
            }
            if kind.as_deref() == Some("escalera:page") {
                set_page.set(Some(HostPage {
                    url: text("url"),
                    title: text("title"),
                    referrer: text("referrer"),
                }));
            }
            if kind.as_deref() == Some("escalera:open") {
                let v = js_sys::Reflect::get(&data, &"open".into())
                    .ok()
                    .and_then(|v| v.as_bool());
                set_open.set(v.unwrap_or(true));
            }
        });
        let _ =
            window().add_event_listener_with_callback("message", listener.as_ref().unchecked_ref());
        let listener = StoredValue::new_local(Some(listener));
        // Listening now: ask the host whether we are shown (a message sent before this point,
        // e.g. on the iframe's load event, could have been lost).
        host.post("escalera:ready", None);
        // A loader from before `identify` (cached for up to 5 minutes after an upgrade) never
        // says who the user is: after 2 s the chat starts anonymous.
        let fallback = gloo_timers::callback::Timeout::new(2_000, move || {
            if identity.try_get_untracked() == Some(None) {
                set_identity.set(Some(None));
            }
        });
        let fallback = StoredValue::new_local(Some(fallback));
        on_cleanup(move || {
            fallback.try_update_value(Option::take);
        });
        on_cleanup(move || {
            if let Some(l) = listener.try_update_value(Option::take).flatten() {
                let _ = window()
                    .remove_event_listener_with_callback("message", l.as_ref().unchecked_ref());
            }
        });
    }
    host
}
