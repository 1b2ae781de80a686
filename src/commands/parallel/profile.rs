//! GNU parallel's option files, turned into words in front of the command line before clap parses it:
//! the profiles (`/etc/parallel/config`, `config` in each configuration directory and `~/.parallelrc`, or the
//! `-J NAME` profiles instead), then `$PARALLEL`. `--plain` skips them all.
//!
//! The configuration directories are, as GNU's, those that exist of `$PARALLEL_HOME`, `$XDG_CONFIG_HOME/parallel`,
//! each `$XDG_CONFIG_DIRS` entry + `/parallel`, and `~/.parallel`. A profile line starting with `#` is a comment;
//! the others, and `$PARALLEL`, are split into words as Perl's `Text::ParseWords::shellwords` does.
//!
//! GNU parses the options of each part separately and puts the words that are not options in front of the
//! command; kb puts the parts one after the other, which is the same unless a profile holds a command word.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The environment the option files are found by.
#[derive(Debug, Default, Clone)]
pub struct Env {
    /// `$PARALLEL`.
    pub parallel: Option<String>,
    /// `$PARALLEL_HOME`.
    pub parallel_home: Option<String>,
    /// `$XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<String>,
    /// `$XDG_CONFIG_DIRS`.
    pub xdg_config_dirs: Option<String>,
    /// `$HOME`.
    pub home: Option<String>,
}

impl Env {
    /// The process environment.
    pub fn from_process() -> Env {
        let var = |name: &str| std::env::var(name).ok();
        Env {
            parallel: var("PARALLEL"),
            parallel_home: var("PARALLEL_HOME"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
            xdg_config_dirs: var("XDG_CONFIG_DIRS"),
            home: var("HOME"),
        }
    }
}

/// The file system as the option files see it: which directories exist, and a file's text if it is readable.
pub trait Files {
    /// Whether `path` is a directory.
    fn is_dir(&self, path: &Path) -> bool;
    /// The text of `path`, if it can be read.
    fn read(&self, path: &Path) -> Option<String>;
}

/// The real file system.
pub struct Disk;

impl Files for Disk {
    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }
    fn read(&self, path: &Path) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }
}

/// `args` (the words after `kb parallel`) with the profiles' and `$PARALLEL`'s words in front.
pub fn expand(args: &[OsString], env: &Env, files: &dyn Files) -> Vec<OsString> {
    let (profiles, plain) = profile_options(args);
    if plain {
        return args.to_vec();
    }
    let dirs = config_dirs(env, files);
    let paths: Vec<PathBuf> = if profiles.is_empty() {
        let mut paths = vec![PathBuf::from("/etc/parallel/config")];
        paths.extend(dirs.iter().map(|d| d.join("config")));
        paths.extend(env.home.as_ref().map(|h| Path::new(h).join(".parallelrc")));
        paths
    } else {
        // A named profile that no directory holds is skipped, as GNU does.
        profiles
            .iter()
            .flat_map(|name| {
                if name.starts_with("./") || name.starts_with('/') {
                    vec![PathBuf::from(name)]
                } else {
                    dirs.iter().map(|d| d.join(name)).collect()
                }
            })
            .collect()
    };
    let mut words: Vec<OsString> = Vec::new();
    for text in paths.iter().filter_map(|p| files.read(p)) {
        words.extend(profile_words(&text).into_iter().map(OsString::from));
    }
    // Perl's truth: an empty `$PARALLEL` and `0` are ignored.
    if let Some(value) = env
        .parallel
        .as_deref()
        .filter(|v| !v.is_empty() && *v != "0")
    {
        words.extend(shell_words(value).into_iter().map(OsString::from));
    }
    words.extend(args.iter().cloned());
    words
}

/// The directories GNU parallel reads profiles from, in its order: those that exist.
pub fn config_dirs(env: &Env, files: &dyn Files) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    dirs.extend(env.parallel_home.iter().map(PathBuf::from));
    dirs.extend(
        env.xdg_config_home
            .iter()
            .map(|x| Path::new(x).join("parallel")),
    );
    if let Some(list) = &env.xdg_config_dirs {
        dirs.extend(list.split(':').map(|x| Path::new(x).join("parallel")));
    }
    dirs.extend(env.home.iter().map(|h| Path::new(h).join(".parallel")));
    dirs.retain(|d| !d.as_os_str().is_empty() && files.is_dir(d));
    dirs
}

/// The `-J`/`--profile` names and whether `--plain` is given, among the options before the command's input
/// sources (`--`, `:::` and the like end the search).
pub fn profile_options(args: &[OsString]) -> (Vec<String>, bool) {
    let mut names = Vec::new();
    let mut plain = false;
    let mut words = args.iter().map(|a| a.to_string_lossy());
    while let Some(word) = words.next() {
        match word.as_ref() {
            "--" | ":::" | ":::+" | "::::" | "::::+" => break,
            "--plain" => plain = true,
            "-J" | "--profile" => names.extend(words.next().map(|w| w.into_owned())),
            w => {
                if let Some(name) = w.strip_prefix("--profile=").or(w.strip_prefix("-J"))
                    && !name.is_empty()
                {
                    names.push(name.to_string());
                }
            }
        }
    }
    (names, plain)
}

/// The words of a profile: each line that is not a comment, split as by [`shell_words`].
pub fn profile_words(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(shell_words)
        .collect()
}

/// Splits `line` into words as Perl's `Text::ParseWords::shellwords`: whitespace separates words; in double
/// quotes and outside quotes a backslash takes the next character literally; in single quotes everything is
/// literal (a backslash only keeps a quote from ending them). An unbalanced quote or a final lone backslash
/// gives no words at all, as in Perl.
pub fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if is_perl_space(c) => words.extend(word.take()),
            '"' | '\'' => {
                let current = word.get_or_insert_with(String::new);
                if !quoted(c, &mut chars, current) {
                    return Vec::new();
                }
            }
            '\\' => match chars.next() {
                Some(next) => word.get_or_insert_with(String::new).push(next),
                None => return Vec::new(),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// Reads a quoted part up to its closing `quote` into `word`; false when it does not close.
fn quoted(quote: char, chars: &mut std::str::Chars<'_>, word: &mut String) -> bool {
    while let Some(c) = chars.next() {
        match c {
            c if c == quote => return true,
            '\\' => {
                let Some(next) = chars.next() else {
                    return false;
                };
                if quote == '\'' {
                    word.push('\\');
                }
                word.push(next);
            }
            c => word.push(c),
        }
    }
    false
}

/// Perl's `\s`.
fn is_perl_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn words(line: &str) -> Vec<String> {
        shell_words(line)
    }

    #[test]
    fn shell_words_split_as_perl_does() {
        assert_eq!(words("  -k  --tag\t-j2 "), ["-k", "--tag", "-j2"]);
        assert_eq!(
            words(r#"--tagstring "a b" 'c d'"#),
            ["--tagstring", "a b", "c d"]
        );
        assert_eq!(words(r#"a"b c"d"#), ["ab cd"]);
        assert_eq!(words(r#""a\"b\\c\x""#), [r#"a"b\cx"#]);
        assert_eq!(words(r"'a\'b' 'c\d'"), [r"a\'b", r"c\d"]);
        assert_eq!(words(r"a\ b \$x"), ["a b", "$x"]);
        assert_eq!(words("'' x"), ["", "x"]);
        assert_eq!(words(""), Vec::<String>::new());
        assert_eq!(words("-k 'unbalanced"), Vec::<String>::new());
        assert_eq!(words(r"-k trailing\"), Vec::<String>::new());
    }

    #[test]
    fn profile_lines_are_split_one_by_one_and_comments_skipped() {
        let text =
            "# a comment\n-k\n  # indented comment\n--tagstring 'x y'\n\n-j 2 # not a comment\n";
        assert_eq!(
            profile_words(text),
            [
                "-k",
                "--tagstring",
                "x y",
                "-j",
                "2",
                "#",
                "not",
                "a",
                "comment"
            ]
        );
    }

    struct Fake(HashMap<PathBuf, String>);

    impl Files for Fake {
        fn is_dir(&self, path: &Path) -> bool {
            self.0.keys().any(|p| p.parent() == Some(path))
        }
        fn read(&self, path: &Path) -> Option<String> {
            self.0.get(path).cloned()
        }
    }

    fn fake(files: &[(&str, &str)]) -> Fake {
        Fake(
            files
                .iter()
                .map(|(p, t)| (PathBuf::from(p), t.to_string()))
                .collect(),
        )
    }

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn home_env() -> Env {
        Env {
            home: Some("/h".into()),
            ..Env::default()
        }
    }

    #[test]
    fn config_then_parallel_then_the_command_line() {
        let files = fake(&[("/h/.parallel/config", "--tag\n"), ("/h/.parallelrc", "-k")]);
        let env = Env {
            parallel: Some("-j 2 --jl 'my log'".into()),
            ..home_env()
        };
        let got = expand(&os(&["echo", ":::", "a"]), &env, &files);
        assert_eq!(
            got,
            os(&[
                "--tag", "-k", "-j", "2", "--jl", "my log", "echo", ":::", "a"
            ])
        );
    }

    #[test]
    fn parallel_home_comes_first_and_a_profile_replaces_config() {
        let files = fake(&[
            ("/ph/config", "--tag"),
            ("/ph/fast", "-j 9"),
            ("/h/.parallel/config", "-k"),
            ("/h/.parallel/fast", "-u"),
        ]);
        let env = Env {
            parallel_home: Some("/ph".into()),
            ..home_env()
        };
        let dirs = config_dirs(&env, &files);
        assert_eq!(dirs, [PathBuf::from("/ph"), PathBuf::from("/h/.parallel")]);
        assert_eq!(
            expand(&os(&["echo"]), &env, &files),
            os(&["--tag", "-k", "echo"])
        );
        assert_eq!(
            expand(&os(&["-J", "fast", "echo"]), &env, &files),
            os(&["-j", "9", "-u", "-J", "fast", "echo"])
        );
        assert_eq!(
            expand(&os(&["--profile=nosuch", "echo"]), &env, &files),
            os(&["--profile=nosuch", "echo"]),
            "a profile that no directory holds is skipped, as GNU does"
        );
    }

    #[test]
    fn plain_and_perl_false_parallel_skip_what_they_should() {
        let files = fake(&[("/h/.parallel/config", "--tag")]);
        let env = Env {
            parallel: Some("-k".into()),
            ..home_env()
        };
        assert_eq!(
            expand(&os(&["--plain", "echo"]), &env, &files),
            os(&["--plain", "echo"])
        );
        let zero = Env {
            parallel: Some("0".into()),
            ..home_env()
        };
        assert_eq!(
            expand(&os(&["echo"]), &zero, &files),
            os(&["--tag", "echo"])
        );
    }

    #[test]
    fn profile_options_stop_at_the_input_sources() {
        let (names, plain) = profile_options(&os(&["-Ja", "--profile", "b", "-J", "./c", "echo"]));
        assert_eq!(
            (names, plain),
            (vec!["a".into(), "b".into(), "./c".into()], false)
        );
        let (names, plain) = profile_options(&os(&["echo", ":::", "-J", "x", "--plain"]));
        assert_eq!((names, plain), (Vec::<String>::new(), false));
    }
}
