//! The client's text in the viewer's language. The code writes English and wraps each text in
//! [`t`] (or [`tf`] with `{name}` placeholders); the translations are the protocol crate's
//! `locales/*.txt` tables. The language is chosen once, when the page starts: the widget's by
//! the relay (the page's `<html lang>`, from `data-locale`, the browser's languages and the
//! site's default), the console's by the agent (kept in this browser) or the browser.

use escalera_protocol::i18n::{self, Table};
use std::sync::OnceLock;

struct Chosen {
    tag: &'static str,
    tables: Vec<Table>,
}

static CHOSEN: OnceLock<Chosen> = OnceLock::new();

/// Where the console keeps the agent's choice of language, in this browser.
pub const CHOICE_KEY: &str = "escalera.lang";

/// Speaks `tag` from now on, with the texts of these sections of the locale files (the widget
/// names only its own, so its code carries none of the console's texts). The first call wins.
pub fn start(tag: &str, sections: &[i18n::Section]) {
    let tag = i18n::supported(tag).unwrap_or("en");
    let tables: Vec<Table> = sections
        .iter()
        .filter_map(|s| i18n::table(s, tag))
        .collect();
    let _ = CHOSEN.set(Chosen { tag, tables });
    if let Some(root) = leptos::prelude::document().document_element() {
        let _ = root.set_attribute("lang", tag);
    }
}

/// The language being spoken, e.g. `es`.
pub fn lang() -> &'static str {
    CHOSEN.get().map_or("en", |c| c.tag)
}

/// `english` in the viewer's language.
pub fn t(english: &'static str) -> &'static str {
    match CHOSEN.get() {
        Some(c) => i18n::lookup(&c.tables, english),
        None => english,
    }
}

/// `english` in the viewer's language, with its `{name}` placeholders filled.
pub fn tf(english: &'static str, values: &[(&str, &str)]) -> String {
    i18n::fill(t(english), values)
}

/// A text that came from the relay (an error's reason), translated when the tables know it.
pub fn t_relay(text: &str) -> String {
    match CHOSEN.get() {
        Some(c) => i18n::lookup(&c.tables, text).to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The English texts passed to `t(...)` or `tf(...)` as literals in a source file (rustfmt
    /// may put the literal on the next line).
    fn texts(source: &str) -> Vec<String> {
        let mut out = Vec::new();
        for call in ["t(", "tf("] {
            for (at, _) in source.match_indices(call) {
                let before = source[..at].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let Some(rest) = source[at + call.len()..].trim_start().strip_prefix('"') else {
                    continue;
                };
                let mut text = String::new();
                let mut chars = rest.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some('n') => text.push('\n'),
                            Some(c) => text.push(c),
                            None => break,
                        },
                        c => text.push(c),
                    }
                }
                out.push(text);
            }
        }
        out
    }

    /// Every text the code translates is in every language's file, in a section its page
    /// loads; and every entry of those sections is still used.
    #[test]
    fn every_language_has_every_text_and_nothing_stale() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        rust_files(&root.join("src"), &mut files);
        let mut widget = BTreeSet::new();
        let mut console = BTreeSet::new();
        // (This file's own test has sample calls.)
        for file in files.iter().filter(|f| !f.ends_with("i18n.rs")) {
            let source = std::fs::read_to_string(file).unwrap();
            let set = if file.starts_with(root.join("src/console")) {
                &mut console
            } else {
                &mut widget
            };
            set.extend(texts(&source));
        }
        // The record's own lines are said by the protocol crate, for the widget and email.
        let events = std::fs::read_to_string(root.join("../protocol/src/lib.rs")).unwrap();
        widget.extend(texts(&events));
        assert!(widget.contains("Send"), "the scan finds the widget's texts");
        assert!(
            widget.contains("Missed call"),
            "the scan finds the record's lines"
        );
        // What the relay and the protocol's checks say, which the client translates with
        // `t_relay` or `t` at run time.
        let mut relay = Vec::new();
        rust_files(&root.join("../relay/src"), &mut relay);
        rust_files(&root.join("../protocol/src"), &mut relay);
        let relay: String = relay
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect();
        let mut problems = Vec::new();
        for tag in i18n::TRANSLATED {
            let w = i18n::table(i18n::WIDGET, tag).unwrap_or_default();
            let c = i18n::table(i18n::CONSOLE, tag).unwrap_or_default();
            let has = |t: Table, text: &str| t.iter().any(|(k, _)| *k == text);
            for text in &widget {
                if !has(w, text) {
                    problems.push(format!("{tag}.txt [widget] lacks {text:?}"));
                }
            }
            for text in &console {
                if !has(w, text) && !has(c, text) {
                    problems.push(format!("{tag}.txt [console] lacks {text:?}"));
                }
            }
            for (section, table) in [("widget", w), ("console", c)] {
                for (text, _) in table {
                    let used = widget.contains(*text)
                        || console.contains(*text)
                        || *text == "English"
                        || relay.contains(&format!("{text:?}"));
                    if !used {
                        problems.push(format!("{tag}.txt [{section}] has unused {text:?}"));
                    }
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn the_scan_reads_literals_with_escapes_and_skips_other_calls() {
        let source = r#"t("Send") tf("{name} said \"hi\"", &[]) list.get("x") tft("no") t(x)
            tf(
                "{n} on the next line",
                &[]
            )"#;
        assert_eq!(
            texts(source),
            ["Send", "{name} said \"hi\"", "{n} on the next line"]
        );
    }
}
