//! Unit tests of the template, with expectations taken from GNU parallel 20221122's `--dry-run` output.

use super::*;

fn words(ws: &[&str]) -> Vec<String> {
    ws.iter().map(|w| w.to_string()).collect()
}

fn render(ws: &[&str], args: &[&str]) -> String {
    Template::parse(&words(ws)).render(&words(args), 1, 1)
}

/// (command words, one record, what `parallel --dry-run -j1 WORDS ::: V1 ::: V2 ...` prints for job 1).
const GNU_CASES: &[(&[&str], &[&str], &str)] = &[
    (&["echo", "{}"], &["a b"], "echo 'a b'"),
    (&["echo"], &["a", "b c"], "echo a 'b c'"),
    (&["echo", "X{}Y"], &["a", "b c"], "echo Xa 'b c'Y"),
    (
        &["echo", "{#}", "{%}", "{1}", "{2}", "{3}", "{-1}", "{0}"],
        &["a", "b"],
        "echo 1 1 a b  b a b",
    ),
    (&["{}"], &["echo a b"], "echo a b"),
    (&["X{}"], &["echo a b"], "Xecho a b"),
    (&["{2}", "{1}"], &["x y", "echo"], "echo x y"),
    (&["a=b", "{}"], &["echo a b"], "a=b 'echo a b'"),
    (&["a=b{}"], &["x y"], "a=b'x y'"),
    (&["echo", "", "x"], &["a"], "echo  x a"),
    (&["echo  x"], &["a b"], "echo  x 'a b'"),
    (&["echo {}"], &["a b"], "echo 'a b'"),
    (&["echo", "{}", ">", "out"], &["a b"], "echo 'a b' > out"),
    (
        &["echo", "{1.}", "{1/}", "{1//}", "{1/.}", "{-1.}"],
        &["a.b/c.d.e"],
        "echo a.b/c.d c.d.e a.b c.d a.b/c.d",
    ),
    (
        &["echo", "{.}", "{/}", "{//}", "{/.}"],
        &["d/a.x", "e/b c.y"],
        "echo d/a 'e/b c' a.x 'b c.y' d e a 'b c'",
    ),
    (&["echo", "{}"], &[""], "echo ''"),
    (&["echo", "{}"], &["it's $HOME"], "echo 'it'\"'\"'s $HOME'"),
    (
        &["echo", "{x}", "{", "}", "{1#}", "{-}"],
        &["a"],
        "echo {x} { }  {-}",
    ),
    (&["echo", "{{}}"], &["a"], "echo {a}"),
    (&["echo", "{1#}", "{-1%}"], &["a"], "echo  "),
    (&["echo", "{9}", "{-9}"], &["a", "b"], "echo  "),
];

#[test]
fn render_matches_recorded_gnu_output() {
    for (ws, args, want) in GNU_CASES {
        assert_eq!(render(ws, args), *want, "words {ws:?} args {args:?}");
    }
}

#[test]
fn seq_and_slot_are_rendered_once() {
    let t = Template::parse(&words(&["echo", "{#}-{%}", "{}"]));
    assert_eq!(t.render(&words(&["a", "b"]), 42, 7), "echo 42-7 a b");
    assert!(t.uses_slot());
    assert!(!Template::parse(&words(&["echo"])).uses_slot());
}

#[test]
fn empty_command_is_the_input() {
    assert_eq!(render(&[], &["echo a b"]), "echo a b");
}

#[test]
fn tagstring_is_not_quoted_and_not_appended() {
    let t = Template::parse_tagstring("{1}\\t{#}:{}");
    assert_eq!(t.render(&words(&["a b", "c"]), 3, 1), "a b\t3:a b c");
    assert_eq!(
        Template::parse_tagstring("fixed").render(&words(&["a"]), 1, 1),
        "fixed"
    );
    assert_eq!(
        Template::parse_tagstring("{}").render(&words(&["it's", "x"]), 1, 1),
        "it's x"
    );
}

#[test]
fn render_into_appends() {
    let t = Template::parse(&words(&["echo"]));
    let mut buf = String::from(">");
    t.render_into(&mut buf, &words(&["a"]), 1, 1);
    assert_eq!(buf, ">echo a");
}

/// Runs GNU parallel itself on every case and on extra odd values, and compares with the renderer.
#[test]
fn render_matches_live_gnu_parallel() {
    let mut cases: Vec<(Vec<String>, Vec<String>)> = GNU_CASES
        .iter()
        .map(|(ws, args, _)| (words(ws), words(args)))
        .collect();
    let odd = [
        "a b", "it's", "x$y", "*", "", "ü é", "a\"b", "a\\b", "~x", "-x", "#h", "tab\tx", "!x",
        "a%b", "{y}",
    ];
    let shapes: [&[&str]; 7] = [
        &["a\tb={}"],
        &["", "echo", "{}"],
        &["x={}", "echo"],
        &["{}x", "y"],
        &["echo", "{.}{/}{//}", "{ }", "{/.}.gz"],
        &["echo", "{1}{1}", "{-1}", "{2.}"],
        &["echo {} | cat"],
    ];
    for ws in shapes {
        cases.push((words(ws), words(&["dir.d/file name.tar.gz", "b.c"])));
    }
    for (ws, args) in cases {
        let mut cmd = std::process::Command::new("parallel");
        cmd.args(["--will-cite", "--dry-run", "-j1"]).args(&ws);
        for arg in &args {
            cmd.args([":::", arg]);
        }
        let out = cmd.output().unwrap_or_else(|e| {
            panic!("GNU parallel is needed for this test (apt-get install parallel): {e}")
        });
        assert!(
            out.status.success(),
            "parallel failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let gnu = String::from_utf8(out.stdout).unwrap();
        let mine = Template::parse(&ws).render(&args, 1, 1);
        assert_eq!(gnu, format!("{mine}\n"), "words {ws:?} args {args:?}");
    }
    // The odd values in one run: one job each, in order.
    let ws = words(&["echo", "X{}Y", "{/}", "{.}", "{#}"]);
    let out = std::process::Command::new("parallel")
        .args(["--will-cite", "--dry-run", "-k", "-j1"])
        .args(&ws)
        .arg(":::")
        .args(odd)
        .output()
        .expect("GNU parallel is needed for this test (apt-get install parallel)");
    let gnu = String::from_utf8(out.stdout).unwrap();
    let template = Template::parse(&ws);
    let mine: String = odd
        .iter()
        .enumerate()
        .map(|(i, v)| template.render(&words(&[v]), i as u64 + 1, 1) + "\n")
        .collect();
    assert_eq!(gnu, mine);
}

#[test]
fn another_value_string_replaces_braces_but_not_positional_values() {
    let t = Template::parse_replacing(
        &words(&["echo", ",", "{}", "{.}", "{1}", "{1.}", "{0}", "{#}"]),
        ",",
    );
    assert_eq!(
        t.render(&words(&["a.x"]), 3, 1),
        "echo a.x {} a {1} a {0} 3"
    );
    let t = Template::parse_replacing(&words(&["echo", "preXXpost", "XXXX"]), "XX");
    assert_eq!(
        t.render(&words(&["it's"]), 1, 1),
        "echo pre'it'\"'\"'s'post 'it'\"'\"'s''it'\"'\"'s'"
    );
    // Not in the command: appended, as with `{}`.
    let t = Template::parse_replacing(&words(&["echo", "{1}"]), ",");
    assert_eq!(t.render(&words(&["a", "b"]), 1, 1), "echo {1} a b");
    let t = Template::parse_tagstring_replacing("<,>", ",");
    assert_eq!(t.render(&words(&["a"]), 1, 1), "<a>");
}
