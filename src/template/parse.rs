//! The command template: the command words parsed once into literal text and replacement strings, then rendered
//! once per job. Rendering is on the per-job hot path, so it only copies and quotes: no regex, no re-parsing.

use std::fmt::Write as _;

use super::path;
use super::quote::{quote_into, unquote_printf};

/// What a replacement string computes from one input value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `{}`: the value.
    Value,
    /// `{.}`: without extension.
    NoExt,
    /// `{/}`: basename.
    Base,
    /// `{//}`: dirname.
    Dir,
    /// `{/.}`: basename without extension.
    BaseNoExt,
    /// `{#}`: the job's sequence number.
    Seq,
    /// `{%}`: the job's slot.
    Slot,
}

/// Which input values a replacement string uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pos {
    /// `{}` and friends: every source's value, joined with spaces (also `{0}`, as in GNU).
    All,
    /// `{n}` (n >= 1) or `{-n}`; out of range renders as nothing.
    At(i64),
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Text copied as is (including the spaces that join the command words).
    Literal(String),
    /// A replacement string.
    Replace(Pos, Op),
}

/// A parsed command template.
#[derive(Debug, Clone)]
pub struct Template {
    /// Literal text and replacement strings, in order.
    segments: Vec<Segment>,
    /// Whether replacement values are shell-quoted.
    quote: bool,
    /// Length of the literal text, to size the output.
    literal_len: usize,
}

impl Template {
    /// Parses the command words; with no replacement string in them, `{}` (all sources) is appended, as GNU does.
    ///
    /// The words are joined with single spaces and not quoted, so shell syntax in them (`'>'`, `|`, `;`) works as
    /// in GNU parallel. Replacement values are quoted, except when a replacement string is part of the first word
    /// (`parallel {} ::: 'echo a'`, `parallel {2} ...`): then GNU quotes nothing, and neither does kb.
    pub fn parse(words: &[String]) -> Template {
        Template::parse_replacing(words, "{}")
    }

    /// [`Template::parse`] with `value` as the replacement string of the input value instead of `{}` (GNU
    /// parallel's `-I`): `{}`, `{0}` and the positional `{n}` are then plain text, as in GNU, while `{.}`, `{n.}`,
    /// `{#}` and the others keep working.
    pub fn parse_replacing(words: &[String], value: &str) -> Template {
        let joined = words.join(" ");
        let mut segments = parse_segments(&joined, value);
        if !segments.iter().any(|s| matches!(s, Segment::Replace(..))) {
            if !joined.is_empty() {
                segments.push(Segment::Literal(" ".to_string()));
            }
            segments.push(Segment::Replace(Pos::All, Op::Value));
        }
        let quote = !starts_with_replacement(&segments);
        Template::from_segments(segments, quote)
    }

    /// Parses a `--tagstring`: GNU's `\t` `\n` `\r` `\NNN` escapes are applied, replacement strings are substituted
    /// without quoting and nothing is appended. `--tag` alone is `parse_tagstring("{}")`.
    pub fn parse_tagstring(s: &str) -> Template {
        Template::parse_tagstring_replacing(s, "{}")
    }

    /// [`Template::parse_tagstring`] with `value` instead of `{}`, as [`Template::parse_replacing`].
    pub fn parse_tagstring_replacing(s: &str, value: &str) -> Template {
        Template::from_segments(parse_segments(&unquote_printf(s), value), false)
    }

    fn from_segments(segments: Vec<Segment>, quote: bool) -> Template {
        let literal_len = segments
            .iter()
            .map(|s| match s {
                Segment::Literal(text) => text.len(),
                Segment::Replace(..) => 0,
            })
            .sum();
        Template {
            segments,
            quote,
            literal_len,
        }
    }

    /// True when the template uses `{%}` (the scheduler then must give a real slot number).
    pub fn uses_slot(&self) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Replace(_, Op::Slot)))
    }

    /// Renders the template for one record (`args` holds one value per input source).
    pub fn render(&self, args: &[String], seq: u64, slot: usize) -> String {
        let args_len: usize = args.iter().map(|a| a.len() + 3).sum();
        let mut out = String::with_capacity(self.literal_len + 2 * args_len + 8);
        self.render_into(&mut out, args, seq, slot);
        out
    }

    /// Renders into `out` (appending), for callers that reuse a buffer.
    pub fn render_into(&self, out: &mut String, args: &[String], seq: u64, slot: usize) {
        // GNU gives a job without arguments one empty argument.
        let empty = [String::new()];
        let args = if args.is_empty() { &empty[..] } else { args };
        for segment in &self.segments {
            match *segment {
                Segment::Literal(ref text) => out.push_str(text),
                Segment::Replace(Pos::All, Op::Seq) => write_number(out, seq),
                Segment::Replace(Pos::All, Op::Slot) => write_number(out, slot as u64),
                Segment::Replace(Pos::At(n), op @ (Op::Seq | Op::Slot)) => {
                    if positional(args, n).is_some() {
                        write_number(out, if op == Op::Seq { seq } else { slot as u64 });
                    }
                }
                Segment::Replace(Pos::All, op) => {
                    for (i, arg) in args.iter().enumerate() {
                        if i > 0 {
                            out.push(' ');
                        }
                        self.push_value(out, op, arg);
                    }
                }
                Segment::Replace(Pos::At(n), op) => {
                    if let Some(arg) = positional(args, n) {
                        self.push_value(out, op, arg);
                    }
                }
            }
        }
    }

    fn push_value(&self, out: &mut String, op: Op, arg: &str) {
        let value: std::borrow::Cow<'_, str> = match op {
            Op::Value => arg.into(),
            Op::NoExt => path::no_ext(arg).into(),
            Op::Base => path::basename(arg),
            Op::Dir => path::dirname(arg).into(),
            Op::BaseNoExt => path::basename_no_ext(arg).into(),
            Op::Seq | Op::Slot => unreachable!("numbers are rendered by the caller; this is a bug"),
        };
        if self.quote {
            quote_into(&value, out);
        } else {
            out.push_str(&value);
        }
    }
}

fn write_number(out: &mut String, n: u64) {
    // Writing to a String cannot fail.
    let _ = write!(out, "{n}");
}

/// GNU's `$argref->[$n > 0 ? $n-1 : $count+$n]`, Perl's negative indexing included.
fn positional(args: &[String], n: i64) -> Option<&String> {
    let count = args.len() as i64;
    let mut index = if n > 0 { n - 1 } else { count + n };
    if index < 0 {
        index += count;
    }
    usize::try_from(index).ok().and_then(|i| args.get(i))
}

/// GNU's test `"@command" =~ /^[^ \t\n=]*\257</`: a replacement string before any blank or `=`.
fn starts_with_replacement(segments: &[Segment]) -> bool {
    for segment in segments {
        match segment {
            Segment::Replace(..) => return true,
            Segment::Literal(text) if text.contains([' ', '\t', '\n', '=']) => return false,
            Segment::Literal(_) => {}
        }
    }
    false
}

/// Splits text into literals and replacement strings, left to right; `value` is the replacement string of the
/// input value (`{}`, or `-I`'s).
fn parse_segments(text: &str, value: &str) -> Vec<Segment> {
    let renamed = value != "{}";
    let mut segments = Vec::new();
    let mut literal_start = 0;
    let mut i = 0;
    loop {
        let brace = text[i..].find('{').map(|o| i + o);
        let custom = if renamed && !value.is_empty() {
            text[i..].find(value).map(|o| i + o)
        } else {
            None
        };
        let open = match (brace, custom) {
            (_, Some(at)) if brace.is_none_or(|b| at <= b) => {
                if literal_start < at {
                    segments.push(Segment::Literal(text[literal_start..at].to_string()));
                }
                segments.push(Segment::Replace(Pos::All, Op::Value));
                i = at + value.len();
                literal_start = i;
                continue;
            }
            (Some(open), _) => open,
            (None, _) => break,
        };
        match parse_replacement(&text[open..]).filter(|&(_, _, op)| !(renamed && op == Op::Value)) {
            Some((len, pos, op)) => {
                if literal_start < open {
                    segments.push(Segment::Literal(text[literal_start..open].to_string()));
                }
                segments.push(Segment::Replace(pos, op));
                i = open + len;
                literal_start = i;
            }
            None => i = open + 1,
        }
    }
    if literal_start < text.len() {
        segments.push(Segment::Literal(text[literal_start..].to_string()));
    }
    segments
}

/// Recognises one replacement string at the start of `s` (which starts with `{`): its length and meaning.
fn parse_replacement(s: &str) -> Option<(usize, Pos, Op)> {
    let close = s.find('}')?;
    let inner = &s[1..close];
    let digits_end = inner
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
        .map_or(inner.len(), |(i, _)| i);
    let (number, rest) = inner.split_at(digits_end);
    let pos = match number {
        "" => Pos::All,
        "-" => return None,
        // Perl's truth: `{0}` is GNU's `{}`, while `{00}` and `{-0}` are positions that never exist.
        "0" => Pos::All,
        n => Pos::At(n.parse::<i64>().ok()?),
    };
    let op = match rest {
        "" => Op::Value,
        "." => Op::NoExt,
        "/" => Op::Base,
        "//" => Op::Dir,
        "/." => Op::BaseNoExt,
        "#" => Op::Seq,
        "%" => Op::Slot,
        _ => return None,
    };
    // GNU defines `{#}` as the positional expression `1 $_=$job->seq()`, so `{2#}` becomes position `21`: the
    // job's number when there are 21 sources, nothing otherwise. Keep that, odd as it is.
    let pos = match (op, pos) {
        (Op::Seq | Op::Slot, Pos::At(_)) => Pos::At(format!("{number}1").parse().ok()?),
        _ => pos,
    };
    Some((close + 1, pos, op))
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
