//! HTTP routes: the client's pages and files, `widget.js`, agent login, and the WebSocket
//! upgrades, which check who is calling and hand the socket to the hub.

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use escalera_protocol::{i18n, SiteKey, MAX_FRAME_BYTES};
use serde::Deserialize;

use std::net::{IpAddr, SocketAddr};

use crate::core::Caller;
use crate::core::Role;
use crate::guard::Refusal;
use crate::store::{Agent, Site};
use crate::{assets, files, headers, now_ms, secrets, AppState};
use futures_util::StreamExt;

/// The visitor's download cookie (their token, sent only to `/files`).
pub const VISITOR_COOKIE: &str = "escalera_visitor";

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "escalera_session";

/// Frames up to this size are read and answered with a `too_large` error; beyond it the
/// WebSocket layer closes the connection (1009).
const HARD_FRAME_LIMIT: usize = 2 * MAX_FRAME_BYTES;

/// `GET /readyz`: 200 once the store answers and the bus carries events to the other nodes;
/// 503 with what is not, for a load balancer to send traffic elsewhere meanwhile.
async fn readyz(State(state): State<AppState>) -> Response {
    let wait = std::time::Duration::from_secs(2);
    let mut down = Vec::new();
    match tokio::time::timeout(wait, state.hub.directory().ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => down.push(format!("database: {e}")),
        Err(_) => down.push("database: no answer within 2 s".to_owned()),
    }
    if !state.hub.bus().ready() {
        down.push("bus: not connected".to_owned());
    }
    if down.is_empty() {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, down.join("\n")).into_response()
    }
}

/// The main router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/agent") }))
        .route("/agent", get(console_page))
        .route("/embed", get(embed_page))
        .route("/widget.js", get(widget_js))
        .route("/app/{*path}", get(asset))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/visitor/session", post(visitor_session))
        .route(
            "/api/conversations/{id}/files",
            post(files::upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/files/{*path}", get(files::download))
        .route("/ws/visitor", get(visitor_socket))
        .route("/ws/agent", get(agent_socket))
        .merge(crate::desk_api::routes())
        .merge(crate::settings::routes())
        .route(
            "/api/csp-report",
            post(headers::csp_report).layer(axum::extract::DefaultBodyLimit::max(16 << 10)),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            headers::security,
        ))
        .with_state(state)
}

/// A failed request: status and a short plain-text reason.
#[derive(Debug)]
pub struct HttpError(StatusCode, String, Option<u64>);

impl HttpError {
    /// A status and a reason for people.
    pub fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        Self(status, msg.into(), None)
    }

    /// Tells the client when to try again (`Retry-After`, seconds).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.2 = Some(secs);
        self
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut res = (self.0, self.1).into_response();
        if let Some(secs) = self.2 {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

impl From<crate::error::StoreError> for HttpError {
    fn from(e: crate::error::StoreError) -> Self {
        tracing::error!("store: {e}");
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

/// What handlers return.
pub type HttpResult<T> = Result<T, HttpError>;

/// A page of the built client, `console` or `widget`, in the coding the request accepts, with
/// its Content-Security-Policy (framed only by `ancestors`) and `<html lang>` set to `lang`.
async fn page_html(
    state: &AppState,
    page: &str,
    headers: &HeaderMap,
    ancestors: &str,
    lang: &str,
) -> HttpResult<Response> {
    let path = format!("{page}/index.html");
    let dir = state.config.assets_dir.as_deref();
    let missing = || {
        HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the client is not built into this relay: run `make build`",
        )
    };
    // The policy names the page's inline loader by its hash, read from the page as served.
    let plain = assets::load(dir, &path, &[assets::Encoding::Identity])
        .await
        .ok_or_else(missing)?;
    let html = String::from_utf8_lossy(&plain.bytes);
    let hashes = headers::inline_script_hashes(&html);
    let policy = HeaderValue::from_str(&headers::page_policy(&hashes, ancestors))
        .map_err(|_| HttpError::new(StatusCode::BAD_REQUEST, "bad origin"))?;
    // The page is built in English; another language is written into it (a small page, sent
    // uncompressed then).
    let body = if lang == "en" {
        assets::load(dir, &path, &assets::Encoding::accepted(headers))
            .await
            .ok_or_else(missing)?
    } else {
        let html = html.replacen("<html lang=\"en\">", &format!("<html lang=\"{lang}\">"), 1);
        assets::Body {
            bytes: html.into_bytes().into(),
            encoding: assets::Encoding::Identity,
        }
    };
    let mut res = assets::respond(body, "text/html; charset=utf-8", "no-cache");
    res.headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, policy);
    res.headers_mut().insert(
        header::VARY,
        HeaderValue::from_static("accept-encoding, accept-language"),
    );
    Ok(res)
}

/// The language a browser asks for in its `Accept-Language`, if Escalera speaks one of them.
pub fn browser_language(headers: &HeaderMap) -> Option<&'static str> {
    let value = headers.get(header::ACCEPT_LANGUAGE)?.to_str().ok()?;
    i18n::from_accept_language(value)
}

/// The widget's language: the host page's `data-locale`, else the first of the browser's
/// languages Escalera speaks, else the site's default, else English.
pub fn widget_language(asked: Option<&str>, headers: &HeaderMap, site: &Site) -> &'static str {
    asked
        .and_then(i18n::supported)
        .or_else(|| browser_language(headers))
        .or_else(|| site.look.language.as_deref().and_then(i18n::supported))
        .unwrap_or("en")
}

async fn console_page(State(state): State<AppState>, headers: HeaderMap) -> HttpResult<Response> {
    // The console is never framed by anyone. Its language is the browser's until the agent
    // picks one (kept by the console itself).
    let lang = browser_language(&headers).unwrap_or("en");
    page_html(&state, "console", &headers, "'none'", lang).await
}

#[derive(Deserialize)]
struct EmbedQuery {
    site: SiteKey,
    /// The host page's origin, as widget.js saw it.
    origin: Option<String>,
    /// The host page's `data-locale`.
    lang: Option<String>,
}

/// The widget page, framed by a host page. The browser enforces `frame-ancestors`, so only the
/// site's allowed origins can embed it; opened on its own (no `origin`) it cannot be framed.
async fn embed_page(
    State(state): State<AppState>,
    Query(q): Query<EmbedQuery>,
    headers: HeaderMap,
) -> HttpResult<Response> {
    let site = load_site(&state, q.site).await?;
    let ancestors = match &q.origin {
        Some(o) if site.origins.iter().any(|a| a == o) => o.clone(),
        Some(_) => return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "this page's origin is not allowed to embed this chat; add it to the site's origins",
        )),
        None => "'none'".to_owned(),
    };
    let lang = widget_language(q.lang.as_deref(), &headers, &site);
    page_html(&state, "widget", &headers, &ancestors, lang).await
}

async fn widget_js(headers: HeaderMap) -> Response {
    let body = assets::WIDGET_JS.body(&assets::Encoding::accepted(&headers));
    let mut res = assets::respond(
        body,
        "text/javascript; charset=utf-8",
        "public, max-age=300",
    );
    res.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    res
}

async fn asset(
    State(state): State<AppState>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> HttpResult<Response> {
    let accepted = assets::Encoding::accepted(&headers);
    let body = assets::load(state.config.assets_dir.as_deref(), &path, &accepted)
        .await
        .ok_or_else(|| HttpError::new(StatusCode::NOT_FOUND, "not found"))?;
    // Trunk puts a content hash in every file name.
    Ok(assets::respond(
        body,
        assets::content_type(&path),
        "public, max-age=31536000, immutable",
    ))
}

async fn load_site(state: &AppState, key: SiteKey) -> HttpResult<Site> {
    state
        .hub
        .directory()
        .site(key)
        .await?
        .ok_or_else(|| HttpError::new(StatusCode::NOT_FOUND, "no such site"))
}

/// Whether the request's `Origin` is this relay's own, as `--public-url` says.
fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| o.eq_ignore_ascii_case(state.origin()))
}

/// Refuses a state-changing request that a page of another origin made the browser send
/// (CSRF): its `Origin` must be ours; without one, its `Sec-Fetch-Site` must say same-origin
/// (or `none`: typed by the person). A request with neither is not from a browser that
/// follows a cross-site page's orders (every current one sends `Origin` on a cross-site
/// POST), so tools like curl keep working.
pub fn check_origin(state: &AppState, headers: &HeaderMap) -> HttpResult<()> {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let ok = if headers.contains_key(header::ORIGIN) {
        same_origin(state, headers)
    } else {
        fetch_site.is_none_or(|s| s == "same-origin" || s == "none")
    };
    if ok {
        Ok(())
    } else {
        Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "this request came from another site",
        ))
    }
}

#[derive(Deserialize)]
struct VisitorQuery {
    site: SiteKey,
}

/// A visitor's socket. The widget runs in our iframe (same origin as the relay); a host page
/// may also connect directly when its origin is on the site's list. Anyone else: 403.
async fn visitor_socket(
    State(state): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    occupancy: Option<Extension<crate::serve::Occupancy>>,
    Query(q): Query<VisitorQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> HttpResult<Response> {
    // The last share of the connections is for agents and the health check.
    if let Some(Extension(o)) = occupancy {
        let reserve = usize::from(state.config.agent_reserve_percent.min(90));
        let for_visitors = o.total * (100 - reserve) / 100;
        if o.open() > for_visitors.max(1) {
            tracing::warn!(open = o.open(), "visitor socket refused: the relay is full");
            crate::metrics::limited("visitor_sockets");
            return Err(HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The chat is very busy right now. Please try again in a minute.",
            ));
        }
    }
    let site = load_site(&state, q.site).await?;
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let allowed = same_origin(&state, &headers)
        || origin.is_some_and(|o| site.origins.iter().any(|a| a == o));
    if !allowed {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "origin not allowed for this site",
        ));
    }
    Ok(upgrade(
        state,
        ws,
        Caller::Visitor {
            site: site.key,
            site_name: site.name,
            features: site.features,
            look: site.look,
            identity: crate::core::IdentityRule {
                secret: site.identity_secret,
                required: site.identity_required,
            },
            address: crate::guard::address_key(from.ip()),
        },
    ))
}

/// An agent's socket: same origin as the console, and a live session.
async fn agent_socket(
    State(state): State<AppState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> HttpResult<Response> {
    if !same_origin(&state, &headers) {
        return Err(HttpError::new(StatusCode::FORBIDDEN, "origin not allowed"));
    }
    let agent = session_agent(&state, &headers)
        .await?
        .ok_or_else(|| HttpError::new(StatusCode::UNAUTHORIZED, "log in first"))?;
    let session = session_token(&state, &headers)?
        .map(|t| secrets::token_hash(&t))
        .unwrap_or_default();
    Ok(upgrade(
        state,
        ws,
        Caller::Agent {
            agent: agent.agent,
            scope: agent.scope,
            session,
        },
    ))
}

/// What a socket reads into before it grows for a larger frame, and the most one read takes:
/// most frames are ICE candidates, acks and chat lines, about this size or less; a larger one
/// takes a few reads (server CPU per signalling frame did not move between 1 KiB and this).
/// tungstenite's default (128 KiB, zero-filled before each read) was 90 % of an idle socket's
/// memory; 1 KiB was still a sixth of it.
const READ_BUFFER: usize = 256;

fn upgrade(state: AppState, ws: WebSocketUpgrade, caller: Caller) -> Response {
    ws.max_message_size(HARD_FRAME_LIMIT)
        .max_frame_size(HARD_FRAME_LIMIT)
        .read_buffer_size(READ_BUFFER)
        // Every frame is written at once: the socket's task sends one frame at a time and
        // waits for it, so nothing piles up here (a slow client's backlog is its outbox). No
        // cap on top: one frame (a page of history) may be larger than any cap worth having.
        .write_buffer_size(0)
        .on_upgrade(move |socket| {
            let (sink, stream) = socket.split();
            state.hub.clone().serve(sink, stream, caller)
        })
}

/// The value of cookie `name`. Sent twice (a sibling host can set one for the whole domain
/// next to ours), it is refused rather than guessed at.
fn cookie(headers: &HeaderMap, name: &str) -> HttpResult<Option<String>> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned());
    let first = found.next();
    if found.next().is_some() {
        tracing::warn!(
            cookie = name,
            "a request sent the same cookie twice: refused"
        );
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "this browser sent two different session cookies; clear this site's cookies",
        ));
    }
    Ok(first)
}

/// The session cookie's name: `__Host-` prefixed over https, so no other host (a sibling
/// subdomain) can set or shadow it.
pub fn session_cookie(state: &AppState) -> &'static str {
    if state.config.secure_cookies {
        "__Host-escalera_session"
    } else {
        SESSION_COOKIE
    }
}

fn session_token(state: &AppState, headers: &HeaderMap) -> HttpResult<Option<String>> {
    cookie(headers, session_cookie(state))
}

/// The visitor's token from `Authorization: Bearer` or the download cookie.
fn visitor_token(headers: &HeaderMap) -> HttpResult<Option<String>> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    match bearer {
        Some(token) => Ok(Some(token)),
        None => cookie(headers, VISITOR_COOKIE),
    }
}

async fn visitor_role(state: &AppState, headers: &HeaderMap) -> HttpResult<Option<Role>> {
    let Some(token) = visitor_token(headers)? else {
        return Ok(None);
    };
    if let Some(role) = state.hub.unsaved_visitor(&token) {
        return Ok(Some(role));
    }
    let hash = secrets::token_hash(&token);
    let found = state.hub.log().visitor(hash).await?;
    Ok(found.map(|(site, conversation)| Role::Visitor { site, conversation }))
}

/// Who is calling an HTTP endpoint: an agent by session cookie, or a visitor by token.
pub async fn caller_role(state: &AppState, headers: &HeaderMap) -> HttpResult<Option<Role>> {
    if let Some(agent) = session_agent(state, headers).await? {
        return Ok(Some(Role::Agent {
            agent: agent.agent,
            scope: agent.scope,
        }));
    }
    visitor_role(state, headers).await
}

/// `POST /api/visitor/session` with `Authorization: Bearer <token>`: sets the cookie that lets
/// the widget's `<img>` and download links fetch the conversation's files.
async fn visitor_session(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> HttpResult<Response> {
    let token = visitor_token(&headers)?.filter(|_| headers.contains_key(header::AUTHORIZATION));
    let (Some(token), Some(_)) = (token, visitor_role(&state, &headers).await?) else {
        return Err(HttpError::new(StatusCode::UNAUTHORIZED, "unknown visitor"));
    };
    // Cross-site (the usual embed, over https) needs SameSite=None; Partitioned keeps it to
    // this host site. Over plain http the relay can only be same-site with the host page.
    let attrs = if state.config.secure_cookies {
        "SameSite=None; Secure; Partitioned"
    } else {
        "SameSite=Lax"
    };
    let value =
        format!("{VISITOR_COOKIE}={token}; Path=/files; HttpOnly; {attrs}; Max-Age=31536000");
    Ok(([(header::SET_COOKIE, value)], StatusCode::NO_CONTENT).into_response())
}

pub(crate) async fn session_agent(
    state: &AppState,
    headers: &HeaderMap,
) -> HttpResult<Option<Agent>> {
    let Some(token) = session_token(state, headers)? else {
        return Ok(None);
    };
    let hash = secrets::token_hash(&token);
    Ok(state.hub.directory().session_agent(hash, now_ms()).await?)
}

#[derive(Deserialize)]
struct Login {
    email: String,
    password: String,
}

fn me_json(agent: &Agent) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "id": agent.agent.id,
        "name": agent.agent.name,
        "email": agent.email,
        "admin": agent.admin,
    }))
}

/// The longest email a login reads (RFC 5321's path limit).
const MAX_EMAIL: usize = 254;

/// The longest password a login hashes.
const MAX_PASSWORD: usize = 1024;

async fn login(
    State(state): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<Login>,
) -> HttpResult<Response> {
    check_origin(&state, &headers)?;
    if body.email.len() > MAX_EMAIL || body.password.len() > MAX_PASSWORD {
        return Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "wrong email or password",
        ));
    }
    let ip = from.ip();
    if let Err(refusal) = state.logins.admit(ip, &body.email) {
        return Err(refused_login(refusal, ip, &body.email));
    }
    if let Err(refusal) = cluster_logins(&state, ip, &body.email).await? {
        return Err(refused_login(refusal, ip, &body.email));
    }
    let agent = state
        .hub
        .directory()
        .agent_by_email(body.email.clone())
        .await?;
    // Verify against a real hash even for unknown emails, so timing does not tell them apart.
    let (hash, agent) = match agent {
        Some(a) => (a.password_hash.clone(), Some(a)),
        None => (DUMMY_HASH.clone(), None),
    };
    let password = body.password;
    let ok = state
        .logins
        .hash(move |memory| secrets::verify_password_in(&password, &hash, memory))
        .await
        .map_err(|refusal| refused_login(refusal, ip, &body.email))?;
    let known = agent.is_some();
    let Some(agent) = agent.filter(|_| ok) else {
        tracing::warn!(email = ?body.email, address = %ip, known, "login failed");
        return Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "wrong email or password",
        ));
    };
    let token = secrets::random_token();
    let (hash, id, ttl) = (
        secrets::token_hash(&token),
        agent.agent.id.clone(),
        state.config.session_ttl_secs,
    );
    state
        .hub
        .directory()
        .add_session(hash, id, now_ms() + ttl * 1000)
        .await?;
    let cookie = format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={ttl}{}",
        session_cookie(&state),
        if state.config.secure_cookies {
            "; Secure"
        } else {
            ""
        }
    );
    let mut res = me_json(&agent).into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("cookie is ASCII"),
    );
    Ok(res)
}

/// With other nodes on the database: the login limits counted over every node (this node's
/// own limiters were asked first), so spreading guesses over the nodes gains nothing.
async fn cluster_logins(
    state: &AppState,
    ip: std::net::IpAddr,
    email: &str,
) -> Result<Result<(), Refusal>, crate::error::StoreError> {
    let limits = &state.config.login;
    let counted = [
        (
            "address",
            format!("login address {}", crate::guard::address_key(ip)),
            crate::guard::ADDRESS_WINDOW,
            limits.per_address,
        ),
        (
            "account",
            format!("login account {}", crate::guard::account_key(email)),
            crate::guard::ACCOUNT_WINDOW,
            limits.per_account,
        ),
    ];
    for (by, key, window, limit) in counted {
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        if let Some(left) = state.hub.over_cluster_limit(key, window_ms, limit).await? {
            return Ok(Err(Refusal::Throttled {
                retry_after: std::time::Duration::from_millis(u64::try_from(left).unwrap_or(0)),
                by,
            }));
        }
    }
    Ok(Ok(()))
}

/// A login that was not checked: throttled (429 with `Retry-After`) or no hashing slot (503).
fn refused_login(refusal: Refusal, ip: IpAddr, email: &str) -> HttpError {
    match refusal {
        Refusal::Throttled { retry_after, by } => {
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            tracing::warn!(email = ?email, address = %ip, by, retry_after = secs, "login throttled");
            crate::metrics::limited("logins");
            HttpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many login attempts; try again in a moment",
            )
            .retry_after(secs)
        }
        Refusal::Busy => {
            tracing::warn!(address = %ip, "login refused: every password check slot is busy");
            crate::metrics::limited("login_slots");
            HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many logins at once; try again in a moment",
            )
            .retry_after(1)
        }
    }
}

static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| secrets::hash_password("not a real password"));

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> HttpResult<Response> {
    check_origin(&state, &headers)?;
    if let Some(token) = session_token(&state, &headers)? {
        let hash = secrets::token_hash(&token);
        state.hub.directory().delete_session(hash.clone()).await?;
        // Its sockets close now, not at the next check.
        state.hub.revoke(hash).await;
    }
    let clear = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        session_cookie(&state),
        if state.config.secure_cookies {
            "; Secure"
        } else {
            ""
        }
    );
    Ok(([(header::SET_COOKIE, clear)], StatusCode::NO_CONTENT).into_response())
}

async fn me(State(state): State<AppState>, headers: HeaderMap) -> HttpResult<Response> {
    match session_agent(&state, &headers).await? {
        Some(agent) => Ok(me_json(&agent).into_response()),
        None => Err(HttpError::new(StatusCode::UNAUTHORIZED, "not logged in")),
    }
}

/// The demo host page: a plain shop page on its own origin that embeds the widget.
#[derive(Clone, Debug)]
pub struct DemoPage {
    /// The relay's public URL, e.g. `http://127.0.0.1:8080`.
    pub relay_url: String,
    /// The demo site's key.
    pub site: SiteKey,
}

impl DemoPage {
    /// The embed snippet for this page.
    pub fn snippet(&self) -> String {
        snippet(&self.relay_url, &self.site)
    }
}

/// The one-line embed snippet for a site.
pub fn snippet(relay_url: &str, site: &SiteKey) -> String {
    format!(
        r#"<script src="{}/widget.js" data-site="{site}" async></script>"#,
        relay_url.trim_end_matches('/')
    )
}

/// The demo listener's router.
pub fn demo_app(page: DemoPage) -> Router {
    let snippet = page.snippet();
    let shown = snippet
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let body = include_str!("../static/demo.html")
        .replace("{{SNIPPET_TEXT}}", &shown)
        .replace("{{SNIPPET}}", &snippet);
    Router::new().route(
        "/",
        get(move || async move { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body) }),
    )
}
