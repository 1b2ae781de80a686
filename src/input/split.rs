//! Splitting `cmd args ::: a b :::+ c :::: f ::::+ g` into the command and its input sources, the way GNU
//! parallel's `read_args_from_command_line` does.

use std::path::PathBuf;

use super::spec::Source;

/// The four source separators.
fn is_separator(word: &str) -> bool {
    matches!(word, ":::" | ":::+" | "::::" | "::::+")
}

/// Splits the words after the options into the command and the input sources (`:::`, `:::+`, `::::`, `::::+`).
///
/// GNU's rules, kept here: each `:::` group is one source (an empty group is a source with one empty value);
/// each file after `::::` is its own source; a `+` links every source of its group to the one before; a
/// separator that is the very last word and the first separator is ignored (`parallel echo :::` reads stdin).
pub fn split_command(words: &[String]) -> (Vec<String>, Vec<(Source, bool)>) {
    let Some(first) = words.iter().position(|w| is_separator(w)) else {
        return (words.to_vec(), Vec::new());
    };
    let command = words[..first].to_vec();
    if first + 1 == words.len() {
        return (command, Vec::new());
    }
    let mut sources = Vec::new();
    let mut i = first;
    while i < words.len() {
        let separator = words[i].as_str();
        let end = words[i + 1..]
            .iter()
            .position(|w| is_separator(w))
            .map_or(words.len(), |p| i + 1 + p);
        let group = &words[i + 1..end];
        let linked = separator.ends_with('+');
        if separator.starts_with("::::") {
            sources.extend(
                group
                    .iter()
                    .map(|f| (Source::File(PathBuf::from(f)), linked)),
            );
        } else {
            sources.push((Source::Args(group.to_vec()), linked));
        }
        i = end;
    }
    (command, sources)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split(' ')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn args(s: &str) -> Source {
        Source::Args(w(s))
    }

    fn file(s: &str) -> Source {
        Source::File(PathBuf::from(s))
    }

    #[test]
    fn no_separator_is_all_command() {
        assert_eq!(split_command(&w("echo a b")), (w("echo a b"), vec![]));
    }

    #[test]
    fn groups_and_links() {
        let (cmd, sources) = split_command(&w("echo {} ::: a b :::+ c d :::: f g ::::+ h ::: x"));
        assert_eq!(cmd, w("echo {}"));
        assert_eq!(
            sources,
            vec![
                (args("a b"), false),
                (args("c d"), true),
                (file("f"), false),
                (file("g"), false),
                (file("h"), true),
                (args("x"), false),
            ]
        );
    }

    #[test]
    fn empty_command() {
        assert_eq!(
            split_command(&w("::: a")),
            (vec![], vec![(args("a"), false)])
        );
    }

    #[test]
    fn trailing_separators_follow_gnu() {
        // `parallel echo :::` reads stdin; `parallel echo ::: a :::` has a second source with one empty value;
        // a trailing `::::` names no file, so it adds no source.
        assert_eq!(split_command(&w("echo :::")), (w("echo"), vec![]));
        assert_eq!(
            split_command(&w("echo ::: a :::")),
            (w("echo"), vec![(args("a"), false), (args(""), false)])
        );
        assert_eq!(
            split_command(&w("echo ::: a ::::")),
            (w("echo"), vec![(args("a"), false)])
        );
    }

    #[test]
    fn double_dash_is_a_command_word() {
        assert_eq!(split_command(&w("echo -- ::: a")).0, w("echo --"));
    }
}
