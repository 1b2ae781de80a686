//! The path operations behind `{.}` `{/}` `{//}` `{/.}`, written to give the same result as the Perl expressions
//! GNU parallel evaluates (`s:\.[^/.]*$::`, `s:.*/::`, `File::Basename::dirname`), newlines included.

/// `{.}`: the value without its extension (`s:\.[^/.]*$::`): cut at the last `.` when no `/` follows it.
pub(crate) fn no_ext(value: &str) -> &str {
    match value.rfind('.') {
        Some(dot) if !value[dot..].contains('/') => &value[..dot],
        _ => value,
    }
}

/// `{/}`: the basename (`s:.*/::`). Perl's `.` does not match a newline, so the removed part is the stretch of the
/// first line that holds a `/`, up to that line's last `/`.
pub(crate) fn basename(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains('\n') {
        return match value.rfind('/') {
            Some(slash) => value[slash + 1..].into(),
            None => value.into(),
        };
    }
    let mut start = 0;
    for line in value.split('\n') {
        if let Some(slash) = line.rfind('/') {
            let mut out = String::with_capacity(value.len());
            out.push_str(&value[..start]);
            out.push_str(&value[start + slash + 1..]);
            return out.into();
        }
        start += line.len() + 1;
    }
    value.into()
}

/// `{/.}`: the basename without its extension.
pub(crate) fn basename_no_ext(value: &str) -> String {
    no_ext(&basename(value)).to_string()
}

/// `{//}`: Perl's `File::Basename::dirname` on Unix: `.` when there is no `/`, trailing slashes ignored.
pub(crate) fn dirname(value: &str) -> String {
    let (dir, base) = fileparse(value);
    let mut dir = strip_trailing_sep(dir).to_string();
    if base.is_empty() {
        let (again, _) = fileparse(&dir);
        dir = strip_trailing_sep(again).to_string();
    }
    dir
}

/// `File::Basename::fileparse` without suffixes: everything up to the last `/` (or `./`), and the rest.
fn fileparse(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(slash) => (&path[..=slash], &path[slash + 1..]),
        None => ("./", path),
    }
}

/// `s{(.)/*\z}{$1}s`: drops trailing slashes but keeps the first character.
fn strip_trailing_sep(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        &path[..path.len().min(1)]
    } else {
        trimmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of `parallel --dry-run echo [{}] [{.}] [{/}] [{//}] [{/.}] ::: VALUE` (GNU parallel 20221122).
    #[test]
    fn path_operations_match_gnu() {
        let rows = [
            ("a", "a", "a", ".", "a"),
            ("a.b", "a", "a.b", ".", "a"),
            (".a", "", ".a", ".", ""),
            ("a.", "a", "a.", ".", "a"),
            ("a/b", "a/b", "b", "a", "b"),
            ("a/b/", "a/b/", "", "a", ""),
            ("/a", "/a", "a", "/", "a"),
            ("/", "/", "", "/", ""),
            ("//", "//", "", "/", ""),
            ("a//b", "a//b", "b", "a", "b"),
            ("", "", "", ".", ""),
            (".", "", ".", ".", ""),
            ("..", ".", "..", ".", "."),
            ("./a", "./a", "a", ".", "a"),
            ("a/.b", "a/", ".b", "a", ""),
            ("a b/c d.e", "a b/c d", "c d.e", "a b", "c d"),
            ("/a/b.c/", "/a/b.c/", "", "/a", ""),
            ("x.y/z", "x.y/z", "z", "x.y", "z"),
            ("a.b.", "a.b", "a.b.", ".", "a.b"),
            ("x\ny/z", "x\ny/z", "x\nz", "x\ny", "x\nz"),
            ("a.b\n", "a", "a.b\n", ".", "a"),
            ("p/q\nr/s", "p/q\nr/s", "q\nr/s", "p/q\nr", "q\nr/s"),
        ];
        for (value, ext, base, dir, base_ext) in rows {
            assert_eq!(no_ext(value), ext, "{{.}} of {value:?}");
            assert_eq!(basename(value), base, "{{/}} of {value:?}");
            assert_eq!(dirname(value), dir, "{{//}} of {value:?}");
            assert_eq!(basename_no_ext(value), base_ext, "{{/.}} of {value:?}");
        }
    }
}
