//! Command templates and GNU parallel's replacement strings (`{}` `{.}` `{/}` `{//}` `{/.}` `{#}` `{%}` `{n}`
//! `{n.}` `{n/}` `{n//}` `{n/.}` `{-n}`), joined into one shell string in which only the replacement values are
//! quoted, as GNU parallel does. Pure code: no I/O, no knowledge of jobs or workers.
//!
//! Not supported (GNU features kb leaves out): `{= perl =}`, `--rpl`, `--plus`, `-I` and the other renaming options.

mod parse;
mod path;
mod quote;

pub use parse::Template;
pub use quote::{quote, quote_into, unquote_printf};
