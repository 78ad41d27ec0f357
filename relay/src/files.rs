//! Files and snapshots: uploaded over HTTP into a conversation, stored under a random id in the
//! data dir (never a served folder), typed by their bytes, downloadable only by the
//! conversation's participants.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use escalera_protocol::{Attachment, ClientMsgId, ConversationId, ErrorCode, FileId};
use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::core::{ConversationMeta, Role};
use crate::error::RelayError;
use crate::http::{caller_role, check_origin, HttpError, HttpResult};
use crate::hub::Refused;
use crate::{secrets, AppState};

/// The type of a file, from its first bytes. Only formats we can name with confidence get a
/// specific type; anything else is text (if it is UTF-8) or opaque bytes.
pub fn sniff(head: &[u8], complete: bool) -> &'static str {
    const SIGNATURES: &[(&[u8], &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"%PDF-", "application/pdf"),
        (b"PK\x03\x04", "application/zip"),
        (b"\x1f\x8b", "application/gzip"),
        (b"OggS", "audio/ogg"),
        (b"ID3", "audio/mpeg"),
    ];
    if let Some((_, mime)) = SIGNATURES.iter().find(|(sig, _)| head.starts_with(sig)) {
        return mime;
    }
    if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        return "image/webp";
    }
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return "video/mp4";
    }
    if head.starts_with(b"\x1a\x45\xdf\xa3") {
        return "video/webm";
    }
    // Text: valid UTF-8 (allowing a character cut at the end of the sample) with no NUL.
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => !complete && e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    };
    if text && !head.contains(&0) {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

/// A file name safe to show and to put in a header: no path, no control characters, no
/// bidirectional controls (which can make `gpj.exe` read as `exe.jpg`), at most 200
/// characters; empty becomes "file".
pub fn clean_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && !escalera_protocol::bidi_control(*c))
        .take(200)
        .collect::<String>()
        .trim()
        .trim_start_matches('.')
        .to_owned();
    if cleaned.is_empty() {
        "file".to_owned()
    } else {
        cleaned
    }
}

/// `Content-Disposition: attachment` with an ASCII fallback and the UTF-8 name (RFC 6266).
fn disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

fn megabytes(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / f64::from(1 << 20))
}

#[derive(Deserialize)]
pub(crate) struct UploadQuery {
    name: String,
    client_id: Option<String>,
}

fn refused(r: Refused) -> HttpError {
    let status = match r.code {
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::FORBIDDEN,
    };
    HttpError::new(status, r.message)
}

fn relay_error(e: RelayError) -> HttpError {
    refused(e.into())
}

/// `POST /api/conversations/{id}/files?name=N[&client_id=C]`, the raw bytes as the body.
/// Authenticated by the agent's session or the visitor's token (`Authorization: Bearer`).
pub(crate) async fn upload(
    State(state): State<AppState>,
    Path(conversation): Path<ConversationId>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> HttpResult<Response> {
    // A session cookie goes with any request the browser sends, a cross-site form's too; a
    // bearer token only with ours.
    if !headers.contains_key(header::AUTHORIZATION) {
        check_origin(&state, &headers)?;
    }
    let client_id = q.client_id.map(ClientMsgId);
    if let Some(id) = &client_id {
        crate::core::check_client_id(id).map_err(relay_error)?;
    }
    let role = caller_role(&state, &headers)
        .await?
        .ok_or_else(|| HttpError::new(StatusCode::FORBIDDEN, "log in or open the chat first"))?;
    let meta = state.hub.meta(&conversation).await.map_err(relay_error)?;
    role.may_post(&meta).map_err(relay_error)?;
    // One `client_id`, one file: a resend gets the stored message, and its bytes are not read.
    if let Some(id) = &client_id {
        let log = state.hub.log();
        if let Some(m) = log
            .message_by_client_id(conversation.clone(), id.clone())
            .await?
        {
            return Ok((StatusCode::OK, Json(m)).into_response());
        }
    }
    let room = room(&state, &role, &meta).await?;
    let (limit, full) = (room.bytes, &room.full);
    let too_big = || HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, full.clone());
    if limit == 0 {
        return Err(too_big());
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_big());
    }

    let id = FileId(secrets::random_id());
    let dir = &state.files_dir;
    tokio::fs::create_dir_all(dir).await.map_err(internal)?;
    tokio::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .await
        .map_err(internal)?;
    let partial = dir.join(format!(".part-{id}"));
    let result = receive(body, &partial, limit, state.config.upload_min_rate).await;
    let (size, sha256, head) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(match e {
                Receive::TooBig => too_big(),
                Receive::Io(e) => internal(e),
                Receive::Aborted => {
                    HttpError::new(StatusCode::BAD_REQUEST, "the upload was interrupted")
                }
                Receive::TooSlow => {
                    tracing::info!(%conversation, "an upload was cut: too slow");
                    HttpError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "The upload was too slow and was stopped. Try again on a better connection.",
                    )
                }
            });
        }
    };
    if size == 0 {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "The file is empty.",
        ));
    }
    tokio::fs::rename(&partial, dir.join(&id.0))
        .await
        .map_err(internal)?;
    let file = Attachment {
        id,
        name: clean_name(&q.name),
        size,
        mime: sniff(&head, size as usize == head.len()).to_owned(),
        sha256,
    };
    let stored = dir.join(&file.id.0);
    let message = match state
        .hub
        .post_file(role, conversation, file.clone(), client_id)
        .await
    {
        // The same `client_id` raced in twice: the earlier file stands, this one goes.
        Ok(m) if m.attachment.as_ref().is_some_and(|a| a.id != file.id) => {
            let _ = tokio::fs::remove_file(&stored).await;
            return Ok((StatusCode::OK, Json(m)).into_response());
        }
        Ok(m) => m,
        Err(r) => {
            // Refused after all (another agent took the conversation meanwhile): keep nothing.
            let _ = tokio::fs::remove_file(&stored).await;
            return Err(refused(r));
        }
    };
    Ok((StatusCode::CREATED, Json(message)).into_response())
}

enum Receive {
    TooBig,
    TooSlow,
    Aborted,
    Io(std::io::Error),
}

/// How much one upload may bring, and what to say past that.
struct Room {
    bytes: u64,
    full: String,
}

/// The room for one more file in `meta`: the upload limit, what is left of the
/// conversation's quota and, for a visitor no agent has joined yet, of their allowance;
/// whichever is smallest.
async fn room(state: &AppState, role: &Role, meta: &ConversationMeta) -> HttpResult<Room> {
    let config = &state.config;
    let used = state.hub.log().files_size(meta.id.clone()).await?;
    let mut rooms = vec![
        Room {
            bytes: config.max_upload,
            full: format!(
                "The file is larger than the {} limit.",
                megabytes(config.max_upload)
            ),
        },
        Room {
            bytes: config.conversation_quota.saturating_sub(used),
            full: format!(
                "This conversation has no room for this file: its files may take {} in all.",
                megabytes(config.conversation_quota)
            ),
        },
    ];
    if let Some(max) = meta.features.max_upload {
        rooms.push(Room {
            bytes: max,
            full: format!(
                "The file is larger than this site's {} limit.",
                megabytes(max)
            ),
        });
    }
    if matches!(role, Role::Visitor { .. }) && meta.agent.is_none() {
        rooms.push(Room {
            bytes: config.upload_allowance.saturating_sub(used),
            full: format!(
                "Files up to {} in all can be sent before an agent joins. Please wait for one.",
                megabytes(config.upload_allowance)
            ),
        });
    }
    Ok(rooms
        .into_iter()
        .min_by_key(|r| r.bytes)
        .expect("at least one"))
}

/// The window over which an upload's rate is measured.
const RATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// Streams the body to `path`, hashing as it goes; at most `limit` bytes. Returns the size,
/// the SHA-256 and the first 512 bytes (for sniffing).
async fn receive(
    body: Body,
    path: &std::path::Path,
    limit: u64,
    min_rate: u64,
) -> Result<(u64, String, Vec<u8>), Receive> {
    // Readable by this user only, like the database.
    let mut out = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await
        .map_err(Receive::Io)?;
    let mut stream = body.into_data_stream();
    let (mut size, mut hash, mut head) = (0u64, Sha256::new(), Vec::with_capacity(512));
    // Every 10 s must bring `min_rate` bytes a second at least: a client trickling a byte now
    // and then would hold a connection and a file open for ever.
    let window_min = min_rate.saturating_mul(RATE_WINDOW.as_secs());
    let mut window_end = tokio::time::Instant::now() + RATE_WINDOW;
    let mut window_bytes = 0u64;
    loop {
        let next = tokio::time::timeout_at(window_end, stream.next()).await;
        let now = tokio::time::Instant::now();
        if now >= window_end {
            if window_bytes < window_min {
                return Err(Receive::TooSlow);
            }
            window_end = now + RATE_WINDOW;
            window_bytes = 0;
        }
        let chunk = match next {
            Ok(Some(chunk)) => chunk.map_err(|_| Receive::Aborted)?,
            Ok(None) => break,
            Err(_) => continue, // a quiet window that had brought enough before
        };
        size += chunk.len() as u64;
        window_bytes += chunk.len() as u64;
        if size > limit {
            return Err(Receive::TooBig);
        }
        hash.update(&chunk);
        let room = 512 - head.len();
        head.extend_from_slice(&chunk[..room.min(chunk.len())]);
        out.write_all(&chunk).await.map_err(Receive::Io)?;
    }
    // Durable before the message that points at it is acknowledged.
    out.sync_all().await.map_err(Receive::Io)?;
    Ok((size, secrets::hex(&hash.finalize()), head))
}

/// Files older than this that no message points at are removed by [`sweep`] (younger ones
/// may be an upload still on its way).
pub const ORPHAN_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes from `dir` what no stored message will ever point at: partial uploads and files
/// without a record (a crash between the disk and the database), once older than
/// [`ORPHAN_AGE`]. Returns how many went.
pub async fn sweep(log: &dyn crate::store::Log, dir: &std::path::Path) -> std::io::Result<usize> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut old = Vec::new();
    while let Some(entry) = entries.next_entry().await? {
        let age = entry.metadata().await?.modified()?.elapsed();
        if age.is_ok_and(|age| age >= ORPHAN_AGE) {
            old.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    // One question to the store for all of them, not one per file.
    let ids = old.iter().filter(|n| !n.starts_with(".part-"));
    let known: std::collections::HashSet<FileId> = log
        .known_files(ids.map(|n| FileId(n.clone())).collect())
        .await
        .map_err(std::io::Error::other)?
        .into_iter()
        .collect();
    let mut removed = 0;
    for name in old {
        if !known.contains(&FileId(name.clone()))
            && tokio::fs::remove_file(dir.join(&name)).await.is_ok()
        {
            removed += 1;
        }
    }
    Ok(removed)
}

fn internal(e: impl std::fmt::Display) -> HttpError {
    tracing::error!("files: {e}");
    HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// `GET /files/{id}` (a name may follow: `/files/{id}/{name}`): the bytes, to the
/// conversation's participants only, always as a download.
pub(crate) async fn download(
    State(state): State<AppState>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> HttpResult<Response> {
    let id = FileId(path.split('/').next().unwrap_or_default().to_owned());
    let role: Role = caller_role(&state, &headers)
        .await?
        .ok_or_else(|| HttpError::new(StatusCode::FORBIDDEN, "log in or open the chat first"))?;
    let (conversation, file) = state
        .hub
        .log()
        .file(id.clone())
        .await?
        .ok_or_else(|| HttpError::new(StatusCode::NOT_FOUND, "no such file"))?;
    let meta = state.hub.meta(&conversation).await.map_err(relay_error)?;
    role.may_read(&meta).map_err(relay_error)?;
    let bytes = tokio::fs::File::open(state.files_dir.join(&file.id.0))
        .await
        .map_err(internal)?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        bytes,
        256 * 1024,
    ));
    let mut res = Response::new(body);
    let h = res.headers_mut();
    let value = |s: &str| HeaderValue::from_str(s).map_err(internal);
    h.insert(header::CONTENT_TYPE, value(&file.mime)?);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(file.size));
    h.insert(
        header::CONTENT_DISPOSITION,
        value(&disposition(&file.name))?,
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400"),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_by_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n....", false), "image/png");
        assert_eq!(sniff(b"\xff\xd8\xff\xe0", true), "image/jpeg");
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ", true), "image/webp");
        assert_eq!(sniff(b"%PDF-1.7", true), "application/pdf");
        assert_eq!(
            sniff("héllo\n".as_bytes(), true),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            sniff(b"<svg onload=alert(1)>", true),
            "text/plain; charset=utf-8"
        );
        assert_eq!(sniff(b"\x00\x01\x02", true), "application/octet-stream");
        // A multi-byte character cut by the sample is still text; a broken one is not.
        assert_eq!(
            sniff(&"é".as_bytes()[..1], false),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            sniff(&"é".as_bytes()[..1], true),
            "application/octet-stream"
        );
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_name("C:\\Users\\me\\report.pdf"), "report.pdf");
        assert_eq!(clean_name("a\u{0}b\nc.txt"), "abc.txt");
        assert_eq!(clean_name(".."), "file");
        assert_eq!(clean_name("invoice\u{202E}gpj.exe"), "invoicegpj.exe");
        assert_eq!(clean_name("\u{2067}a\u{2069}.txt"), "a.txt");
        assert_eq!(clean_name(""), "file");
    }

    #[test]
    fn disposition_is_safe_ascii_plus_utf8() {
        assert_eq!(
            disposition("naïve \"x\".png"),
            "attachment; filename=\"na_ve _x_.png\"; filename*=UTF-8''na%C3%AFve%20%22x%22.png"
        );
    }
}
