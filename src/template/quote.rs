//! GNU parallel's shell quoting of replacement values and its `printf`-style unescaping of `--tagstring` and `-d`.
//! Pure string functions; nothing here knows about jobs.

/// Quotes one value for a Bourne shell exactly as GNU parallel 20221122 does (`shell_quote_scalar_default`).
///
/// A value made only of `-_.+/`, ASCII letters and digits is left as is; the empty value becomes `''`; anything
/// else is put in single quotes, with each `'` written as `'"'"'` and the `''` left at either end removed.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    quote_into(value, &mut out);
    out
}

/// Appends the quoted form of `value` (see [`quote`]) to `out`, without allocating when `out` has room.
pub fn quote_into(value: &str, out: &mut String) {
    if value.is_empty() {
        out.push_str("''");
        return;
    }
    if value.bytes().all(is_safe) {
        out.push_str(value);
        return;
    }
    // GNU builds `'...'` with every `'` replaced by `'"'"'`, then drops a leading and a trailing `''`: those only
    // appear when the value starts or ends with a quote, so write the pieces without them.
    let mut pieces = value.split('\'').peekable();
    let mut first = true;
    while let Some(piece) = pieces.next() {
        if !first {
            out.push_str("\"'\"");
        }
        let last = pieces.peek().is_none();
        if !piece.is_empty() || (!first && !last) {
            out.push('\'');
            out.push_str(piece);
            out.push('\'');
        }
        first = false;
    }
}

/// The bytes GNU parallel leaves unquoted: `[-_.+a-z0-9/]`, case-insensitive.
fn is_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+' | b'/')
}

/// Applies GNU parallel's `unquote_printf` to a `--tagstring` or `-d` argument: `\t`, `\n`, `\r`, then `\NNN` and
/// `\N` (octal) become the characters they name; other backslashes stay as they are.
pub fn unquote_printf(s: &str) -> String {
    // GNU runs five global substitutions in this order; replacements never produce a backslash, so later passes
    // cannot see text an earlier pass made, and each pass can run on the output of the one before.
    let s = s
        .replace("\\t", "\t")
        .replace("\\n", "\n")
        .replace("\\r", "\r");
    let s = replace_octal(&s, 3);
    replace_octal(&s, 1)
}

/// Replaces `\` followed by exactly `digits` decimal digits with the character of that octal value, as Perl's
/// `"\NNN"` does (digits 8 and 9 end the octal number early, so they are kept as text).
fn replace_octal(s: &str, digits: usize) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        let end = i + 1 + digits;
        if bytes[i] == b'\\'
            && end <= bytes.len()
            && bytes[i + 1..end].iter().all(u8::is_ascii_digit)
        {
            out.push_str(&s[copied..i]);
            out.push_str(&perl_octal(&s[i + 1..end]));
            i = end;
            copied = end;
        } else {
            i += 1;
        }
    }
    out.push_str(&s[copied..]);
    out
}

/// Perl's value of `"\DIGITS"`: the longest octal prefix becomes one character, the rest is kept.
fn perl_octal(digits: &str) -> String {
    let octal_len = digits
        .bytes()
        .take_while(|b| (b'0'..=b'7').contains(b))
        .count();
    let value = u32::from_str_radix(&digits[..octal_len], 8).unwrap_or(0);
    let mut out = String::new();
    out.push(char::from_u32(value).unwrap_or('\u{fffd}'));
    out.push_str(&digits[octal_len..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expectations copied from `parallel --dry-run echo X{}Y` (GNU parallel 20221122).
    #[test]
    fn quote_matches_gnu() {
        let cases = [
            ("a b", "'a b'"),
            ("it's", "'it'\"'\"'s'"),
            ("x$y", "'x$y'"),
            ("*", "'*'"),
            ("", "''"),
            ("ü", "'ü'"),
            ("a\"b", "'a\"b'"),
            ("a\\b", "'a\\b'"),
            ("~x", "'~x'"),
            ("-x", "-x"),
            ("+x", "+x"),
            ("a/b.c", "a/b.c"),
            ("A_Z-09", "A_Z-09"),
            ("'", "\"'\""),
            ("'x", "\"'\"'x'"),
            ("x'", "'x'\"'\""),
            ("''", "\"'\"''\"'\""),
            ("a\nb", "'a\nb'"),
            ("tab\tx", "'tab\tx'"),
        ];
        for (value, want) in cases {
            assert_eq!(quote(value), want, "value {value:?}");
        }
    }

    #[test]
    fn quoted_values_survive_the_shell() {
        for value in [
            "a b", "it's", "''", "'", "x'y'z", "$HOME", "a\nb", "\"", "\\", "é ü",
        ] {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(value)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), value);
        }
    }

    #[test]
    fn unquote_printf_matches_gnu() {
        assert_eq!(unquote_printf("\\t"), "\t");
        assert_eq!(unquote_printf("a\\nb\\r"), "a\nb\r");
        assert_eq!(unquote_printf("\\0"), "\0");
        assert_eq!(unquote_printf("\\101\\102"), "AB");
        assert_eq!(unquote_printf("\\12"), "\u{1}2");
        assert_eq!(unquote_printf("\\x"), "\\x");
        assert_eq!(unquote_printf("plain"), "plain");
    }
}
