//! JSON string escaping, the one implementation: Python's `json.dumps` escaping (what the peaq
//! SDK hashes and signs), with non-ASCII characters escaped as `\uXXXX` (`ensure_ascii=True`,
//! canonical JSON, the journal) or kept as UTF-8 (event metadata, which is shorter that way).

/// What happens to characters outside ASCII.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonAscii {
    /// `\uXXXX` (surrogate pairs beyond the BMP), as Python's `ensure_ascii=True`.
    Escape,
    /// Kept as UTF-8.
    Keep,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_u_escape(out: &mut Vec<u8>, u: u32) {
    out.extend_from_slice(&[
        b'\\',
        b'u',
        HEX[((u >> 12) & 0xf) as usize],
        HEX[((u >> 8) & 0xf) as usize],
        HEX[((u >> 4) & 0xf) as usize],
        HEX[(u & 0xf) as usize],
    ]);
}

/// Append a JSON string literal (quotes included).
pub fn write_str(s: &str, non_ascii: NonAscii, out: &mut Vec<u8>) {
    out.push(b'"');
    write_str_contents(s, non_ascii, out);
    out.push(b'"');
}

/// Append the escaped characters of a JSON string, without the quotes.
pub fn write_str_contents(s: &str, non_ascii: NonAscii, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    let mut run_start = 0usize;
    let mut i = 0usize;
    while i < bytes.len() {
        let b = bytes[i];
        let plain =
            if b < 0x80 { b >= 0x20 && b != 0x7f && b != b'"' && b != b'\\' } else { non_ascii == NonAscii::Keep };
        if plain {
            i += 1;
            continue;
        }
        out.extend_from_slice(&bytes[run_start..i]);
        if b < 0x80 {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                _ => push_u_escape(out, u32::from(b)),
            }
            i += 1;
        } else {
            // Start of a multi-byte UTF-8 sequence (the &str is valid UTF-8).
            let c = s[i..].chars().next().unwrap_or('\u{fffd}');
            let cp = c as u32;
            if cp > 0xffff {
                let v = cp - 0x10000;
                push_u_escape(out, 0xd800 | (v >> 10));
                push_u_escape(out, 0xdc00 | (v & 0x3ff));
            } else {
                push_u_escape(out, cp);
            }
            i += c.len_utf8();
        }
        run_start = i;
    }
    out.extend_from_slice(&bytes[run_start..]);
}

/// [`write_str`] or [`write_str_contents`] into a `String` (the escaped form is UTF-8).
pub fn push_str(s: &str, non_ascii: NonAscii, quoted: bool, out: &mut String) {
    let mut bytes = std::mem::take(out).into_bytes();
    if quoted {
        write_str(s, non_ascii, &mut bytes);
    } else {
        write_str_contents(s, non_ascii, &mut bytes);
    }
    *out = String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str, m: NonAscii) -> String {
        let mut o = String::new();
        push_str(s, m, true, &mut o);
        o
    }

    #[test]
    fn python_escaping() {
        assert_eq!(esc("a\"b\\c\n\r\t\u{8}\u{c}\u{1}", NonAscii::Escape), r#""a\"b\\c\n\r\t\b\f\u0001""#);
        assert_eq!(esc("Zürich ☃ 😀", NonAscii::Escape), r#""Z\u00fcrich \u2603 \ud83d\ude00""#);
        assert_eq!(esc("Zürich ☃", NonAscii::Keep), "\"Zürich ☃\"");
        assert_eq!(esc("\u{7f}", NonAscii::Escape), r#""\u007f""#);
        let mut o = String::from("x=");
        push_str("a\"", NonAscii::Keep, false, &mut o);
        assert_eq!(o, "x=a\\\"");
    }
}
