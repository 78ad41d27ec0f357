// Shared by build.rs (through `include!`) and the crate: keep it free of `//!` and `use`.

/// widget.js as host pages get it: without its comments, blank lines and indentation (they are
/// for us, not for every page view). Whole-line `//` comments and `/* … */` blocks that start a
/// line go; nothing else is touched, so no comment may share a line with code.
pub fn slim_js(js: &str) -> String {
    let mut slim = String::new();
    let mut in_block = false;
    for line in js.lines() {
        let t = line.trim();
        if in_block {
            in_block = !t.contains("*/");
            continue;
        }
        if t.starts_with("/*") {
            in_block = !t.contains("*/");
            continue;
        }
        if t.is_empty() || t.starts_with("//") {
            continue;
        }
        slim.push_str(t);
        slim.push('\n');
    }
    slim
}

#[cfg(test)]
mod tests {
    use super::slim_js;

    #[test]
    fn comments_blank_lines_and_indentation_go_and_code_stays() {
        let js = "/* header\n * more */\n(function () {\n  // why\n\n  var a = 'http://x/*y*/';\n  /* one line */\n  f(a); \n})();\n";
        assert_eq!(
            slim_js(js),
            "(function () {\nvar a = 'http://x/*y*/';\nf(a);\n})();\n"
        );
    }
}
