//! Request- and file-supplied text in log lines and error messages: quoted with every control
//! character escaped (a newline cannot start a forged log line) and cut to a bounded length (a
//! 1 MB topic cannot write a 1 MB line).

use std::fmt;

/// Longest excerpt [`quoted`] shows, in characters.
pub const MAX_QUOTED_CHARS: usize = 120;

/// `s` as a Rust/JSON-style quoted string, control characters escaped, cut after
/// [`MAX_QUOTED_CHARS`] characters with the full length stated: `"abc…" (1048576 bytes)`.
pub fn quoted(s: &str) -> Quoted<'_> {
    Quoted(s)
}

/// Display adapter of [`quoted`] (formats without allocating the whole input).
pub struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cut = self.0.char_indices().nth(MAX_QUOTED_CHARS).map(|(i, _)| i);
        let head = &self.0[..cut.unwrap_or(self.0.len())];
        write!(f, "\"{}", head.escape_debug())?;
        match cut {
            Some(_) => write!(f, "…\" ({} bytes)", self.0.len()),
            None => f.write_str("\""),
        }
    }
}

impl fmt::Debug for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `s` on one line of at most `max_chars` characters: control characters escaped (`\n`,
/// `\u{1b}`), the rest cut with `…`. For messages that may carry file- or request-supplied text.
pub fn one_line(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars + 8));
    for (n, c) in s.chars().enumerate() {
        if n == max_chars {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_cuts() {
        let forged = "/a\n[ERROR] [0.0] [peaqos_node]: forged\r\u{1b}[31m";
        let q = quoted(forged).to_string();
        assert!(!q.contains('\n') && !q.contains('\r') && !q.contains('\u{1b}'), "{q}");
        assert!(q.starts_with("\"/a\\n[ERROR]"), "{q}");
        let big = "x".repeat(1 << 20);
        let q = quoted(&big).to_string();
        assert!(q.len() < 200 && q.ends_with("(1048576 bytes)"), "{q}");
        assert_eq!(quoted("ok").to_string(), "\"ok\"");
        assert_eq!(one_line("a\nb `c`", 100), "a\\nb `c`");
        assert_eq!(one_line(&"y".repeat(500), 10), format!("{}…", "y".repeat(10)));
        assert_eq!(quoted(&"é".repeat(200)).to_string().chars().filter(|c| *c == 'é').count(), MAX_QUOTED_CHARS);
    }
}
