//! The site owner's side over HTTP: sites, agents and the audit log, for admins only. The
//! console's Settings area is built on these routes; the command line does the same through
//! the store, and both leave a line in the audit log.
//!
//! A refused change answers 400 with `{"field": ..., "error": ...}`, so that a form can show
//! the error next to the field it is about.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use escalera_protocol::{
    check_email, check_look, i18n, AgentId, AgentSettings, Corner, SiteFeatures, SiteKey, SiteLook,
    SiteSettings,
};
use serde::Deserialize;

use crate::core::Scope;
use crate::http::{check_origin, session_agent, snippet, HttpError, HttpResult};
use crate::store::{Agent, AgentListing, AuditEntry, Directory, Site, DEFAULT_CHAT_LIMIT};
use crate::{now_ms, secrets, AppState};

/// The longest site or agent name.
pub const MAX_NAME_CHARS: usize = 100;

/// The most conversations an agent's limit can be set to.
pub const MAX_CHAT_LIMIT: u32 = 100;

/// Audit entries one request reads at most.
const AUDIT_PAGE: u32 = 200;

/// The routes of the Settings area, and the widget's look for the loader.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/look", get(look))
        .route("/api/admin/sites", get(list_sites).post(add_site))
        .route("/api/admin/sites/{key}", axum::routing::put(update_site))
        .route("/api/admin/agents", get(list_agents).post(add_agent))
        .route("/api/admin/agents/{id}", axum::routing::put(update_agent))
        .route("/api/admin/agents/{id}/password", post(reset_password))
        .route("/api/admin/audit", get(audit))
}

/// `https://Shop.example/` -> `https://shop.example`; refuses anything that is not an origin.
pub fn normalize_origin(o: &str) -> Result<String, String> {
    let o = o.trim().trim_end_matches('/').to_ascii_lowercase();
    let rest = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
        .ok_or_else(|| format!("{o} is not an origin: it starts with https:// or http://"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ', ';', ',', '\'', '"']) {
        return Err(format!(
            "{o} is not an origin (scheme://host[:port], no path)"
        ));
    }
    Ok(o)
}

/// A site or agent name: trimmed, not empty, one line, at most [`MAX_NAME_CHARS`].
pub fn check_name(name: &str) -> Result<String, &'static str> {
    let name = name.trim();
    if name.is_empty() {
        Err("a name is needed")
    } else if name.chars().count() > MAX_NAME_CHARS {
        Err("a name has at most 100 characters")
    } else if name.chars().any(char::is_control) {
        Err("a name is one line of text")
    } else {
        Ok(name.to_owned())
    }
}

/// One line saying what a site offers.
pub fn offers(f: &SiteFeatures) -> String {
    let steps = match (f.voice, f.video) {
        (false, _) => "chat only",
        (true, false) => "chat and voice",
        (true, true) => "chat, voice and video",
    };
    let on = |b: bool| if b { "on" } else { "off" };
    format!(
        "{steps}; screen sharing {}, files {}, snapshots {}",
        on(f.screen),
        on(f.files),
        on(f.snapshots)
    )
}

/// Appends to the audit log; a failure to do so is logged, not the caller's problem (the
/// change itself is stored).
pub async fn record(dir: &dyn Directory, actor: &str, action: &str, detail: String) {
    let entry = AuditEntry {
        at: now_ms(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        detail,
    };
    if let Err(e) = dir.record(entry).await {
        tracing::error!("cannot write the audit log: {e}");
    }
}

/// Why an admin route said no.
enum Refused {
    /// A plain HTTP error (not logged in, not an admin, not found, ...).
    Http(HttpError),
    /// A field's value: 400 with `{"field", "error"}`.
    Field(&'static str, String),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Http(e) => e.into_response(),
            Refused::Field(field, error) => {
                let body = serde_json::json!({ "field": field, "error": error });
                (StatusCode::BAD_REQUEST, Json(body)).into_response()
            }
        }
    }
}

impl From<crate::error::StoreError> for Refused {
    fn from(e: crate::error::StoreError) -> Self {
        Refused::Http(e.into())
    }
}

fn invalid(field: &'static str, error: impl Into<String>) -> Refused {
    Refused::Field(field, error.into())
}

/// What an admin route answers.
type AdminResult = Result<Response, Refused>;

fn http(e: HttpError) -> Refused {
    Refused::Http(e)
}

/// The admin making the request, and who the audit log says it was.
async fn admin(state: &AppState, headers: &HeaderMap) -> Result<(Agent, String), Refused> {
    let me = session_agent(state, headers)
        .await
        .map_err(http)?
        .ok_or_else(|| http(HttpError::new(StatusCode::UNAUTHORIZED, "not logged in")))?;
    if !me.admin {
        return Err(http(HttpError::new(
            StatusCode::FORBIDDEN,
            "only admins can change settings",
        )));
    }
    let actor = crate::desk_api::actor(&me);
    Ok((me, actor))
}

fn site_view(state: &AppState, site: Site) -> SiteSettings {
    SiteSettings {
        snippet: snippet(state.origin(), &site.key),
        key: site.key,
        name: site.name,
        origins: site.origins,
        features: site.features,
        look: site.look,
        identity_secret: site.identity_secret,
        identity_required: site.identity_required,
    }
}

/// `GET /api/admin/sites`.
async fn list_sites(State(state): State<AppState>, headers: HeaderMap) -> AdminResult {
    admin(&state, &headers).await?;
    let sites = state.hub.directory().sites_of(Scope::All).await?;
    let views: Vec<SiteSettings> = sites.into_iter().map(|s| site_view(&state, s)).collect();
    Ok(Json(views).into_response())
}

fn origins(list: &[String]) -> Result<Vec<String>, Refused> {
    let mut out: Vec<String> = Vec::new();
    for o in list.iter().filter(|o| !o.trim().is_empty()) {
        let o = normalize_origin(o).map_err(|e| invalid("origins", e))?;
        if !out.contains(&o) {
            out.push(o);
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct NewSite {
    name: String,
    #[serde(default)]
    origins: Vec<String>,
}

/// `POST /api/admin/sites` with `{name, origins}`.
async fn add_site(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(new): Json<NewSite>,
) -> AdminResult {
    check_origin(&state, &headers).map_err(http)?;
    let (_, actor) = admin(&state, &headers).await?;
    let name = check_name(&new.name).map_err(|e| invalid("name", e))?;
    let origins = origins(&new.origins)?;
    let dir = &**state.hub.directory();
    let site = dir.add_site(name, origins, now_ms()).await?;
    let detail = format!(
        "{} ({}), origins: {}",
        site.name,
        site.key,
        site.origins.join(" ")
    );
    record(dir, &actor, "site.add", detail).await;
    Ok((StatusCode::CREATED, Json(site_view(&state, site))).into_response())
}

#[derive(Deserialize)]
struct SiteUpdate {
    name: String,
    origins: Vec<String>,
    features: SiteFeatures,
    look: SiteLook,
    #[serde(default)]
    identity_required: bool,
}

/// `PUT /api/admin/sites/{key}` with the whole site: name, origins, features and look. Its
/// open widgets follow at once.
async fn update_site(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(key): Path<SiteKey>,
    Json(up): Json<SiteUpdate>,
) -> AdminResult {
    check_origin(&state, &headers).map_err(http)?;
    let (_, actor) = admin(&state, &headers).await?;
    let dir = &**state.hub.directory();
    let Some(old) = dir.site(key.clone()).await? else {
        return Err(http(HttpError::new(StatusCode::NOT_FOUND, "no such site")));
    };
    let name = check_name(&up.name).map_err(|e| invalid("name", e))?;
    let origins = origins(&up.origins)?;
    let mut look = up.look;
    look.color = look.color.trim().to_ascii_lowercase();
    look.greeting = look.greeting.trim().to_owned();
    look.away_message = look.away_message.trim().to_owned();
    check_look(&look).map_err(|(field, e)| invalid(field, e))?;
    let mut features = up.features;
    // Video needs voice.
    features.video &= features.voice;
    if features.max_upload.is_some_and(|b| b < 1 << 10) {
        return Err(invalid("max_upload", "the largest file is at least 1 KiB"));
    }
    let site = Site {
        key,
        name,
        origins,
        features,
        look,
        identity_required: up.identity_required,
        ..old.clone()
    };
    if !dir.save_site(site.clone()).await? {
        return Err(http(HttpError::new(StatusCode::NOT_FOUND, "no such site")));
    }
    record(dir, &actor, "site.update", site_changes(&old, &site)).await;
    state.hub.site_changed(&site).await;
    Ok(Json(site_view(&state, site)).into_response())
}

/// What changed on a site, for the audit log.
fn site_changes(old: &Site, new: &Site) -> String {
    let mut changes = Vec::new();
    if old.name != new.name {
        changes.push(format!("name {:?} -> {:?}", old.name, new.name));
    }
    if old.origins != new.origins {
        changes.push(format!("origins: {}", new.origins.join(" ")));
    }
    if old.features != new.features {
        changes.push(format!("offers {}", offers(&new.features)));
    }
    if old.features.max_upload != new.features.max_upload {
        let max = new.features.max_upload.map_or_else(
            || "the relay's limit".to_owned(),
            |b| format!("{} KiB", b >> 10),
        );
        changes.push(format!("largest file {max}"));
    }
    if old.look.color != new.look.color {
        changes.push(format!("colour {} -> {}", old.look.color, new.look.color));
    }
    if old.look.position != new.look.position {
        let side = match new.look.position {
            Corner::Left => "left",
            Corner::Right => "right",
        };
        changes.push(format!("position {side}"));
    }
    if old.look.greeting != new.look.greeting {
        changes.push(format!("greeting {:?}", new.look.greeting));
    }
    if old.look.hours != new.look.hours {
        let hours = new.look.hours.as_ref().map_or_else(
            || "always open".to_owned(),
            |h| {
                let open = h.days.iter().filter(|d| d.is_some()).count();
                format!("{} days a week, {}", open, h.time_zone)
            },
        );
        changes.push(format!("business hours: {hours}"));
    }
    if old.look.away_message != new.look.away_message {
        changes.push(format!("away message {:?}", new.look.away_message));
    }
    if old.identity_required != new.identity_required {
        let required = if new.identity_required {
            "required"
        } else {
            "optional"
        };
        changes.push(format!("verified identity {required}"));
    }
    if changes.is_empty() {
        changes.push("nothing changed".into());
    }
    format!("{} ({}): {}", new.name, new.key, changes.join("; "))
}

#[derive(Deserialize)]
struct LookQuery {
    site: SiteKey,
    /// The host page's `data-locale`.
    lang: Option<String>,
}

/// `GET /api/look?site=KEY[&lang=TAG]`: the launcher's colour and corner, and its labels in the
/// widget's language, for the loader on any host page (public: it is what the page shows
/// anyway).
async fn look(
    State(state): State<AppState>,
    Query(q): Query<LookQuery>,
    headers: HeaderMap,
) -> HttpResult<Response> {
    let site = state
        .hub
        .directory()
        .site(q.site)
        .await?
        .ok_or_else(|| HttpError::new(StatusCode::NOT_FOUND, "no such site"))?;
    let lang = crate::http::widget_language(q.lang.as_deref(), &headers, &site);
    let tables: Vec<i18n::Table> = i18n::table(i18n::RELAY, lang).into_iter().collect();
    let say = |english| i18n::lookup(&tables, english);
    let body = serde_json::json!({
        "color": site.look.color,
        "position": site.look.position,
        "lang": lang,
        "open": say("Open chat"),
        "close": say("Close chat"),
        "title": say("Chat"),
    });
    Ok((
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::VARY, "accept-language"),
        ],
        Json(body),
    )
        .into_response())
}

fn agent_view(a: AgentListing) -> AgentSettings {
    let sites = match a.agent.scope {
        Scope::All => None,
        Scope::Sites(s) => {
            let mut s: Vec<SiteKey> = s.into_iter().collect();
            s.sort_by(|a, b| a.0.cmp(&b.0));
            Some(s)
        }
    };
    AgentSettings {
        id: a.agent.agent.id,
        name: a.agent.agent.name,
        email: a.agent.email,
        admin: a.agent.admin,
        sites,
        limit: a.agent.limit,
        disabled: a.disabled,
        sessions: a.sessions,
        presence: a.agent.presence,
    }
}

/// `GET /api/admin/agents`: every agent, disabled ones too.
async fn list_agents(State(state): State<AppState>, headers: HeaderMap) -> AdminResult {
    admin(&state, &headers).await?;
    let agents = state.hub.directory().agents(now_ms()).await?;
    let views: Vec<AgentSettings> = agents.into_iter().map(agent_view).collect();
    Ok(Json(views).into_response())
}

/// The listing of the agent with this id.
async fn listing(dir: &dyn Directory, id: &AgentId) -> Result<AgentListing, Refused> {
    dir.agents(now_ms())
        .await?
        .into_iter()
        .find(|a| a.agent.agent.id == *id)
        .ok_or_else(|| http(HttpError::new(StatusCode::NOT_FOUND, "no such agent")))
}

/// Checks that every site named exists.
async fn known_sites(dir: &dyn Directory, sites: &Option<Vec<SiteKey>>) -> Result<(), Refused> {
    for key in sites.iter().flatten() {
        if dir.site(key.clone()).await?.is_none() {
            return Err(invalid("sites", format!("no site with the key {key}")));
        }
    }
    Ok(())
}

fn check_limit(limit: u32) -> Result<u32, Refused> {
    if limit > MAX_CHAT_LIMIT {
        Err(invalid("limit", "a chat limit is 0 to 100"))
    } else {
        Ok(limit)
    }
}

/// A fresh one-time password and its hash (hashed off the runtime: argon2 takes a while).
async fn fresh_password() -> Result<(String, String), Refused> {
    let password = secrets::generate_password();
    let clear = password.clone();
    let hash = tokio::task::spawn_blocking(move || secrets::hash_password(&clear))
        .await
        .map_err(|_| {
            http(HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            ))
        })?;
    Ok((password, hash))
}

fn sites_text(sites: &Option<Vec<SiteKey>>) -> String {
    match sites {
        None => "every site".into(),
        Some(s) if s.is_empty() => "no site".into(),
        Some(s) => s
            .iter()
            .map(|k| k.0.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

#[derive(Deserialize)]
struct NewAgent {
    email: String,
    name: String,
    #[serde(default)]
    admin: bool,
    /// `null` or absent: every site.
    #[serde(default)]
    sites: Option<Vec<SiteKey>>,
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    DEFAULT_CHAT_LIMIT
}

/// `POST /api/admin/agents`: a new agent and their one-time password, shown once.
async fn add_agent(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(new): Json<NewAgent>,
) -> AdminResult {
    check_origin(&state, &headers).map_err(http)?;
    let (_, actor) = admin(&state, &headers).await?;
    let dir = &**state.hub.directory();
    let email = new.email.trim().to_lowercase();
    check_email(&email).map_err(|e| invalid("email", e))?;
    let name = check_name(&new.name).map_err(|e| invalid("name", e))?;
    let limit = check_limit(new.limit)?;
    known_sites(dir, &new.sites).await?;
    let agents = dir.agents(now_ms()).await?;
    if agents.iter().any(|a| a.agent.email == email) {
        return Err(invalid("email", "an agent with this email exists"));
    }
    let (password, hash) = fresh_password().await?;
    let agent = dir
        .add_agent(email.clone(), name, hash, new.sites.clone(), now_ms())
        .await?;
    let write = async {
        dir.set_limit(email.clone(), limit).await?;
        dir.set_admin(email.clone(), new.admin).await
    };
    write.await?;
    let detail = format!(
        "{} <{}>: {}, {}, limit {limit}",
        agent.agent.name,
        email,
        if new.admin { "admin" } else { "agent" },
        sites_text(&new.sites)
    );
    record(dir, &actor, "agent.add", detail).await;
    let view = agent_view(listing(dir, &agent.agent.id).await?);
    let body = serde_json::json!({ "agent": view, "password": password });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
struct AgentUpdate {
    admin: bool,
    sites: Option<Vec<SiteKey>>,
    limit: u32,
    disabled: bool,
}

/// `PUT /api/admin/agents/{id}` with `{admin, sites, limit, disabled}`. Their open consoles
/// close at once: a disabled agent's go back to the login, the others reconnect as the agent
/// is now.
async fn update_agent(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<AgentId>,
    Json(up): Json<AgentUpdate>,
) -> AdminResult {
    check_origin(&state, &headers).map_err(http)?;
    let (me, actor) = admin(&state, &headers).await?;
    let dir = &**state.hub.directory();
    let old = listing(dir, &id).await?;
    let email = old.agent.email.clone();
    // Nobody locks the door from inside: an admin keeps their own role and access.
    if id == me.agent.id && (!up.admin || up.disabled) {
        let field = if up.disabled { "disabled" } else { "admin" };
        return Err(invalid(
            field,
            "you cannot take away your own admin role or disable yourself",
        ));
    }
    let limit = check_limit(up.limit)?;
    known_sites(dir, &up.sites).await?;
    let old_sites = agent_view(old.clone()).sites;
    let mut changes = Vec::new();
    let write = async {
        if up.admin != old.agent.admin {
            dir.set_admin(email.clone(), up.admin).await?;
            changes.push(
                if up.admin {
                    "made admin"
                } else {
                    "admin role taken away"
                }
                .into(),
            );
        }
        if up.sites != old_sites {
            dir.set_sites(email.clone(), up.sites.clone()).await?;
            changes.push(format!("serves {}", sites_text(&up.sites)));
        }
        if limit != old.agent.limit && !old.disabled {
            dir.set_limit(email.clone(), limit).await?;
            changes.push(format!("limit {} -> {limit}", old.agent.limit));
        }
        if up.disabled != old.disabled {
            dir.set_disabled(email.clone(), up.disabled, now_ms())
                .await?;
            changes.push(if up.disabled { "disabled" } else { "enabled" }.into());
        }
        Ok::<_, crate::error::StoreError>(())
    };
    write.await?;
    if !changes.is_empty() {
        let detail = format!("{} <{email}>: {}", old.agent.agent.name, changes.join("; "));
        let action = if up.disabled != old.disabled {
            "agent.access"
        } else {
            "agent.update"
        };
        record(dir, &actor, action, detail).await;
        state.hub.agent_changed(id.clone(), up.disabled).await;
    }
    Ok(Json(agent_view(listing(dir, &id).await?)).into_response())
}

/// `POST /api/admin/agents/{id}/password`: a new one-time password, shown once; the agent's
/// sessions end at once.
async fn reset_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<AgentId>,
) -> AdminResult {
    check_origin(&state, &headers).map_err(http)?;
    let (_, actor) = admin(&state, &headers).await?;
    let dir = &**state.hub.directory();
    let agent = listing(dir, &id).await?;
    let (password, hash) = fresh_password().await?;
    let email = agent.agent.email.clone();
    if !dir.set_password(email.clone(), hash).await? {
        return Err(http(HttpError::new(StatusCode::NOT_FOUND, "no such agent")));
    }
    let detail = format!("{} <{email}>", agent.agent.agent.name);
    record(dir, &actor, "agent.password", detail).await;
    state.hub.agent_changed(id, true).await;
    Ok(Json(serde_json::json!({ "password": password })).into_response())
}

/// `GET /api/admin/audit`: the newest settings changes first.
async fn audit(State(state): State<AppState>, headers: HeaderMap) -> AdminResult {
    admin(&state, &headers).await?;
    let entries = state.hub.directory().audit(AUDIT_PAGE).await?;
    Ok(Json(entries).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalized_and_anything_else_refused() {
        assert_eq!(
            normalize_origin(" https://Shop.example/ ").unwrap(),
            "https://shop.example"
        );
        assert_eq!(
            normalize_origin("http://127.0.0.1:8081").unwrap(),
            "http://127.0.0.1:8081"
        );
        for bad in [
            "shop.example",
            "ftp://shop.example",
            "https://",
            "https://shop.example/path",
            "https://user@shop.example",
            "https://shop.example?x",
        ] {
            assert!(normalize_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_one_short_line() {
        assert_eq!(check_name("  Shop ").unwrap(), "Shop");
        assert!(check_name("   ").is_err());
        assert!(check_name(&"a".repeat(101)).is_err());
        assert!(check_name("a\nb").is_err());
    }

    #[test]
    fn the_audit_line_says_what_changed_on_a_site() {
        let old = Site {
            key: SiteKey("k".into()),
            name: "Shop".into(),
            origins: vec!["https://shop.example".into()],
            features: SiteFeatures::default(),
            look: SiteLook::default(),
            identity_secret: "s".into(),
            identity_required: false,
        };
        let mut new = old.clone();
        new.look.color = "#fde047".into();
        new.features.video = false;
        assert_eq!(
            site_changes(&old, &new),
            "Shop (k): offers chat and voice; screen sharing on, files on, snapshots on; \
             colour #2563eb -> #fde047"
        );
        assert_eq!(site_changes(&old, &old), "Shop (k): nothing changed");
    }
}
