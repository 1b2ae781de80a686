//! Unit tests of input combination, with expectations from GNU parallel 20221122.

use std::io::Write as _;
use std::path::PathBuf;

use super::*;
use crate::input::split_command;

fn w(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

fn records(spec: InputSpec) -> Vec<String> {
    Inputs::open(spec)
        .unwrap()
        .map(|r| r.unwrap().join("|"))
        .collect()
}

fn from_words(words: &str) -> Vec<String> {
    let (_, sources) = split_command(&w(words));
    records(InputSpec {
        sources,
        separator: Separator::Newline,
        eof: None,
        trim: Default::default(),
    })
}

fn temp_file(content: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(content).unwrap();
    f
}

#[test]
fn cartesian_product_first_slowest() {
    assert_eq!(from_words("::: a b ::: 1 2"), ["a|1", "a|2", "b|1", "b|2"]);
    assert_eq!(
        from_words("::: a ::: 1 2 ::: x y"),
        ["a|1|x", "a|1|y", "a|2|x", "a|2|y"]
    );
}

#[test]
fn linked_sources_pair_and_stop_at_the_shortest() {
    assert_eq!(from_words("::: a b c :::+ 1 2"), ["a|1", "b|2"]);
    assert_eq!(from_words("::: a b :::+ 1 2 3"), ["a|1", "b|2"]);
    assert_eq!(
        from_words("::: a b :::+ 1 2 ::: x y"),
        ["a|1|x", "a|1|y", "b|2|x", "b|2|y"]
    );
    assert_eq!(
        from_words("::: x y ::: a b :::+ 1 2"),
        ["x|a|1", "x|b|2", "y|a|1", "y|b|2"]
    );
}

#[test]
fn empty_sources_follow_gnu() {
    // `parallel echo ::: a b :::: /dev/null` runs `echo a ''` and `echo b ''`.
    let empty = temp_file(b"");
    let path = empty.path().display();
    assert_eq!(from_words(&format!("::: a b :::: {path}")), ["a|", "b|"]);
    assert_eq!(from_words(&format!(":::: {path} ::: a b")), ["|a", "|b"]);
    assert_eq!(from_words("::: a b :::+"), ["a|"]);
    assert!(from_words(&format!(":::: {path}")).is_empty());
    assert!(from_words(&format!(":::: {path} :::: {path}")).is_empty());
}

#[test]
fn args_containing_the_separator_are_split_like_gnu() {
    assert_eq!(from_words("::: a\nb c"), ["a", "b", "c"]);
    let (_, sources) = split_command(&w("::: a,b c"));
    let spec = InputSpec {
        sources,
        separator: Separator::Delimiter(",".into()),
        eof: None,
        trim: Default::default(),
    };
    assert_eq!(records(spec), ["a", "b", "c"]);
    let (_, sources) = split_command(&w("::: a\nb c"));
    assert_eq!(
        records(InputSpec {
            sources,
            separator: Separator::Nul,
            eof: None,
            trim: Default::default(),
        }),
        ["a\nb", "c"]
    );
}

#[test]
fn files_and_arg_files() {
    let f12 = temp_file(b"1\n2\n");
    let fxy = temp_file(b"x\ny");
    let spec = InputSpec::from_opts(
        &[f12.path().to_path_buf()],
        vec![(Source::File(fxy.path().to_path_buf()), false)],
        false,
        None,
    );
    assert_eq!(records(spec), ["1|x", "1|y", "2|x", "2|y"]);
}

#[test]
fn missing_file_is_an_error_at_open() {
    let spec = InputSpec {
        sources: vec![(Source::File(PathBuf::from("/nonexistent/kb")), false)],
        ..Default::default()
    };
    let err = Inputs::open(spec).err().unwrap();
    assert_eq!(
        err.to_string(),
        "failed to read input from `/nonexistent/kb`"
    );
}

#[test]
fn crlf_warning_after_three_cr_values() {
    let f = temp_file(b"a\r\nb\r\nc\r\nd\r\n");
    let spec = InputSpec {
        sources: vec![(Source::File(f.path().to_path_buf()), false)],
        ..Default::default()
    };
    let mut inputs = Inputs::open(spec).unwrap();
    let all: Vec<_> = inputs.by_ref().map(|r| r.unwrap().join("")).collect();
    assert_eq!(all, ["a\r", "b\r", "c\r", "d\r"]);
    assert_eq!(inputs.take_warnings(), [CRLF_WARNING]);
    assert!(inputs.take_warnings().is_empty());

    let f = temp_file(b"a\r\nb\nc\r\nd\r\n");
    let spec = InputSpec {
        sources: vec![(Source::File(f.path().to_path_buf()), false)],
        ..Default::default()
    };
    let mut inputs = Inputs::open(spec).unwrap();
    inputs.by_ref().for_each(drop);
    assert!(inputs.take_warnings().is_empty());
}

#[test]
fn first_group_is_not_buffered() {
    let lines: String = (0..10_000).map(|i| format!("{i}\n")).collect();
    let f = temp_file(lines.as_bytes());
    let spec = InputSpec {
        sources: vec![
            (Source::File(f.path().to_path_buf()), false),
            (Source::Args(w("x y")), false),
        ],
        ..Default::default()
    };
    let mut inputs = Inputs::open(spec).unwrap();
    assert_eq!(inputs.by_ref().count(), 20_000);
    assert!(inputs.groups[0].tuples.is_empty());
    assert_eq!(inputs.groups[1].tuples.len(), 2);
}

#[test]
fn first_record_arrives_before_the_writer_closes() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo failed");
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let writer_path = fifo.clone();
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(writer_path)
            .unwrap();
        f.write_all(b"first\n").unwrap();
        f.flush().unwrap();
        // Keep the pipe open until the reader has seen the first record.
        release_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        f.write_all(b"second\n").unwrap();
    });
    let spec = InputSpec {
        sources: vec![(Source::File(fifo), false)],
        ..Default::default()
    };
    let mut inputs = Inputs::open(spec).unwrap();
    assert_eq!(inputs.next().unwrap().unwrap(), ["first"]);
    release_tx.send(()).unwrap();
    assert_eq!(inputs.next().unwrap().unwrap(), ["second"]);
    assert!(inputs.next().is_none());
    writer.join().unwrap();
}

/// Compares the records with what GNU parallel itself makes of the same sources.
#[test]
fn records_match_live_gnu_parallel() {
    let f12 = temp_file(b"1\n2\n");
    let empty = temp_file(b"");
    let (f12, empty) = (f12.path().display(), empty.path().display());
    let cases = [
        "::: a b ::: 1 2 3".to_string(),
        "::: a b c :::+ 1 2 ::: x".to_string(),
        format!("::: a :::: {f12} ::::+ {f12}"),
        format!("::: a b :::: {empty}"),
        format!(":::: {f12} ::: a ::: b c :::+ d"),
        "::: a ::: ::: b".to_string(),
    ];
    for case in cases {
        let out = std::process::Command::new("parallel")
            .args(["--will-cite", "--dry-run", "-k", "-j1", "echo"])
            .args(w(&case))
            .output()
            .unwrap_or_else(|e| {
                panic!("GNU parallel is needed for this test (apt-get install parallel): {e}")
            });
        assert!(out.status.success(), "parallel failed on {case}");
        let gnu = String::from_utf8(out.stdout).unwrap();
        let (_, sources) = split_command(&w(&case));
        let template = crate::template::Template::parse(&w("echo"));
        let mine: String = Inputs::open(InputSpec {
            sources,
            ..Default::default()
        })
        .unwrap()
        .map(|r| template.render(&r.unwrap(), 1, 1) + "\n")
        .collect();
        assert_eq!(gnu, mine, "sources {case}");
    }
}

/// Compares item splitting with GNU parallel on stdin, for each separator option.
#[test]
fn separators_match_live_gnu_parallel() {
    let cases: [(&[&str], &[u8]); 8] = [
        (&[], b"a\nb c\n\nd"),
        (&[], b"a\r\nb\r\n"),
        (&["-0"], b"a\nb\0c\0\0d\n"),
        (&["-d", ","], b"a,b,,c,"),
        (&["-d", "\\r\\n"], b"a\r\nb\nc\r\n"),
        (&["-d", "\\t"], b"a\tb c\t"),
        (&["-d", "ab"], b"1ab2aab3"),
        (&["-d", ""], b"\n\npara 1\nline 2\n\n\n\npara 2\n"),
    ];
    for (options, stdin) in cases {
        let mut child = std::process::Command::new("parallel")
            .args(["--will-cite", "--dry-run", "-k", "-j1"])
            .args(options)
            .arg("echo")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("GNU parallel is needed for this test (apt-get install parallel): {e}")
            });
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "parallel failed on {options:?}");
        let gnu = String::from_utf8(out.stdout).unwrap();
        let separator = match options {
            ["-0"] => Separator::Nul,
            ["-d", d] => Separator::from_opts(false, Some(d)),
            _ => Separator::Newline,
        };
        let f = temp_file(stdin);
        let spec = InputSpec {
            sources: vec![(Source::File(f.path().to_path_buf()), false)],
            separator,
            eof: None,
            trim: Default::default(),
        };
        let template = crate::template::Template::parse(&w("echo"));
        let mine: String = Inputs::open(spec)
            .unwrap()
            .map(|r| template.render(&r.unwrap(), 1, 1) + "\n")
            .collect();
        assert_eq!(gnu, mine, "options {options:?} stdin {stdin:?}");
    }
}
