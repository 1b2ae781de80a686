//! Compares what GNU parallel and kb did in one case.
//!
//! Normalisations (each also listed in docs/gnu-compat.md):
//! - N1 (none left): both tools get `-j N` for local slots, as kb reads `-j` as GNU does.
//! - N2 diagnostics: lines that the tool itself writes to stderr (GNU: `parallel: ...`, kb: `kb: ...` or
//!   `kb parallel: ...`, plus the command line that follows a diagnostic ending in `:`, as in GNU's
//!   `parallel: This job failed:`) are compared by presence only: both print some or both print none. Their
//!   wording names the program and differs by design. Everything else on stderr (the jobs' own stderr) is
//!   compared exactly.
//! - N3 unordered: cases whose output order depends on timing in GNU itself compare sorted lines.
//! - N4 joblog: the header is compared exactly; the lines are compared by `Seq` order on every column but
//!   `Starttime` and `JobRuntime` (checked to be a recent epoch time and a non-negative number) and `Host`
//!   (checked to be `:` for local runs, and left alone over SSH where GNU and kb name the host differently).
//! - N5 over SSH: stderr lines that mention `pyenv` are dropped. Root's `~/.bashrc` on these machines runs
//!   `pyenv init`, bash sources it for every command sshd runs, and concurrent jobs make it print lock warnings
//!   that come from the login shell, not from the job or the tool.

use std::time::{SystemTime, UNIX_EPOCH};

use kb::joblog::Entry;

use super::harness::{Case, Order, Run, Target, Tool};

/// Compares GNU's run with kb's; returns the differences (empty when they match).
pub fn compare(case: &Case, gnu: &Run, kb: &Run, target: &Target) -> Vec<String> {
    let mut diffs = Vec::new();
    for (i, (g, k)) in gnu.steps.iter().zip(&kb.steps).enumerate() {
        let step = format!("step {} ({})", i + 1, case.steps[i].args.join(" "));
        let (g_out, k_out) = (stdout_view(&g.0, case.order), stdout_view(&k.0, case.order));
        if g_out != k_out {
            diffs.push(format!(
                "{step}: stdout differs\n  GNU: {g_out:?}\n  kb:  {k_out:?}"
            ));
        }
        let remote = !matches!(target, Target::Local);
        let (g_jobs, g_diag) = split_stderr(&g.1, Tool::Gnu, remote);
        let (k_jobs, k_diag) = split_stderr(&k.1, Tool::Kb, remote);
        if g_jobs != k_jobs {
            diffs.push(format!(
                "{step}: job stderr differs\n  GNU: {g_jobs:?}\n  kb:  {k_jobs:?}"
            ));
        }
        if g_diag.is_empty() != k_diag.is_empty() {
            diffs.push(format!(
                "{step}: diagnostics on stderr differ (N2)\n  GNU: {g_diag:?}\n  kb:  {k_diag:?}"
            ));
        }
        if g.2 != k.2 {
            diffs.push(format!(
                "{step}: exit status differs: GNU {:?}, kb {:?}",
                g.2, k.2
            ));
        }
    }
    for ((name, g), (_, k)) in gnu.outputs.iter().zip(&kb.outputs) {
        if g != k {
            let show =
                |b: &Option<Vec<u8>>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
            diffs.push(format!(
                "file `{name}` differs\n  GNU: {:?}\n  kb:  {:?}",
                show(g),
                show(k)
            ));
        }
    }
    if let (Some(g), Some(k)) = (&gnu.joblog, &kb.joblog) {
        diffs.extend(compare_joblogs(g, k, matches!(target, Target::Local)));
    }
    diffs
}

fn stdout_view(bytes: &[u8], order: Order) -> String {
    let text = String::from_utf8_lossy(bytes).into_owned();
    match order {
        Order::Exact => text,
        Order::Sorted => {
            let mut lines: Vec<&str> = text.lines().collect();
            lines.sort_unstable();
            lines.join("\n")
        }
    }
}

/// Splits stderr into the jobs' lines and the tool's own diagnostics (N2).
fn split_stderr(bytes: &[u8], tool: Tool, remote: bool) -> (String, Vec<String>) {
    let text = String::from_utf8_lossy(bytes);
    let mut jobs = String::new();
    let mut diagnostics = Vec::new();
    let mut in_diagnostic = false;
    let mut takes_next_line = false;
    for line in text.split_inclusive('\n') {
        if remote && line.contains("pyenv") {
            // N5: the remote login shell's startup noise on this machine, not the job's.
            continue;
        }
        let own = match tool {
            Tool::Gnu => line.starts_with("parallel: "),
            Tool::Kb => line.starts_with("kb: ") || line.starts_with("kb parallel: "),
        };
        // GNU's `parallel: This job failed:` is followed by the job's command on a line of its own (kb copies
        // that), and kb's rendered errors go on with indented `caused by:` / `hint:` lines.
        let follow =
            takes_next_line || (in_diagnostic && tool == Tool::Kb && line.starts_with("  "));
        if own || follow {
            diagnostics.push(line.trim_end().to_string());
        } else {
            jobs.push_str(line);
        }
        in_diagnostic = own || follow;
        takes_next_line = own && line.trim_end().ends_with(':');
    }
    (jobs, diagnostics)
}

fn compare_joblogs(gnu: &str, kb: &str, local: bool) -> Vec<String> {
    let mut diffs = Vec::new();
    let header = |s: &str| s.lines().next().unwrap_or_default().to_string();
    if header(gnu) != header(kb) {
        diffs.push(format!(
            "joblog header differs\n  GNU: {:?}\n  kb:  {:?}",
            header(gnu),
            header(kb)
        ));
    }
    let headers = |s: &str| s.lines().filter(|l| l.starts_with("Seq\t")).count();
    if headers(gnu) != headers(kb) {
        diffs.push(format!(
            "joblog has {} header lines in GNU, {} in kb",
            headers(gnu),
            headers(kb)
        ));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64();
    let entries = |s: &str| -> Vec<Entry> {
        let mut v: Vec<Entry> = s.lines().skip(1).filter_map(Entry::parse).collect();
        v.sort_by_key(|e| e.seq);
        v
    };
    let (g, k) = (entries(gnu), entries(kb));
    let unparsed = kb
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("Seq\t") && Entry::parse(l).is_none())
        .count();
    if unparsed > 0 {
        diffs.push(format!(
            "kb's joblog has {unparsed} lines not in the joblog format:\n{kb}"
        ));
    }
    let key = |e: &Entry| {
        (
            e.seq,
            e.send,
            e.receive,
            e.exitval,
            e.signal,
            e.command.clone(),
        )
    };
    let (gk, kk): (Vec<_>, Vec<_>) = (g.iter().map(key).collect(), k.iter().map(key).collect());
    if gk != kk {
        diffs.push(format!("joblog entries differ (seq, send, receive, exitval, signal, command)\n  GNU: {gk:?}\n  kb:  {kk:?}"));
    }
    for e in &k {
        if !(now - 3600.0..=now + 60.0).contains(&e.start) || e.runtime < 0.0 {
            diffs.push(format!(
                "kb joblog times look wrong: start {} runtime {}",
                e.start, e.runtime
            ));
        }
        if local && e.host != ":" {
            diffs.push(format!(
                "kb joblog host is `{}`, GNU writes `:` for local jobs",
                e.host
            ));
        }
    }
    diffs
}
