//! The client's files (Trunk's `dist/`): built into the binary by `build.rs`, or read from a
//! folder given with `--assets` while developing.

use std::path::Path;

use axum::body::Bytes;

mod built {
    include!(concat!(env!("OUT_DIR"), "/client_files.rs"));
}

/// Whether a client was built into this binary.
pub fn embedded() -> bool {
    !built::FILES.is_empty()
}

/// The bytes of `path` (relative to dist/), from `dir` if given, else from the binary.
pub async fn load(dir: Option<&Path>, path: &str) -> Option<Bytes> {
    if path.split('/').any(|part| part == ".." || part.is_empty()) {
        return None;
    }
    match dir {
        Some(dir) => tokio::fs::read(dir.join(path)).await.ok().map(Bytes::from),
        None => built::FILES
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, bytes)| Bytes::from_static(bytes)),
    }
}

/// The Content-Type for a file name.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}
