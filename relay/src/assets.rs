//! The client's files (Trunk's `dist/`) and `widget.js`: built into the binary by `build.rs`
//! with their brotli and gzip variants, or read from a folder given with `--assets` while
//! developing (then served as they are). A request gets the variant its `Accept-Encoding` asks
//! for, with `Vary: Accept-Encoding`.

use std::path::Path;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

/// One file with its precompressed variants (each only if smaller than the file).
pub struct Asset {
    /// Its path under dist/.
    pub path: &'static str,
    /// The file as it is.
    pub raw: &'static [u8],
    /// Brotli, quality 11.
    pub br: Option<&'static [u8]>,
    /// gzip, level 9.
    pub gzip: Option<&'static [u8]>,
}

mod built {
    use super::Asset;
    include!(concat!(env!("OUT_DIR"), "/client_files.rs"));
}

pub use built::WIDGET_JS;

/// Whether a client was built into this binary.
pub fn embedded() -> bool {
    !built::FILES.is_empty()
}

/// A content coding a response can be sent in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `br`
    Brotli,
    /// `gzip`
    Gzip,
    /// As it is.
    Identity,
}

impl Encoding {
    /// The codings a request's `Accept-Encoding` allows, best first (brotli, then gzip, then
    /// none). A coding with `q=0` is refused; `*` stands for any coding not named.
    pub fn accepted(headers: &HeaderMap) -> Vec<Encoding> {
        let value = headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        let q_of = |name: &str| -> Option<bool> {
            value.split(',').find_map(|item| {
                let mut parts = item.split(';').map(str::trim);
                let coding = parts.next()?;
                if !coding.eq_ignore_ascii_case(name) {
                    return None;
                }
                let zero = parts.any(|p| {
                    p.strip_prefix("q=")
                        .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
                });
                Some(!zero)
            })
        };
        let any = q_of("*").unwrap_or(false);
        let mut out = Vec::new();
        for (name, enc) in [("br", Encoding::Brotli), ("gzip", Encoding::Gzip)] {
            if q_of(name).unwrap_or(any) {
                out.push(enc);
            }
        }
        out.push(Encoding::Identity);
        out
    }

    fn header(self) -> Option<&'static str> {
        match self {
            Encoding::Brotli => Some("br"),
            Encoding::Gzip => Some("gzip"),
            Encoding::Identity => None,
        }
    }
}

/// A file ready to send: its bytes in one coding.
pub struct Body {
    /// The bytes, encoded as `encoding` says.
    pub bytes: Bytes,
    /// Their content coding.
    pub encoding: Encoding,
}

impl Asset {
    /// The best variant of this file for a request that accepts `accepted`.
    pub fn body(&self, accepted: &[Encoding]) -> Body {
        let pick = accepted.iter().find_map(|enc| match enc {
            Encoding::Brotli => self.br.map(|b| (b, *enc)),
            Encoding::Gzip => self.gzip.map(|b| (b, *enc)),
            Encoding::Identity => Some((self.raw, *enc)),
        });
        let (bytes, encoding) = pick.unwrap_or((self.raw, Encoding::Identity));
        Body {
            bytes: Bytes::from_static(bytes),
            encoding,
        }
    }
}

/// `path` (relative to dist/) for a request that accepts `accepted`: from `dir` if given (as it
/// is), else from the binary.
pub async fn load(dir: Option<&Path>, path: &str, accepted: &[Encoding]) -> Option<Body> {
    if !safe(path) {
        return None;
    }
    match dir {
        Some(dir) => tokio::fs::read(dir.join(path)).await.ok().map(|b| Body {
            bytes: Bytes::from(b),
            encoding: Encoding::Identity,
        }),
        None => built::FILES
            .iter()
            .find(|a| a.path == path)
            .map(|a| a.body(accepted)),
    }
}

/// Whether `path` stays inside dist/: no `..`, no empty part (so no leading `/`).
fn safe(path: &str) -> bool {
    !path.split('/').any(|part| part == ".." || part.is_empty())
}

/// A response with `body`, its Content-Type and Cache-Control, and the headers its coding needs.
pub fn respond(body: Body, content_type: &'static str, cache: &'static str) -> Response {
    let mut res = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
            (header::VARY, "accept-encoding"),
        ],
        body.bytes,
    )
        .into_response();
    if let Some(coding) = body.encoding.header() {
        res.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
    }
    res
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

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(value: Option<&str>) -> Vec<Encoding> {
        let mut headers = HeaderMap::new();
        if let Some(v) = value {
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        Encoding::accepted(&headers)
    }

    #[test]
    fn brotli_first_then_gzip_then_as_it_is() {
        use Encoding::*;
        assert_eq!(accepted(None), [Identity]);
        assert_eq!(
            accepted(Some("gzip, deflate, br, zstd")),
            [Brotli, Gzip, Identity]
        );
        assert_eq!(accepted(Some("gzip")), [Gzip, Identity]);
        assert_eq!(accepted(Some("BR;q=1.0")), [Brotli, Identity]);
        assert_eq!(accepted(Some("br;q=0, gzip;q=0.5")), [Gzip, Identity]);
        assert_eq!(accepted(Some("*")), [Brotli, Gzip, Identity]);
        assert_eq!(accepted(Some("*;q=0.1, br;q=0")), [Gzip, Identity]);
        assert_eq!(accepted(Some("identity")), [Identity]);
    }

    #[test]
    fn a_variant_is_used_only_where_there_is_one() {
        let asset = Asset {
            path: "a.png",
            raw: b"raw",
            br: None,
            gzip: Some(b"gz"),
        };
        let body = asset.body(&[Encoding::Brotli, Encoding::Gzip, Encoding::Identity]);
        assert_eq!(
            (&body.bytes[..], body.encoding),
            (&b"gz"[..], Encoding::Gzip)
        );
        let body = asset.body(&[Encoding::Brotli, Encoding::Identity]);
        assert_eq!(
            (&body.bytes[..], body.encoding),
            (&b"raw"[..], Encoding::Identity)
        );
    }

    #[test]
    fn paths_that_leave_dist_are_refused() {
        for path in [
            "../secret",
            "widget/../../secret",
            "/etc/passwd",
            "a//b",
            "",
        ] {
            assert!(!safe(path), "{path}");
        }
        assert!(safe("widget/index.html"));
    }
}
