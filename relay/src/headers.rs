//! Security headers on every answer, and the Content-Security-Policy of the two pages: scripts
//! only from the relay itself, plus Trunk's one inline loader by its hash; WebAssembly allowed
//! to compile; nothing inline otherwise. Violations are reported to `/api/csp-report` and
//! logged.

use std::sync::LazyLock;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};

use crate::AppState;

/// `nosniff`, `no-referrer` everywhere; `no-store` on the API; HSTS over https.
pub async fn security(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if api {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if state.config.secure_cookies {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    res
}

/// The `'sha256-…'` source of every inline `<script>` of a page (Trunk writes one, the loader
/// that starts the WebAssembly).
pub fn inline_script_hashes(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let after = &rest[start..];
        let Some(open_end) = after.find('>') else {
            break;
        };
        let tag = &after[..open_end];
        let body_and_more = &after[open_end + 1..];
        let Some(close) = body_and_more.find("</script>") else {
            break;
        };
        if !tag.contains(" src=") {
            let digest = Sha256::digest(&body_and_more.as_bytes()[..close]);
            out.push(format!("'sha256-{}'", crate::ice::base64(&digest)));
        }
        rest = &body_and_more[close..];
    }
    out
}

/// The policy of a page whose inline scripts hash to `hashes`, framed only by `ancestors`.
pub fn page_policy(hashes: &[String], ancestors: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval' {}; style-src 'self'; \
         img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; \
         font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}; \
         report-uri /api/csp-report",
        hashes.join(" ")
    )
}

/// At most this many violation reports a minute are logged (anyone can post them).
static REPORTS: LazyLock<DefaultDirectRateLimiter> = LazyLock::new(|| {
    RateLimiter::direct(Quota::per_minute(std::num::NonZeroU32::new(30).unwrap()))
});

/// `POST /api/csp-report`: a browser reports that the policy blocked something.
pub async fn csp_report(body: Bytes) -> StatusCode {
    if REPORTS.check().is_ok() {
        let report: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let r = &report["csp-report"];
        // Quoted (Debug): the report is anyone's text, and must not forge log lines.
        tracing::warn!(
            directive = ?r["violated-directive"].as_str().unwrap_or("?"),
            blocked = ?r["blocked-uri"].as_str().unwrap_or("?"),
            page = ?r["document-uri"].as_str().unwrap_or("?"),
            "csp violation"
        );
    }
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_scripts_are_hashed_and_external_ones_are_not() {
        let html = "<head><script type=\"module\">\nalert(1)\n</script>\
                    <script src=\"/app/x.js\"></script><script>b()</script></head>";
        let hashes = inline_script_hashes(html);
        // python3: base64(sha256(b"\nalert(1)\n").digest())
        assert_eq!(
            hashes,
            [
                "'sha256-J8+4/wmqNoqVGih0Xof49bzVEIwR8aHhR5HvZK1wlzY='".to_owned(),
                format!("'sha256-{}'", crate::ice::base64(&Sha256::digest(b"b()")))
            ]
        );
        let policy = page_policy(&hashes, "'none'");
        assert!(policy.contains("script-src 'self' 'wasm-unsafe-eval' 'sha256-"));
        assert!(!policy.contains("unsafe-inline"));
    }
}
