//! Splits one page of the browser app after Trunk built it, so that the code behind a
//! `#[lazy]` function (the calls) loads on its first use and the page starts with the rest.
//!
//! ```text
//! escalera-split WASM DIST
//! ```
//!
//! `WASM` is cargo's output for the page (linked with `--emit-relocs`, see .cargo/config.toml);
//! `DIST` is the page's folder in `client/dist`, where Trunk left `NAME-HASH.js`,
//! `NAME-HASH_bg.wasm` and the `index.html` that loads them. Trunk ran wasm-bindgen on the
//! whole module, which cannot load a split one, so those two files are made again here:
//!
//! 1. the module is split (wasm_split_cli_support): a main module, one chunk per split, and
//!    the loader (JavaScript) that fetches a chunk into the main module's memory and table;
//! 2. wasm-bindgen makes `NAME-HASH.js` and `NAME-HASH_bg.wasm` from the main module;
//! 3. wasm-opt (-Oz) shrinks the main module and each chunk;
//! 4. the loader and the chunks get a hash of everything in their names, written into the
//!    files that name them, since the relay serves the app's files as never changing.
//!
//! wasm-bindgen and wasm-opt are taken from `PATH` (scripts/tools.sh installs them). With
//! `ESCALERA_SPLIT_NAMES=1` the modules keep their function names, for a size profile.

use std::path::Path;
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

/// The loader's name until the hash is known; the same length as the final name, because it
/// is also written inside the main module (its import module), where it is replaced in place.
const LOADER_PLACEHOLDER: &str = "./split-________________.js";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [wasm, dist] = args.as_slice() else {
        bail!("usage: escalera-split WASM DIST");
    };
    let report = split(Path::new(wasm), Path::new(dist))?;
    println!("{report}");
    Ok(())
}

/// The files of one page's app that this writes.
struct Output {
    /// `NAME-HASH`: Trunk's name for the page's script and module.
    stem: String,
    /// The main module, after wasm-opt.
    main: Vec<u8>,
    /// The wasm-bindgen script.
    script: Vec<u8>,
    /// The loader script.
    loader: Vec<u8>,
    /// Each chunk: its file stem and bytes.
    chunks: Vec<(String, Vec<u8>)>,
}

fn split(wasm: &Path, dist: &Path) -> Result<String> {
    let stem = trunk_stem(dist, wasm)?;
    // Scratch beside cargo's output, not in the dist folder the relay embeds.
    let work = wasm.with_extension("split");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let input = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let main_split = work.join("main.wasm");
    let main_module = format!("./{stem}.js");
    let mut options = wasm_split_cli_support::Options::new(&input);
    options.output_dir = &work;
    options.main_out_path = &main_split;
    options.main_module = &main_module;
    options.link_name = LOADER_PLACEHOLDER;
    let split = wasm_split_cli_support::transform(options)
        .map_err(|e| anyhow!("splitting {}: {e:?}", wasm.display()))?;

    // --keep-lld-exports: the loader needs the function table the chunks are linked into.
    run(Command::new("wasm-bindgen")
        .args(["--target", "web", "--no-typescript", "--keep-lld-exports"])
        .arg("--out-name")
        .arg(&stem)
        .arg("--out-dir")
        .arg(&work)
        .arg(&main_split))?;
    let main_path = work.join(format!("{stem}_bg.wasm"));
    let mut chunks = Vec::new();
    for path in std::iter::once(&main_path).chain(&split.split_modules) {
        run(Command::new("wasm-opt")
            .args([
                "-Oz",
                "--enable-bulk-memory",
                "--enable-nontrapping-float-to-int",
            ])
            // Function names kept, for a size profile (twiggy top).
            .args(std::env::var_os("ESCALERA_SPLIT_NAMES").map(|_| "-g"))
            .arg(path)
            .arg("-o")
            .arg(path))?;
    }
    for path in &split.split_modules {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .context("a chunk without a name")?;
        chunks.push((name.to_owned(), std::fs::read(path)?));
    }
    let loader = std::fs::read(work.join(LOADER_PLACEHOLDER.trim_start_matches("./")))
        .context("the splitter wrote no loader")?;
    let out = Output {
        main: std::fs::read(&main_path)?,
        script: std::fs::read(work.join(format!("{stem}.js")))?,
        loader,
        chunks,
        stem,
    };
    let report = out.write(dist)?;
    std::fs::remove_dir_all(&work)?;
    Ok(report)
}

impl Output {
    /// Names the loader and chunks by the hash of everything, writes every file into `dist`,
    /// and says what it wrote.
    fn write(mut self, dist: &Path) -> Result<String> {
        let mut all = Vec::new();
        for bytes in [&self.main, &self.script, &self.loader] {
            all.extend_from_slice(bytes);
        }
        for (_, bytes) in &self.chunks {
            all.extend_from_slice(bytes);
        }
        let hash = format!("{:016x}", fnv1a(&all));
        let loader = format!("./split-{hash}.js");
        debug_assert_eq!(loader.len(), LOADER_PLACEHOLDER.len());
        for bytes in [&mut self.main, &mut self.script, &mut self.loader] {
            replace(bytes, LOADER_PLACEHOLDER.as_bytes(), loader.as_bytes());
        }
        for (name, _) in &mut self.chunks {
            let hashed = format!("{name}-{hash}");
            replace(
                &mut self.loader,
                format!("./{name}.wasm").as_bytes(),
                format!("./{hashed}.wasm").as_bytes(),
            );
            *name = hashed;
        }
        if find(&self.main, LOADER_PLACEHOLDER.as_bytes()).is_some()
            || find(&self.script, LOADER_PLACEHOLDER.as_bytes()).is_some()
        {
            bail!("the loader's name is still a placeholder");
        }
        // A build before this one may have left other chunks.
        for entry in std::fs::read_dir(dist)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("split") {
                std::fs::remove_file(&path)?;
            }
        }
        let stem = &self.stem;
        std::fs::write(dist.join(format!("{stem}_bg.wasm")), &self.main)?;
        std::fs::write(dist.join(format!("{stem}.js")), &self.script)?;
        std::fs::write(dist.join(loader.trim_start_matches("./")), &self.loader)?;
        let mut report = format!("{stem}: main {} B", self.main.len());
        for (name, bytes) in &self.chunks {
            std::fs::write(dist.join(format!("{name}.wasm")), bytes)?;
            report += &format!(", {name}.wasm {} B", bytes.len());
        }
        Ok(report)
    }
}

/// Trunk's `NAME-HASH` for the module cargo built as `wasm` (NAME is its file stem).
fn trunk_stem(dist: &Path, wasm: &Path) -> Result<String> {
    let name = wasm
        .file_stem()
        .and_then(|s| s.to_str())
        .context("the module has no name")?;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dist).with_context(|| format!("reading {}", dist.display()))? {
        let file = entry?.file_name();
        let file = file.to_string_lossy();
        if let Some(stem) = file
            .strip_suffix("_bg.wasm")
            .filter(|s| s.starts_with(&format!("{name}-")))
        {
            found.push(stem.to_owned());
        }
    }
    match found.as_slice() {
        [stem] => Ok(stem.clone()),
        _ => bail!(
            "expected one {name}-HASH_bg.wasm in {}, found {found:?}",
            dist.display()
        ),
    }
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

/// 64-bit FNV-1a: the same bytes give the same name with any toolchain.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Replaces every `from` in `bytes` with `to`.
fn replace(bytes: &mut Vec<u8>, from: &[u8], to: &[u8]) {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = &bytes[..];
    while let Some(at) = find(rest, from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    *bytes = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_changes_every_occurrence_and_nothing_else() {
        let mut bytes = b"a ./x.js b ./x.js".to_vec();
        replace(&mut bytes, b"./x.js", b"./y-1.js");
        assert_eq!(bytes, b"a ./y-1.js b ./y-1.js");
    }

    #[test]
    fn the_hashed_loader_name_has_the_placeholders_length() {
        assert_eq!(
            format!("./split-{:016x}.js", fnv1a(b"anything")).len(),
            LOADER_PLACEHOLDER.len()
        );
    }
}
