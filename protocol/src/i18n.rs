//! Escalera's languages. English is the source text, written in the code; every other
//! language is one file, `protocol/locales/TAG.txt`, turned into tables at build time. The
//! widget, the console and the relay (launcher labels) look their text up here, falling back to
//! the English when a language lacks an entry.

include!(concat!(env!("OUT_DIR"), "/locales.rs"));

/// A table of `(English, translation)` pairs, sorted by the English.
pub type Table = &'static [(&'static str, &'static str)];

/// A section of the locale files: each language's table.
pub type Section = &'static [(&'static str, Table)];

/// The language tags Escalera speaks, English first.
pub fn languages() -> impl Iterator<Item = &'static str> {
    std::iter::once("en").chain(TRANSLATED.iter().copied())
}

/// The table of `section` for language `tag`, if it has one.
pub fn table(section: Section, tag: &str) -> Option<Table> {
    section
        .iter()
        .find(|(t, _)| *t == tag)
        .map(|(_, table)| *table)
}

/// `english` in a table, or `english` itself.
pub fn lookup<'a>(tables: &[Table], english: &'a str) -> &'a str {
    tables
        .iter()
        .find_map(|t| {
            t.binary_search_by(|(k, _)| (*k).cmp(english))
                .ok()
                .map(|i| t[i].1)
        })
        .unwrap_or(english)
}

/// A language's own name ("Español"), from its `[widget]` entry for "English".
pub fn own_name(tag: &str) -> &'static str {
    let tables: Vec<Table> = table(WIDGET, tag).into_iter().collect();
    lookup(&tables, "English")
}

/// The language Escalera speaks that best matches a tag such as `es-MX` or `ES`: the exact tag,
/// else its primary subtag (`es`).
pub fn supported(tag: &str) -> Option<&'static str> {
    let tag = tag.trim().to_ascii_lowercase();
    let primary = tag.split(['-', '_']).next().unwrap_or("");
    languages()
        .find(|l| *l == tag)
        .or_else(|| languages().find(|l| *l == primary))
}

/// The first language Escalera speaks from a list in order of preference, e.g. an HTTP
/// `Accept-Language` header (`es-ES,es;q=0.9,en;q=0.8`, weights honoured).
pub fn from_accept_language(header: &str) -> Option<&'static str> {
    let mut wanted: Vec<(u16, usize, &str)> = header
        .split(',')
        .enumerate()
        .filter_map(|(i, item)| {
            let mut parts = item.split(';');
            let tag = parts.next()?.trim();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(Some(1000), |q| {
                    q.trim().parse::<f32>().ok().map(|q| (q * 1000.0) as u16)
                })?;
            (q > 0 && !tag.is_empty() && tag != "*").then_some((q, i, tag))
        })
        .collect();
    wanted.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    wanted.into_iter().find_map(|(_, _, tag)| supported(tag))
}

/// A text with each `{name}` replaced by its value.
pub fn fill(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = text.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_is_sorted_so_lookups_find_every_entry() {
        for section in [WIDGET, CONSOLE, RELAY] {
            for (tag, table) in section {
                assert!(
                    table.windows(2).all(|w| w[0].0 < w[1].0),
                    "{tag} is not sorted"
                );
                for (en, there) in *table {
                    assert_eq!(lookup(&[table], en), *there);
                }
            }
        }
    }

    #[test]
    fn spanish_is_spoken_and_unknown_text_falls_back_to_english() {
        assert_eq!(languages().collect::<Vec<_>>(), ["en", "es"]);
        assert_eq!(own_name("es"), "Español");
        assert_eq!(own_name("en"), "English");
        let es = [table(WIDGET, "es").unwrap()];
        assert_eq!(lookup(&es, "Send"), "Enviar");
        assert_eq!(lookup(&es, "no such text"), "no such text");
    }

    #[test]
    fn languages_are_matched_by_tag_then_primary_subtag() {
        assert_eq!(supported("es-MX"), Some("es"));
        assert_eq!(supported("ES"), Some("es"));
        assert_eq!(supported("en_GB"), Some("en"));
        assert_eq!(supported("fr"), None);
        assert_eq!(
            from_accept_language("fr-FR,fr;q=0.9,es;q=0.8,en;q=0.7"),
            Some("es")
        );
        assert_eq!(from_accept_language("en;q=0.5, es-AR"), Some("es"));
        assert_eq!(from_accept_language("es;q=0, de"), None);
        assert_eq!(from_accept_language(""), None);
    }

    #[test]
    fn placeholders_are_filled_by_name() {
        assert_eq!(
            fill("{who} llamó a {whom}", &[("whom", "Cy"), ("who", "Ana")]),
            "Ana llamó a Cy"
        );
    }
}
