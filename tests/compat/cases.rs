//! The table of compatibility cases, first half (replacement strings and input; the rest is in `cases_run.rs`):
//! each a documented GNU parallel behaviour, described after parallel.pod of GNU parallel 20221122.
//! docs/gnu-compat.md lists the same cases.

use super::harness::{Case, case};

/// Values that need quoting, or look like it.
const ODD: [&str; 14] = [
    "a b",
    "it's",
    "$HOME",
    "*",
    "",
    "ü é",
    "a\"b",
    "a\\b",
    "~",
    ";ls",
    "$(echo x)",
    "`id`",
    "-n",
    "tab\there",
];

/// The command words followed by `:::` and the odd values.
pub fn with_odd(head: &[&'static str]) -> Vec<&'static str> {
    let mut v = head.to_vec();
    v.push(":::");
    v.extend(ODD);
    v
}

/// Every case, in the order of docs/gnu-compat.md.
pub fn all() -> Vec<Case> {
    let mut all = input_cases();
    all.extend(super::cases_run::run_cases());
    all.extend(super::cases_run::syntax_cases());
    all
}

/// Replacement strings and input sources.
fn input_cases() -> Vec<Case> {
    vec![
        // Replacement strings.
        case(
            "repl_braces",
            "{}: input line",
            &["-k", "echo", "{}", ":::", "a", "b", "c"],
        )
        .ssh(),
        case(
            "repl_no_ext",
            "{.}: input line without extension",
            &[
                "-k", "echo", "{.}", ":::", "a.b/c.d", "e.tar.gz", "noext", ".hidden",
            ],
        )
        .ssh(),
        case(
            "repl_basename",
            "{/}: basename of input line",
            &["-k", "echo", "{/}", ":::", "a/b/c.d", "/x", "e", "d/"],
        ),
        case(
            "repl_dirname",
            "{//}: dirname of input line",
            &["-k", "echo", "{//}", ":::", "a/b/c.d", "/x", "e", "d/"],
        ),
        case(
            "repl_basename_no_ext",
            "{/.}: basename without extension",
            &["-k", "echo", "{/.}", ":::", "a/b/c.d", "/x.y", "e"],
        ),
        case(
            "repl_seq",
            "{#}: sequence number of the job",
            &["-k", "echo", "{#}", "{}", ":::", "a", "b", "c"],
        )
        .ssh(),
        case(
            "repl_slot",
            "{%}: job slot number (1 with one slot)",
            &["-k", "echo", "{%}", "{}", ":::", "a", "b", "c"],
        ),
        case(
            "repl_positional",
            "{n}: argument from input source n",
            &["-k", "echo", "{2}", "{1}", ":::", "a", "b", ":::", "x", "y"],
        )
        .ssh(),
        case(
            "repl_positional_forms",
            "{n.} {n/} {n//} {n/.}: positional forms",
            &[
                "-k", "echo", "{1.}", "{1/}", "{1//}", "{1/.}", "{2}", ":::", "d/a.x", ":::", "y",
            ],
        ),
        case(
            "repl_negative_positional",
            "{-n}: argument n counted from the end",
            &[
                "-k", "echo", "{-1}", "{-2}", ":::", "a", ":::", "b", ":::", "c",
            ],
        ),
        case(
            "repl_appended",
            "no replacement string: {} appended (all sources)",
            &["-k", "echo", ":::", "a", "b", ":::", "1", "2"],
        )
        .ssh(),
        case(
            "repl_inside_word",
            "replacement strings inside a word",
            &["-k", "echo", "pre{}post", ":::", "a", "b c"],
        ),
        case(
            "repl_command_is_input",
            "a replacement string as the command is not quoted",
            &["-k", "{}", ":::", "echo a b", "echo c"],
        ),
        case(
            "tagstring",
            "--tagstring str: prefix lines with str (replacement strings allowed) and TAB",
            &["-k", "--tagstring", "{#}-{}", "echo", "x", ":::", "a", "b"],
        ),
        case(
            "tag",
            "--tag: prefix each line with the arguments and TAB",
            &[
                "-k", "--tag", "printf", "'%s\\n'", "l1", "l2", ":::", "a", "b c",
            ],
        )
        .ssh(),
        case(
            "tag_two_sources",
            "--tag with several sources: the arguments joined by spaces",
            &["-k", "--tag", "echo", "x", ":::", "a", "b", ":::", "1"],
        ),
        // Another replacement string for `{}`.
        case(
            "replace_str",
            "-I str: str replaces {}; {} and {n} are then text, {.} and {#} still work",
            &[
                "-k", "-I", ",", "echo", ",", "{}", "{.}", "{1}", "{#}", ":::", "a.x", "b c",
            ],
        ),
        case(
            "replace_str_inside_word",
            "-I str: str inside words, repeated",
            &["-k", "-I", "XX", "echo", "preXXpost", "XXXX", ":::", "a"],
        ),
        case(
            "replace_str_appended",
            "-I str: without str in the command, the arguments are appended",
            &["-k", "-I", ",", "echo", "{1}", ":::", "a", ":::", "b"],
        ),
        case(
            "replace_i_attached",
            "-iSTR is -I STR",
            &["-k", "-iZ", "echo", "Z", "{}", ":::", "a"],
        ),
        case(
            "replace_long",
            "--replace=STR is -I STR; --replace WORD takes WORD as STR",
            &[
                "-k",
                "--replace=@",
                "--replace",
                "X",
                "echo",
                "X",
                "@",
                ":::",
                "a",
            ],
        ),
        case(
            "replace_i_alone",
            "-i alone is -I {}",
            &["-k", "-i", "-k", "echo", "{}", ":::", "a"],
        ),
        case(
            "replace_str_tagstring",
            "-I str applies to --tagstring too",
            &[
                "-k",
                "-I",
                ",",
                "--tagstring",
                "<,>",
                "echo",
                ",",
                ":::",
                "a",
            ],
        ),
        // Echoing the command lines.
        case(
            "verbose_stdout",
            "-v: each job's command line on stdout before its output",
            &["-v", "-k", "echo", ":::", "a", "b c", "it's"],
        )
        .ssh(),
        case(
            "verbose_stdout_tag",
            "-v with --tag: the command line is tagged like the output",
            &["-v", "--tag", "-k", "echo", ":::", "a", "b"],
        ),
        case(
            "verbose_stdout_ungroup",
            "-v with -u: the command line is printed as the job starts",
            &["-v", "-u", "echo", ":::", "a"],
        ),
        case(
            "verbose_stderr",
            "-t: each job's command line on stderr as it starts",
            &["-t", "-k", "echo", ":::", "a", "b c"],
        ),
        case(
            "verbose_long_and_v",
            "--verbose is -t; with -v the line goes to both",
            &["--verbose", "-v", "-k", "echo", ":::", "a"],
        ),
        case(
            "tagstring_escapes",
            "--tagstring: \\t and the like are interpreted, positional strings work",
            &[
                "-k",
                "--tagstring",
                "<\\t{2}>",
                "echo",
                "x",
                ":::",
                "a",
                "b",
                ":::",
                "1",
            ],
        ),
        // Input.
        case(
            "stdin_lines",
            "input from stdin, one item per line",
            &["-k", "echo"],
        )
        .stdin(b"a\nb c\nd\n")
        .ssh(),
        case(
            "stdin_no_final_newline",
            "a last line without newline is an item",
            &["-k", "echo"],
        )
        .stdin(b"a\nb"),
        case(
            "stdin_empty_lines",
            "an empty line is an empty item",
            &["-k", "echo", "[{}]"],
        )
        .stdin(b"a\n\nb\n"),
        case(
            "stdin_crlf",
            "CR is kept; GNU warns when the first three values end in CR-NL",
            &["-k", "printf", "'%s|\\n'"],
        )
        .stdin(b"a\r\nb\r\nc\r\n"),
        case("empty_input", "no input: no jobs, exit 0", &["echo", "x"]).stdin(b""),
        case(
            "arg_file",
            "-a file: input from file",
            &["-a", "in.txt", "-k", "echo"],
        )
        .file("in.txt", b"1\n2\n3\n"),
        case(
            "arg_files_product",
            "several -a: all combinations",
            &["-a", "f1", "-a", "f2", "-k", "echo"],
        )
        .file("f1", b"1\n2\n")
        .file("f2", b"x\ny\n"),
        case(
            "four_colons_file",
            ":::: file: arguments from a file",
            &["-k", "echo", "::::", "f1"],
        )
        .file("f1", b"1\n2\n"),
        case(
            "four_colons_stdin",
            ":::: -: arguments from stdin",
            &["-k", "echo", "::::", "-", ":::", "x", "y"],
        )
        .stdin(b"a\nb\n"),
        case(
            "cartesian_product",
            "several ::: sources: all combinations, first source slowest",
            &[
                "-k", "echo", ":::", "a", "b", ":::", "1", "2", ":::", "x", "y",
            ],
        )
        .ssh(),
        case(
            "link_plus",
            ":::+ links to the previous source",
            &["-k", "echo", ":::", "a", "b", "c", ":::+", "1", "2", "3"],
        ),
        case(
            "link_unequal",
            ":::+ with fewer values: values do not wrap",
            &["-k", "echo", ":::", "a", "b", "c", ":::+", "1", "2"],
        ),
        case(
            "link_file_plus",
            "::::+ links a file to the previous source",
            &["-k", "echo", ":::", "a", "b", "::::", "f1", "::::+", "f2"],
        )
        .file("f1", b"1\n2\n")
        .file("f2", b"x\ny\n"),
        case(
            "arg_file_then_args",
            "-a sources come before ::: sources",
            &["-a", "f1", "-k", "echo", ":::", "x", "y"],
        )
        .file("f1", b"1\n2\n"),
        case(
            "null_separated",
            "-0: items separated by NUL",
            &["-0", "-k", "echo", "[{}]"],
        )
        .stdin(b"a b\0c\nd\0e"),
        case(
            "delimiter",
            "-d delim: items separated by delim",
            &["-d", ",", "-k", "echo", "[{}]"],
        )
        .stdin(b"a,b,,c"),
        case(
            "delimiter_escape",
            "-d '\\t': backslash escapes in the delimiter",
            &["-d", "\\t", "-k", "echo"],
        )
        .stdin(b"a\tb c\td"),
        case(
            "delimiter_octal",
            "-d '\\101': an octal escape in the delimiter",
            &["-d", "\\101", "-k", "echo"],
        )
        .stdin(b"aAbAc"),
        case(
            "delimiter_unknown_escape",
            "-d '\\x': a backslash before another letter is kept",
            &["-d", "\\x", "-k", "echo"],
        )
        .stdin(b"a\\xb\\xc"),
        case(
            "eof_string_stdin",
            "-E str: input ends at a line equal to str",
            &["-E", "X", "-k", "echo"],
        )
        .stdin(b"a\nXY\nX\nb\n"),
        case(
            "eof_string_each_source",
            "-E str: each input source ends at its own str",
            &[
                "-E", "X", "-k", "echo", ":::", "a", "X", "b", ":::", "1", "2", "X",
            ],
        ),
        case(
            "eof_e_forms",
            "-eSTR is -E STR, for files too",
            &["-k", "-eX", "echo", ":::", "a", "X", "b", "::::", "f1"],
        )
        .file("f1", b"1\nX\n2\n"),
        case(
            "eof_empty_string",
            "-E '': an empty str ends nothing",
            &["-E", "", "-k", "echo", "[{}]"],
        )
        .stdin(b"a\n\nb\n"),
        case(
            "trim_both",
            "--trim lr: white space removed at both ends of each value",
            &["--trim", "lr", "-k", "echo", "[{}]"],
        )
        .stdin(b"  a b \t\n\tc  \n \n"),
        case(
            "trim_left",
            "--trim l: white space removed at the start",
            &["--trim", "l", "-k", "echo", "[{}]", ":::", " x ", "\ty"],
        ),
        case(
            "trim_right_tag",
            "--trim r: white space removed at the end, in --tag too",
            &[
                "--trim", "r", "--tag", "-k", "echo", "[{}]", ":::", " x ", "y\t",
            ],
        ),
        case(
            "trim_none",
            "--trim n: values kept as they are",
            &["--trim", "n", "-k", "echo", "[{}]", ":::", " x "],
        ),
        case(
            "args_split_on_separator",
            "::: values are written to a file and read back with the separator",
            &["-k", "echo", ":::", "a\nb", "c"],
        ),
        case(
            "missing_arg_file",
            "an input file that cannot be opened is an error: exit 255",
            &["-k", "echo", "::::", "nonexistent"],
        ),
        case(
            "empty_source",
            "an empty source gives one empty argument",
            &["-k", "echo", ":::", "a", "b", "::::", "empty"],
        )
        .file("empty", b""),
    ]
}
