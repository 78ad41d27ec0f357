//! Small wrappers over the browser's APIs that the rest of the client shares.

use wasm_bindgen::{JsCast, JsValue};

/// The page's `window`.
pub fn window() -> web_sys::Window {
    web_sys::window().expect("running in a browser window")
}

/// The page's `localStorage`, if the browser lets us have it.
fn storage() -> Option<web_sys::Storage> {
    window().local_storage().ok().flatten()
}

/// A value from `localStorage`.
pub fn load(key: &str) -> Option<String> {
    storage()?.get_item(key).ok().flatten()
}

/// Saves a value in `localStorage` (best effort: private modes may refuse).
pub fn save(key: &str, value: &str) {
    if let Some(s) = storage() {
        let _ = s.set_item(key, value);
    }
}

/// Removes a value from `localStorage`.
pub fn remove(key: &str) {
    if let Some(s) = storage() {
        let _ = s.remove_item(key);
    }
}

/// A random v4 UUID from the browser's CSPRNG, for client message ids.
pub fn random_id() -> String {
    window()
        .crypto()
        .map(|c| c.random_uuid())
        .unwrap_or_else(|_| format!("{}-{}", js_sys::Date::now(), js_sys::Math::random()))
}

/// A query parameter of the page's URL.
pub fn query_param(name: &str) -> Option<String> {
    let search = window().location().search().ok()?;
    let params = web_sys::UrlSearchParams::new_with_str(&search).ok()?;
    params.get(name)
}

/// `ws://` or `wss://` URL for a path on this page's host.
pub fn socket_url(path_and_query: &str) -> String {
    let loc = window().location();
    let scheme = if loc.protocol().ok().as_deref() == Some("https:") {
        "wss"
    } else {
        "ws"
    };
    format!(
        "{scheme}://{}{path_and_query}",
        loc.host().unwrap_or_default()
    )
}

/// The result of a JSON fetch: status and body text.
pub struct Fetched {
    /// HTTP status.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

/// `fetch(path)` with cookies, optionally POSTing a JSON body.
pub async fn fetch(method: &str, path: &str, json: Option<String>) -> Result<Fetched, String> {
    fetch_inner(method, path, json, None).await
}

/// `fetch(path)` with `Authorization: Bearer <token>`.
pub async fn fetch_with_bearer(method: &str, path: &str, token: &str) -> Result<Fetched, String> {
    fetch_inner(method, path, None, Some(token)).await
}

async fn fetch_inner(
    method: &str,
    path: &str,
    json: Option<String>,
    bearer: Option<&str>,
) -> Result<Fetched, String> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    init.set_credentials(web_sys::RequestCredentials::SameOrigin);
    let headers = web_sys::Headers::new().map_err(js_err)?;
    if let Some(token) = bearer {
        headers
            .set("authorization", &format!("Bearer {token}"))
            .map_err(js_err)?;
    }
    if let Some(body) = json {
        headers
            .set("content-type", "application/json")
            .map_err(js_err)?;
        init.set_body(&JsValue::from_str(&body));
    }
    init.set_headers(&headers);
    let promise = window().fetch_with_str_and_init(path, &init);
    let res: web_sys::Response = wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(|_| {
            crate::i18n::t("The server cannot be reached. Check your connection.").to_owned()
        })?
        .unchecked_into();
    let text = wasm_bindgen_futures::JsFuture::from(res.text().map_err(js_err)?)
        .await
        .map_err(js_err)?;
    Ok(Fetched {
        status: res.status(),
        body: text.as_string().unwrap_or_default(),
    })
}

fn js_err(e: JsValue) -> String {
    format!("{e:?}")
}

/// Whether this tab is in the background (another tab, a minimised window).
pub fn tab_hidden() -> bool {
    window()
        .document()
        .is_some_and(|d| d.visibility_state() != web_sys::VisibilityState::Visible)
}

/// A rule's reason as a sentence: "a shortcut has …" -> "A shortcut has ….", or its
/// translation (a whole sentence already) in the viewer's language.
pub fn sentence(reason: &str) -> String {
    let translated = crate::i18n::t_relay(reason);
    if translated != reason {
        return translated;
    }
    let mut s = reason.to_owned();
    if let Some(c) = s.get_mut(0..1) {
        c.make_ascii_uppercase();
    }
    s + "."
}

/// Plays sine tones on `audio`: each `(frequency in Hz, start in s from now, length in s)`, at
/// `volume` (0 to 1). Silent where the browser refuses sound before the person clicked.
pub fn tones(audio: &web_sys::AudioContext, notes: &[(f32, f64, f64)], volume: f32) {
    let _ = audio.resume();
    let now = audio.current_time();
    for &(freq, start, length) in notes {
        let (Ok(osc), Ok(gain)) = (audio.create_oscillator(), audio.create_gain()) else {
            return;
        };
        osc.frequency().set_value(freq);
        gain.gain().set_value(volume);
        let _ = osc.connect_with_audio_node(&gain);
        let _ = gain.connect_with_audio_node(&audio.destination());
        let _ = osc.start_with_when(now + start);
        let _ = osc.stop_with_when(now + start + length);
    }
}

/// The date of a timestamp in ms, as the viewer's language writes it, in their time zone.
pub fn date(ms: i64) -> String {
    let d = js_sys::Date::new(&JsValue::from_f64(ms as f64));
    String::from(d.to_locale_date_string(crate::i18n::lang(), &JsValue::UNDEFINED))
}

/// The time of day of a timestamp in ms ("14:05", "2:05 PM"), as the viewer's language
/// writes it, in their time zone.
pub fn clock(ms: i64) -> String {
    let d = js_sys::Date::new(&JsValue::from_f64(ms as f64));
    let options = js_sys::Object::new();
    for (k, v) in [("hour", "numeric"), ("minute", "2-digit")] {
        let _ = js_sys::Reflect::set(&options, &k.into(), &v.into());
    }
    String::from(d.to_locale_time_string_with_options(crate::i18n::lang(), &options))
}

/// Whether a site with these business hours is open now, by the browser's clock in the site's
/// time zone; open when the browser does not know the zone.
pub fn open_now(hours: &escalera_protocol::BusinessHours) -> bool {
    let options = js_sys::Object::new();
    for (k, v) in [
        ("timeZone", hours.time_zone.as_str()),
        ("weekday", "short"),
        ("hour", "2-digit"),
        ("minute", "2-digit"),
        ("hourCycle", "h23"),
    ] {
        let _ = js_sys::Reflect::set(&options, &k.into(), &v.into());
    }
    // An unknown zone: we cannot tell, and say open.
    let Some(format) = date_format(&options) else {
        return true;
    };
    let parts = format.format_to_parts(&js_sys::Date::new_0());
    let part = |kind: &str| {
        parts.iter().find_map(|p| {
            let t = js_sys::Reflect::get(&p, &"type".into()).ok()?.as_string()?;
            (t == kind)
                .then(|| js_sys::Reflect::get(&p, &"value".into()).ok()?.as_string())
                .flatten()
        })
    };
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let (Some(day), Some(h), Some(m)) = (part("weekday"), part("hour"), part("minute")) else {
        return true;
    };
    let (Some(day), Ok(h), Ok(m)) = (
        days.iter().position(|d| *d == day),
        h.parse::<u16>(),
        m.parse::<u16>(),
    ) else {
        return true;
    };
    hours.open_at(day, h * 60 + m)
}

/// `new Intl.DateTimeFormat('en-US', options)`, or `None` where it throws (an unknown time
/// zone is a RangeError): constructed through Reflect, which catches.
fn date_format(options: &js_sys::Object) -> Option<js_sys::Intl::DateTimeFormat> {
    let class = js_sys::Reflect::get(&js_sys::global(), &"Intl".into())
        .and_then(|intl| js_sys::Reflect::get(&intl, &"DateTimeFormat".into()))
        .ok()?
        .dyn_into::<js_sys::Function>()
        .ok()?;
    let args = js_sys::Array::of2(&"en-US".into(), options);
    js_sys::Reflect::construct(&class, &args)
        .ok()
        .map(JsCast::unchecked_into)
}

/// Whether the browser knows this IANA time zone.
pub fn time_zone_known(zone: &str) -> bool {
    let options = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&options, &"timeZone".into(), &zone.into());
    date_format(&options).is_some()
}

/// The browser's own time zone, e.g. `Europe/Madrid`.
pub fn time_zone() -> String {
    date_format(&js_sys::Object::new())
        .and_then(|f| js_sys::Reflect::get(&f.resolved_options(), &"timeZone".into()).ok())
        .and_then(|v| v.as_string())
        .unwrap_or_else(|| "UTC".into())
}
