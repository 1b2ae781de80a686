//! What a run reads: the sources, how they are linked, and the item separator.

use std::path::PathBuf;

use crate::template::unquote_printf;

/// An input failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input file could not be opened or read.
    #[error("failed to read input from `{path}`")]
    Read {
        /// The file (`-` for stdin).
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How items are separated in stdin and files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Separator {
    /// Newline (the default).
    #[default]
    Newline,
    /// NUL (`-0`).
    Nul,
    /// A delimiter string (`-d`), with GNU's backslash escapes already applied. The empty string is Perl's
    /// paragraph mode, as in GNU: items are separated by blank lines.
    Delimiter(String),
}

impl Separator {
    /// The separator for `-0` and `-d DELIM` (GNU applies `\t` `\n` `\r` `\NNN` `\N` escapes to `DELIM`).
    pub fn from_opts(null: bool, delimiter: Option<&str>) -> Separator {
        match (delimiter, null) {
            (Some(d), _) => Separator::Delimiter(unquote_printf(d)),
            (None, true) => Separator::Nul,
            (None, false) => Separator::Newline,
        }
    }

    /// The separator's bytes (empty for paragraph mode).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Separator::Newline => b"\n",
            Separator::Nul => b"\0",
            Separator::Delimiter(d) => d.as_bytes(),
        }
    }
}

/// One input source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Values given on the command line after `:::`.
    Args(Vec<String>),
    /// A file (`::::` or `-a`); `-` is stdin.
    File(PathBuf),
    /// Standard input (when no other source is given).
    Stdin,
}

/// The sources of a run and how they combine.
#[derive(Debug, Clone, Default)]
pub struct InputSpec {
    /// The sources, in order; each with `true` when linked to the one before it (`:::+`, `::::+`).
    pub sources: Vec<(Source, bool)>,
    /// The item separator for files and stdin.
    pub separator: Separator,
    /// `-E STR`: each source ends at an item equal to STR (None, or an empty STR: no end string, as GNU).
    pub eof: Option<String>,
    /// `--trim`: the white space removed around each value.
    pub trim: Trim,
}

/// GNU parallel's `--trim`: which ends of each input value lose their white space (Perl's `\s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trim {
    /// `n` (the default): nothing.
    #[default]
    None,
    /// `l`: the start.
    Left,
    /// `r`: the end.
    Right,
    /// `lr` or `rl`: both.
    Both,
}

impl Trim {
    /// GNU's `--trim` values: `n`, `l`, `r`, `lr`, `rl`; anything else is `None`.
    pub fn parse(s: &str) -> Option<Trim> {
        match s {
            "n" => Some(Trim::None),
            "l" => Some(Trim::Left),
            "r" => Some(Trim::Right),
            "lr" | "rl" => Some(Trim::Both),
            _ => None,
        }
    }

    /// `value` without the white space this trim removes.
    pub fn apply(self, value: &str) -> &str {
        // Perl's `\s` on bytes: space, \t, \n, \x0b, \x0c, \r.
        let space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r');
        match self {
            Trim::None => value,
            Trim::Left => value.trim_start_matches(space),
            Trim::Right => value.trim_end_matches(space),
            Trim::Both => value.trim_matches(space),
        }
    }
}

impl InputSpec {
    /// Builds the spec as GNU orders it: the `-a` files first (each its own source), then the sources that
    /// [`split_command`](super::split_command) found after the command; `-0` / `-d` give the separator.
    pub fn from_opts(
        arg_files: &[PathBuf],
        command_sources: Vec<(Source, bool)>,
        null: bool,
        delimiter: Option<&str>,
    ) -> InputSpec {
        let mut sources: Vec<(Source, bool)> = arg_files
            .iter()
            .map(|f| (Source::File(f.clone()), false))
            .collect();
        sources.extend(command_sources);
        InputSpec {
            sources,
            separator: Separator::from_opts(null, delimiter),
            eof: None,
            trim: Trim::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separator_applies_gnu_escapes() {
        assert_eq!(Separator::from_opts(false, None), Separator::Newline);
        assert_eq!(Separator::from_opts(true, None), Separator::Nul);
        assert_eq!(
            Separator::from_opts(false, Some("\\t")),
            Separator::Delimiter("\t".into())
        );
        assert_eq!(
            Separator::from_opts(false, Some("\\r\\n")),
            Separator::Delimiter("\r\n".into())
        );
        assert_eq!(
            Separator::from_opts(false, Some("\\0")),
            Separator::Delimiter("\0".into())
        );
    }

    #[test]
    fn arg_files_come_first() {
        assert_eq!(Trim::parse("rl"), Some(Trim::Both));
        assert_eq!(Trim::parse("x"), None);
        assert_eq!(Trim::Both.apply(" \t\r\x0ba b\n\x0c"), "a b");
        assert_eq!(Trim::Left.apply("  a "), "a ");
        assert_eq!(Trim::Right.apply("  a \t"), "  a");
        assert_eq!(Trim::None.apply(" a "), " a ");
        assert_eq!(
            Trim::Both.apply("\u{a0}a"),
            "\u{a0}a",
            "only Perl's ASCII \\s"
        );
        let spec = InputSpec::from_opts(
            &[PathBuf::from("f")],
            vec![(Source::Args(vec!["a".into()]), false)],
            false,
            None,
        );
        assert_eq!(spec.sources[0].0, Source::File("f".into()));
        assert_eq!(spec.sources[1].0, Source::Args(vec!["a".into()]));
    }
}
