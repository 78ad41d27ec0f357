//! Talking to the host page around the iframe, by `postMessage` only, with the host's exact
//! origin (given to us in the URL by widget.js and checked by the relay's `frame-ancestors`).

use leptos::prelude::*;
use wasm_bindgen::prelude::*;
use web_sys::MessageEvent;

use crate::browser::window;

/// The host page, if we are framed by one.
#[derive(Clone, Copy)]
pub struct Host {
    origin: StoredValue<Option<String>>,
    /// Whether the host shows the widget (the launcher is open).
    pub open: ReadSignal<bool>,
}

impl Host {
    fn post(&self, msg: &serde_json::Value) {
        let Some(origin) = self.origin.get_value() else {
            return;
        };
        let Ok(Some(parent)) = window().parent() else {
            return;
        };
        if let Ok(value) = serde_wasm(msg) {
            let _ = parent.post_message(&value, &origin);
        }
    }

    /// Asks the host to close the widget.
    pub fn close(&self) {
        self.post(&serde_json::json!({ "type": "escalera:close" }));
    }

    /// Tells the host how many agent messages the visitor has not seen.
    pub fn unread(&self, count: usize) {
        self.post(&serde_json::json!({ "type": "escalera:unread", "count": count }));
    }
}

fn serde_wasm(v: &serde_json::Value) -> Result<JsValue, JsValue> {
    js_sys::JSON::parse(&v.to_string())
}

/// Listens to the host page (origin from `?origin=`); not framed, the widget counts as open.
pub fn use_host() -> Host {
    let origin = crate::browser::query_param("origin");
    let framed = origin.is_some() && window().parent().ok().flatten().is_some();
    let (open, set_open) = signal(!framed);
    if framed {
        let expected = origin.clone();
        let listener = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if Some(e.origin()) != expected {
                return;
            }
            let data = e.data();
            let kind = js_sys::Reflect::get(&data, &"type".into())
                .ok()
                .and_then(|v| v.as_string());
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
        on_cleanup(move || {
            if let Some(l) = listener.try_update_value(Option::take).flatten() {
                let _ = window()
                    .remove_event_listener_with_callback("message", l.as_ref().unchecked_ref());
            }
        });
    }
    Host {
        origin: StoredValue::new(origin),
        open,
    }
}
