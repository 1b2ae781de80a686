//! Command templates and GNU parallel's replacement strings (`{}` `{.}` `{/}` `{//}` `{/.}` `{#}` `{%}` `{n}`
//! `{n.}` ...), joined into one shell string in which only the replacement values are quoted, as GNU parallel does.
//!
//! STUB: the signatures are the contract; bodies come with issue [engine].

/// A parsed command template.
#[derive(Debug, Clone)]
pub struct Template {}

impl Template {
    /// Parses the command words; with no replacement string in them, `{}` (all sources) is appended, as GNU does.
    pub fn parse(_words: &[String]) -> Template {
        todo!("issue [engine]")
    }

    /// Parses a `--tagstring`: replacement strings are substituted without quoting and nothing is appended.
    pub fn parse_tagstring(_s: &str) -> Template {
        todo!("issue [engine]")
    }

    /// Renders the template for one record (`args` holds one value per input source).
    pub fn render(&self, _args: &[String], _seq: u64, _slot: usize) -> String {
        todo!("issue [engine]")
    }
}

/// Quotes one value for the shell exactly as GNU parallel does.
pub fn quote(_value: &str) -> String {
    todo!("issue [engine]")
}
