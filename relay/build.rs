//! Embeds the Trunk-built client (`client/dist`, or `$ESCALERA_CLIENT_DIST`) and `widget.js`
//! into the binary, so that one file is the whole product, each with its brotli and gzip
//! variants compressed here once, at build time, so the relay serves them without compressing
//! anything per request. Without a built client the list is empty and the relay says so on its
//! pages (tests of the relay alone do not need the client).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=ESCALERA_CLIENT_DIST");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let dist = std::env::var_os("ESCALERA_CLIENT_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../client/dist"));
    println!("cargo:rerun-if-changed={}", dist.display());
    let widget_js = manifest.join("static/widget.js");
    println!("cargo:rerun-if-changed={}", widget_js.display());
    println!("cargo:rerun-if-changed=src/slim.rs");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let packed = out.join("packed");
    std::fs::create_dir_all(&packed).unwrap();

    let mut files = Vec::new();
    if dist.is_dir() {
        collect(&dist, &dist, &mut files);
    }
    files.sort();
    let mut code = String::from(
        "/// The built client, by path under dist/.\npub static FILES: &[Asset] = &[\n",
    );
    for (i, (rel, abs)) in files.iter().enumerate() {
        writeln!(
            code,
            "    {},",
            asset(rel, abs, &packed.join(i.to_string()))
        )
        .unwrap();
    }
    code.push_str("];\n");
    writeln!(
        code,
        "/// The embed loader.\npub static WIDGET_JS: Asset = {};",
        asset(
            "widget.js",
            &slim_widget_js(&widget_js, &out),
            &packed.join("widget.js")
        )
    )
    .unwrap();
    std::fs::write(out.join("client_files.rs"), code).unwrap();
}

/// An `Asset { .. }` expression for one file: its bytes, and each compressed variant that is
/// smaller than the file, written next to `stem`.
fn asset(rel: &str, path: &Path, stem: &Path) -> String {
    let raw = std::fs::read(path).unwrap();
    let compressible = matches!(
        rel.rsplit('.').next(),
        Some("html" | "js" | "css" | "wasm" | "svg" | "json")
    );
    let variant = |ext: &str, compress: fn(&[u8]) -> Vec<u8>| {
        let packed = compress(&raw);
        if !compressible || packed.len() >= raw.len() {
            return "None".to_owned();
        }
        let file = stem.with_extension(ext);
        std::fs::write(&file, packed).unwrap();
        format!("Some(include_bytes!({:?}))", file.display().to_string())
    };
    format!(
        "Asset {{ path: {rel:?}, raw: include_bytes!({:?}), br: {}, gzip: {} }}",
        path.display().to_string(),
        variant("br", brotli),
        variant("gz", gzip),
    )
}

/// widget.js slimmed ([`slim_js`]), written to `out`; returns its path.
fn slim_widget_js(source: &Path, out: &Path) -> PathBuf {
    let path = out.join("widget.slim.js");
    std::fs::write(&path, slim_js(&std::fs::read_to_string(source).unwrap())).unwrap();
    path
}

include!("src/slim.rs");

/// Brotli at its best quality: done once per build, read by every visitor.
fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        lgwin: 22,
        size_hint: data.len(),
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &data[..], &mut out, &params).unwrap();
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            files.push((rel, path.canonicalize().unwrap()));
        }
    }
}
