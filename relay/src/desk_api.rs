//! The agents' desk over HTTP, for what is asked for rather than pushed: canned replies,
//! search and transcript exports. Every route needs an agent's session and sees only their
//! sites; the ones that change something also need the relay's own origin.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use escalera_protocol::{
    check_shortcut, check_text, Author, CannedReply, ConversationId, Message, SiteKey, SiteRef,
    MAX_CANNED_CHARS,
};
use serde::Deserialize;

use crate::http::{check_origin, session_agent, HttpError, HttpResult};
use crate::store::Agent;
use crate::AppState;

/// Search results at most.
const SEARCH_LIMIT: u32 = 50;

/// The desk's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/canned", get(list_canned).post(save_canned))
        .route("/api/canned/{id}", delete(delete_canned))
        .route("/api/search", get(search))
        .route("/api/conversations/{id}/export", get(export))
        .route("/api/conversations/{id}/visitor", get(visitor))
}

async fn agent(state: &AppState, headers: &HeaderMap) -> HttpResult<Agent> {
    session_agent(state, headers)
        .await?
        .ok_or_else(|| HttpError::new(StatusCode::UNAUTHORIZED, "not logged in"))
}

/// A conversation of the agent's sites (anyone else's is not found).
async fn conversation_of(
    state: &AppState,
    me: &Agent,
    id: &ConversationId,
) -> HttpResult<crate::core::ConversationMeta> {
    state
        .hub
        .log()
        .conversation(id.clone())
        .await?
        .filter(|m| me.scope.covers(&m.site))
        .ok_or_else(|| HttpError::new(StatusCode::NOT_FOUND, "no such conversation"))
}

/// Who the audit log says made a change.
pub(crate) fn actor(me: &Agent) -> String {
    format!("{} <{}>", me.agent.name, me.email)
}

fn bad(msg: &str) -> HttpError {
    HttpError::new(StatusCode::BAD_REQUEST, msg)
}

/// `GET /api/canned`: the agent's sites and their canned replies.
async fn list_canned(State(state): State<AppState>, headers: HeaderMap) -> HttpResult<Response> {
    let me = agent(&state, &headers).await?;
    let dir = state.hub.directory();
    let sites: Vec<SiteRef> = dir
        .sites_of(me.scope.clone())
        .await?
        .into_iter()
        .map(|s| SiteRef {
            key: s.key,
            name: s.name,
        })
        .collect();
    let replies = dir.canned(me.scope).await?;
    Ok(Json(serde_json::json!({ "sites": sites, "replies": replies })).into_response())
}

#[derive(Deserialize)]
struct NewCanned {
    site: SiteKey,
    shortcut: String,
    text: String,
}

/// `POST /api/canned` with `{site, shortcut, text}`: a new reply, or the site's reply with
/// that shortcut replaced.
async fn save_canned(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(new): Json<NewCanned>,
) -> HttpResult<Json<CannedReply>> {
    check_origin(&state, &headers)?;
    let me = agent(&state, &headers).await?;
    if !me.scope.covers(&new.site) {
        return Err(HttpError::new(StatusCode::NOT_FOUND, "no such site"));
    }
    let shortcut = new.shortcut.trim().trim_start_matches('/').to_lowercase();
    check_shortcut(&shortcut).map_err(bad)?;
    let text = new.text.trim().to_owned();
    check_text(&text).map_err(bad)?;
    if text.chars().count() > MAX_CANNED_CHARS {
        return Err(bad("a canned reply has at most 2000 characters"));
    }
    let dir = &**state.hub.directory();
    let saved = dir
        .save_canned(new.site, shortcut, text, crate::now_ms())
        .await?;
    let detail = format!("/{} on {}: {:?}", saved.shortcut, saved.site, saved.text);
    crate::settings::record(dir, &actor(&me), "canned.save", detail).await;
    Ok(Json(saved))
}

/// `DELETE /api/canned/{id}`.
async fn delete_canned(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> HttpResult<StatusCode> {
    check_origin(&state, &headers)?;
    let me = agent(&state, &headers).await?;
    let dir = &**state.hub.directory();
    match dir.delete_canned(id.clone(), me.scope.clone()).await? {
        true => {
            crate::settings::record(dir, &actor(&me), "canned.delete", id).await;
            Ok(StatusCode::NO_CONTENT)
        }
        false => Err(HttpError::new(StatusCode::NOT_FOUND, "no such reply")),
    }
}

#[derive(Deserialize)]
struct SearchQuery {
    q: String,
}

/// `GET /api/search?q=words`: the newest messages of the agent's sites with every word (the
/// last one may be half typed).
async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<SearchQuery>,
) -> HttpResult<Response> {
    let me = agent(&state, &headers).await?;
    let words = crate::store::search_words(&query.q);
    if words.is_empty() {
        return Ok(Json(serde_json::json!([])).into_response());
    }
    let hits = state
        .hub
        .log()
        .search(me.scope, words, SEARCH_LIMIT)
        .await?;
    Ok(Json(hits).into_response())
}

/// `GET /api/conversations/{id}/visitor`: what is known of the conversation's visitor (the
/// live page comes as `visit` frames).
async fn visitor(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<ConversationId>,
) -> HttpResult<Response> {
    let me = agent(&state, &headers).await?;
    conversation_of(&state, &me, &id).await?;
    Ok(Json(state.hub.log().visitor_details(id).await?).into_response())
}

#[derive(Deserialize)]
struct ExportQuery {
    #[serde(default)]
    format: Format,
    #[serde(default)]
    notes: bool,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Text,
    Json,
}

/// `GET /api/conversations/{id}/export?format=text|json[&notes=true]`: the whole transcript
/// as a download. Attachments are listed by name and link; notes only when asked.
async fn export(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<ConversationId>,
    Query(query): Query<ExportQuery>,
) -> HttpResult<Response> {
    let me = agent(&state, &headers).await?;
    let meta = conversation_of(&state, &me, &id).await?;
    let log = state.hub.log();
    let mut messages = Vec::new();
    let mut after = 0;
    loop {
        let page = log
            .messages_after(id.clone(), after, 500, query.notes)
            .await?;
        messages.extend(page.messages);
        if !page.full {
            break;
        }
        after = page.upto;
    }
    let site = state
        .hub
        .directory()
        .site(meta.site.clone())
        .await?
        .map_or_else(String::new, |s| s.name);
    let base = state.config.public_url.clone().unwrap_or_default();
    let visitor = crate::store::visitor_label(id.as_str());
    let (body, mime, ext) = match query.format {
        Format::Text => (
            transcript_text(&site, &visitor, &id, &messages, &base),
            "text/plain; charset=utf-8",
            "txt",
        ),
        Format::Json => (
            transcript_json(&site, &visitor, &id, &messages, &base),
            "application/json",
            "json",
        ),
    };
    let name = format!(
        "escalera-{}.{ext}",
        &id.as_str()[..id.as_str().len().min(8)]
    );
    Ok((
        [
            (header::CONTENT_TYPE, mime.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// Who wrote a message, for a transcript.
fn who(m: &Message) -> String {
    let name = m.author_name.clone().unwrap_or_default();
    match m.author {
        Author::Visitor => "Visitor".to_owned(),
        Author::Agent => name,
        Author::System => "—".to_owned(),
        Author::Note => format!("Note by {name}"),
    }
}

/// A message's file, as a link anyone with access can follow.
fn file_link(m: &Message, base: &str) -> Option<(String, String)> {
    m.attachment
        .as_ref()
        .map(|a| (a.name.clone(), format!("{base}/files/{}", a.id)))
}

fn transcript_text(
    site: &str,
    visitor: &str,
    id: &ConversationId,
    messages: &[Message],
    base: &str,
) -> String {
    let mut out = format!("Conversation {id} on {site} with {visitor}\n\n");
    for m in messages {
        let text = match file_link(m, base) {
            Some((name, url)) => format!("[file] {name} {url}"),
            None => m.text.replace('\n', "\n    "),
        };
        out.push_str(&format!("{}  {}: {}\n", utc(m.at), who(m), text));
    }
    out
}

fn transcript_json(
    site: &str,
    visitor: &str,
    id: &ConversationId,
    messages: &[Message],
    base: &str,
) -> String {
    let messages: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            let mut v = serde_json::json!({
                "seq": m.seq,
                "at": utc(m.at),
                "author": m.author,
                "author_name": m.author_name,
                "text": m.text,
            });
            if let Some((name, url)) = file_link(m, base) {
                v["attachment"] = serde_json::json!({ "name": name, "url": url });
            }
            v
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({
        "conversation": id,
        "site": site,
        "visitor": visitor,
        "messages": messages,
    }))
    .expect("a transcript always serialises")
}

/// `2026-11-22 13:04:05 UTC` for ms since the epoch (proleptic Gregorian, from the days since
/// 1970 by the civil-from-days method).
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_are_civil_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_795_352_645_000), "2026-11-22 13:04:05 UTC");
        assert_eq!(utc(-1000), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn search_words_are_quoted_and_the_last_is_a_prefix() {
        use crate::sqlite::fts_query;
        use crate::store::search_words;
        let fts = |q: &str| fts_query(&search_words(q));
        assert_eq!(fts("bison jer").as_deref(), Some("\"bison\" \"jer\"*"));
        assert_eq!(fts("\"a\" OR b*").as_deref(), Some("\"a\" \"OR\" \"b\"*"));
        assert_eq!(fts(" !? "), None);
    }
}
