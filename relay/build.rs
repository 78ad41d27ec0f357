//! Embeds the Trunk-built client (`client/dist`, or `$ESCALERA_CLIENT_DIST`) into the binary,
//! so that one file is the whole product. Without a built client the list is empty and the
//! relay says so on its pages (tests of the relay alone do not need the client).

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=ESCALERA_CLIENT_DIST");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let dist = std::env::var_os("ESCALERA_CLIENT_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../client/dist"));
    println!("cargo:rerun-if-changed={}", dist.display());

    let mut files = Vec::new();
    if dist.is_dir() {
        collect(&dist, &dist, &mut files);
    }
    files.sort();
    let mut out = String::from("/// The built client: (path under dist/, bytes).\npub static FILES: &[(&str, &[u8])] = &[\n");
    for (rel, abs) in &files {
        writeln!(
            out,
            "    ({rel:?}, include_bytes!({:?})),",
            abs.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let out_path = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("client_files.rs");
    std::fs::write(out_path, out).unwrap();
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
