//! GNU parallel compatibility suite. Every case in `compat/cases.rs` and `compat/cases_run.rs` runs through
//! Debian's `parallel` (the reference, 20221122) and through `kb parallel -jN` (GNU's syntax), comparing stdout,
//! stderr and exit status (and joblogs and written files where a case says so). A subset also runs over SSH:
//! `parallel -S` and `kb -S` against the same sshd, and `kb -S` against `kb agent`. The normalisations are
//! documented in `compat/compare.rs` and in docs/gnu-compat.md, which lists every case.
//!
//! Needs GNU parallel (`apt-get install parallel`) and, for the SSH tests, OpenSSH (`apt-get install
//! openssh-server openssh-client`); a missing one fails the tests saying so.
// A test that cannot go on fails at once, with the value that stopped it.
#![allow(clippy::unwrap_used)]

#[path = "compat/cases.rs"]
mod cases;
#[path = "compat/cases_run.rs"]
mod cases_run;
#[path = "compat/compare.rs"]
mod compare;
#[path = "compat/harness.rs"]
mod harness;
mod support;

use std::time::Duration;

use harness::{Target, Tool};
use support::{CommandExt as _, kb_command};

/// Runs one case locally and fails with every difference.
fn check(name: &str) {
    let case = cases::all()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case `{name}`"));
    let gnu = harness::run(&case, Tool::Gnu, &Target::Local);
    let kb = harness::run(&case, Tool::Kb, &Target::Local);
    let diffs = compare::compare(&case, &gnu, &kb, &Target::Local);
    assert!(
        diffs.is_empty(),
        "case `{name}` ({}): kb differs from GNU parallel:\n{}",
        case.doc,
        diffs.join("\n")
    );
}

macro_rules! compat_cases {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name));
            }
        )*
        /// The names of the cases that have a test above.
        const TESTED: &[&str] = &[$(stringify!($name)),*];
    };
}

compat_cases!(
    repl_braces,
    repl_no_ext,
    repl_basename,
    repl_dirname,
    repl_basename_no_ext,
    repl_seq,
    repl_slot,
    repl_positional,
    repl_positional_forms,
    repl_negative_positional,
    repl_appended,
    repl_inside_word,
    repl_command_is_input,
    tagstring,
    tag,
    tag_two_sources,
    replace_str,
    replace_str_inside_word,
    replace_str_appended,
    replace_i_attached,
    replace_long,
    replace_i_alone,
    replace_str_tagstring,
    verbose_stdout,
    verbose_stdout_tag,
    verbose_stdout_ungroup,
    verbose_stderr,
    verbose_long_and_v,
    tagstring_escapes,
    stdin_lines,
    stdin_no_final_newline,
    stdin_empty_lines,
    stdin_crlf,
    empty_input,
    arg_file,
    arg_files_product,
    four_colons_file,
    four_colons_stdin,
    cartesian_product,
    link_plus,
    link_unequal,
    link_file_plus,
    arg_file_then_args,
    null_separated,
    delimiter,
    delimiter_escape,
    delimiter_octal,
    delimiter_unknown_escape,
    eof_string_stdin,
    eof_string_each_source,
    eof_e_forms,
    eof_empty_string,
    trim_both,
    trim_left,
    trim_right_tag,
    trim_none,
    args_split_on_separator,
    missing_arg_file,
    empty_source,
    quoting_odd_values,
    quoting_dry_run,
    redirection,
    pipe_in_command,
    double_dash_options_end,
    double_dash_in_command,
    dry_run,
    dry_run_stdin,
    keep_order,
    completion_order,
    group,
    line_buffer,
    line_buffer_keep_order,
    ungroup,
    stderr_of_jobs,
    joblog,
    joblog_append,
    resume,
    resume_new_joblog,
    resume_failed,
    retries_then_success,
    retries_exhausted,
    retries_joblog,
    halt_now_fail,
    halt_soon_fail,
    halt_now_kills_running,
    halt_success,
    halt_done,
    halt_fail_percent,
    halt_legacy_2,
    exit_all_ok,
    exit_counts_failures,
    exit_101,
    exit_killed_by_signal,
    timeout,
    timeout_joblog,
    repl_slot_reuse,
    parallel_seq_env,
    parallel_jobslot_env,
    many_jobs_keep_order,
    unicode_values,
    command_from_input,
    unordered_many,
    max_procs_spelling,
    gnu_spellings,
    dryrun_spelling,
    jobs_zero,
    jobs_percent,
    jobs_plus,
    jobs_minus,
    delay,
    retries_zero,
    env_parallel,
    profile_config,
    profile_named,
    timeout_percent,
);

#[test]
fn every_case_has_a_test_and_a_docs_row() {
    let all = cases::all();
    assert!(
        all.len() >= 40,
        "the suite must cover at least 40 behaviours, it has {}",
        all.len()
    );
    let names: Vec<&str> = all.iter().map(|c| c.name).collect();
    assert_eq!(
        names, TESTED,
        "compat_cases! and cases::all() must list the same cases in the same order"
    );
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/gnu-compat.md"))
        .expect("read docs/gnu-compat.md");
    for name in names {
        assert!(
            docs.contains(&format!("`{name}`")),
            "docs/gnu-compat.md has no row for `{name}`"
        );
    }
}

#[test]
fn the_reference_is_gnu_parallel_20221122() {
    // GNU parallel is needed for the compat suite: apt-get install parallel.
    let out = std::process::Command::new("parallel")
        .arg("--version")
        .run();
    out.check(
        out.stdout.starts_with("GNU parallel 20221122"),
        "expected GNU parallel 20221122",
    );
}

/// Runs the SSH subset with GNU parallel and kb against `server`, and kb against `kb_server` too.
fn check_ssh(server: &support::SshServer, kb_server: Option<&support::SshServer>) {
    let target = |s: &support::SshServer| Target::Ssh {
        kb_login: s.login.clone(),
        ssh_config: server.ssh_config.clone(),
        kb_home: s.home.clone(),
    };
    let mut failures = Vec::new();
    let subset: Vec<_> = cases::all().into_iter().filter(|c| c.ssh).collect();
    assert!(subset.len() >= 10, "the SSH subset should stay meaningful");
    for case in &subset {
        let gnu = harness::run(case, Tool::Gnu, &target(server));
        let kb_targets = [Some(server), kb_server];
        for s in kb_targets.into_iter().flatten() {
            let kb = harness::run(case, Tool::Kb, &target(s));
            let diffs = compare::compare(case, &gnu, &kb, &target(s));
            if !diffs.is_empty() {
                failures.push(format!(
                    "case `{}` via {}:\n{}",
                    case.name,
                    s.login,
                    diffs.join("\n")
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "kb -S differs from GNU parallel -S:\n\n{}",
        failures.join("\n\n")
    );
}

#[test]
fn ssh_subset_against_sshd_and_kb_agent() {
    let sshd = support::Sshd::start();
    let agent = support::Agent::start();
    check_ssh(&sshd, Some(&agent));
}

/// GNU parallel "only reads the next job when ready to schedule it": the first job starts while stdin is still
/// open. Checked for both tools with a pipe that stays open until the first job has created its file. (Only the
/// start is compared: whether GNU prints the finished job's output before its next read returns is a race in GNU.)
#[test]
fn stdin_is_read_lazily() {
    use std::io::Write;
    for tool in [Tool::Gnu, Tool::Kb] {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = match tool {
            Tool::Gnu => {
                let mut c = std::process::Command::new("parallel");
                c.args(["--will-cite", "-j1"]);
                c
            }
            Tool::Kb => {
                let mut c = kb_command();
                c.args(["parallel", "-j1"]);
                c
            }
        };
        let mut child = cmd
            .args(["touch", "{}.started"])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .start();
        let mut stdin = child.take_stdin();
        stdin.write_all(b"first\n").expect("write the first line");
        stdin.flush().expect("flush");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let started = dir.path().join("first.started");
        while !started.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let ran_early = started.exists();
        stdin.write_all(b"second\n").expect("write the second line");
        drop(stdin);
        let run = child.wait(Duration::from_secs(60));
        run.check(
            ran_early,
            format_args!("{tool:?}: the first job did not start while stdin was open"),
        )
        .assert_success()
        .check(
            dir.path().join("second.started").exists(),
            format_args!("{tool:?}: the second job did not run"),
        );
    }
}
