//! Escaping for the formats reports are written in. Policy names, reasons, alert labels and
//! target names come from users and upstream systems: none of them may open a tag, end an
//! attribute, break a table or inject a link.

/// Text for HTML and XML content and (double-quoted) attribute values. Characters XML 1.0
/// does not allow at all (control characters other than tab, newline and carriage
/// return; U+FFFE, U+FFFF) become U+FFFD, so that the document stays well-formed.
pub fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    push_xml(&mut out, s);
    out
}

/// [`xml`] appended to `out`.
pub fn push_xml(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

/// Text for a Markdown table cell (GitHub-flavoured Markdown, which also renders inline
/// HTML): one line, every character with a meaning in Markdown or HTML escaped, so that
/// a value shows as written and can neither end the cell nor add markup or a link of its
/// own making (a bare URL in a reason stays a URL, which GitHub shows as a link).
pub fn markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '|' => out.push_str("\\|"),
            // Emphasis, code, links (a link needs `[...]`), strikethrough; `#` and `!`
            // matter only at a line's start or before `[`, which a cell never has.
            '\\' | '`' | '*' | '_' | '[' | ']' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Text for the PDF standard fonts' WinAnsi encoding: printable ASCII stays, Latin-1
/// letters are kept as their WinAnsi byte, anything else becomes `?` (the standard fonts
/// have no glyph for it, and no font is embedded).
pub fn win_ansi(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match c {
            ' '..='~' => c as u8,
            '\u{a0}'..='\u{ff}' => c as u32 as u8,
            '\u{2013}' => 0x96,
            '\u{2014}' => 0x97,
            '\u{2022}' => 0x95,
            '\u{2026}' => 0x85,
            '\u{2192}' => b'>',
            '\t' | '\n' | '\r' => b' ',
            _ => b'?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_markup_and_drops_illegal_characters() {
        assert_eq!(
            xml("<a href=\"x\">'&'</a>\u{1}\u{ffff}"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;\u{fffd}\u{fffd}"
        );
        assert_eq!(xml("line\nnext"), "line\nnext");
    }

    #[test]
    fn markdown_cells_stay_one_cell_of_plain_text() {
        let m = markdown("a|b\n*c* [l](http://x) <b>`d`</b>");
        assert!(!m.contains('\n'));
        assert!(!m.contains("<b>"));
        assert_eq!(m.matches('|').count(), m.matches("\\|").count());
        assert_eq!(
            m,
            "a\\|b \\*c\\* \\[l\\](http://x) &lt;b&gt;\\`d\\`&lt;/b&gt;"
        );
    }

    #[test]
    fn win_ansi_keeps_latin_1_and_replaces_the_rest() {
        assert_eq!(win_ansi("Zürich → ok ☃"), b"Z\xfcrich > ok ?");
    }
}
