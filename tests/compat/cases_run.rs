//! Compatibility cases, second half: quoting and the command line, output modes, joblog, retries, halt, exit
//! status, timeout and environment.

use super::cases::with_odd;
use super::harness::{Case, case};

/// Cases about running jobs and reporting on them.
pub fn run_cases() -> Vec<Case> {
    let seq150: Vec<String> = (1..=150).map(|i| i.to_string()).collect();
    let seq150: Vec<&'static str> = seq150
        .into_iter()
        .map(|s| &*Box::leak(s.into_boxed_str()))
        .collect();
    let mut false150 = vec!["false", ":::"];
    false150.extend(seq150);
    vec![
        // Quoting and the command line.
        case(
            "quoting_odd_values",
            "replacement values are quoted for the shell",
            &with_odd(&["-k", "printf", "'[%s]\\n'"]),
        )
        .ssh(),
        case(
            "quoting_dry_run",
            "--dry-run shows the quoted command lines",
            &with_odd(&["--dry-run", "-k", "echo"]),
        ),
        case(
            "redirection",
            "the command is not quoted: '>' redirects",
            &["-k", "echo", "{}", ">", "{}.out", ":::", "a", "b"],
        )
        .output("a.out")
        .output("b.out"),
        case(
            "pipe_in_command",
            "shell syntax in the command works",
            &[
                "-k", "echo", "{}", "|", "tr", "a-z", "A-Z", ":::", "ab", "cd",
            ],
        )
        .ssh(),
        case(
            "double_dash_options_end",
            "-- ends the options",
            &["-k", "--", "echo", ":::", "a"],
        ),
        case(
            "double_dash_in_command",
            "-- after the command is a command word",
            &["-k", "echo", "--", "{}", ":::", "a"],
        ),
        case(
            "dry_run",
            "--dry-run prints the jobs without running them",
            &["--dry-run", "-k", "touch", "{}", ":::", "x", "y z"],
        )
        .output("x"),
        case(
            "dry_run_stdin",
            "--dry-run with stdin",
            &["--dry-run", "-k", "gzip"],
        )
        .stdin(b"a.txt\nb c.txt\n"),
        // Output.
        case(
            "keep_order",
            "-k: output in the order of the input",
            &["-k", "sleep {}; echo {}", ":::", "0.6", "0.1", "0.3"],
        )
        .jobs(3)
        .ssh(),
        case(
            "completion_order",
            "without -k: output as jobs complete",
            &["sleep {}; echo {}", ":::", "0.9", "0.1", "0.5"],
        )
        .jobs(3),
        case(
            "group",
            "--group: a job's output is printed together when it ends",
            &[
                "sleep {1}; echo {2}-1; sleep 0.6; echo {2}-2",
                ":::",
                "0",
                "0.3",
                ":::+",
                "a",
                "b",
            ],
        )
        .jobs(2),
        case(
            "line_buffer",
            "--line-buffer: whole lines as they come, jobs mixed",
            &[
                "--line-buffer",
                "sleep {1}; echo {2}-1; sleep 0.6; echo {2}-2",
                ":::",
                "0",
                "0.3",
                ":::+",
                "a",
                "b",
            ],
        )
        .jobs(2),
        case(
            "line_buffer_keep_order",
            "--line-buffer -k: job 1 live, the others after",
            &[
                "--line-buffer",
                "-k",
                "sleep {1}; echo {2}-1; sleep 0.6; echo {2}-2",
                ":::",
                "0",
                "0.3",
                ":::+",
                "a",
                "b",
            ],
        )
        .jobs(2),
        case(
            "ungroup",
            "-u: output as soon as possible",
            &[
                "-u",
                "sleep {1}; echo {2}-1; sleep 0.6; echo {2}-2",
                ":::",
                "0",
                "0.3",
                ":::+",
                "a",
                "b",
            ],
        )
        .jobs(2),
        case(
            "stderr_of_jobs",
            "--group: stderr of a job printed after its stdout, on stderr",
            &["-k", "echo out {}; echo err {} >&2", ":::", "a", "b"],
        )
        .ssh(),
        // Joblog, resume, retries.
        case(
            "joblog",
            "--joblog: tab-separated log with a header",
            &[
                "--joblog",
                "log",
                "-k",
                "echo {}; exit {}",
                ":::",
                "0",
                "1",
                "2",
            ],
        )
        .joblog("log")
        .ssh(),
        case(
            "joblog_append",
            "--joblog +file appends without a second header",
            &["--joblog", "log", "echo", ":::", "a"],
        )
        .then(&["--joblog", "+log", "echo", ":::", "b"])
        .joblog("log"),
        case(
            "resume",
            "--resume: skip the jobs in the joblog",
            &[
                "--joblog", "log", "-k", "exit {}", ":::", "0", "1", "0", "2",
            ],
        )
        .then(&[
            "--joblog",
            "log",
            "--resume",
            "-k",
            "echo {}; exit {}",
            ":::",
            "0",
            "1",
            "0",
            "2",
            "3",
            "4",
        ])
        .joblog("log"),
        case(
            "resume_new_joblog",
            "--resume with no joblog yet: runs everything and starts the joblog with its header",
            &["--joblog", "log", "--resume", "-k", "echo", ":::", "a", "b"],
        )
        .joblog("log"),
        case(
            "resume_failed",
            "--resume-failed: re-run the failed jobs and the new ones",
            &[
                "--joblog", "log", "-k", "exit {}", ":::", "0", "1", "0", "2",
            ],
        )
        .then(&[
            "--joblog",
            "log",
            "--resume-failed",
            "-k",
            "echo {}; exit {}",
            ":::",
            "0",
            "1",
            "0",
            "2",
            "3",
        ])
        .joblog("log"),
        case(
            "retries_then_success",
            "--retries n: a failing job is tried again; only the last try's output is printed",
            &[
                "--retries",
                "3",
                "n=$(cat c{} 2>/dev/null || echo 0); n=$((n+1)); echo $n > c{}; echo try $n; test $n -ge 2",
                ":::",
                "a",
            ],
        ),
        case(
            "retries_exhausted",
            "--retries n: still failing after n tries counts as failed",
            &["--retries", "2", "echo {}; exit 1", ":::", "a"],
        ),
        case(
            "retries_joblog",
            "--retries with --joblog: only the last try is logged",
            &[
                "--joblog",
                "log",
                "--retries",
                "3",
                "echo {}; exit 1",
                ":::",
                "a",
            ],
        )
        .joblog("log"),
        // Halt.
        case(
            "halt_now_fail",
            "--halt now,fail=1: exit status is the failing job's",
            &[
                "--halt",
                "now,fail=1",
                "-k",
                "echo {}; exit {}",
                ":::",
                "0",
                "3",
                "0",
            ],
        ),
        case(
            "halt_soon_fail",
            "--halt soon,fail=1: no new jobs after the first failure",
            &[
                "--halt",
                "soon,fail=1",
                "-k",
                "echo {}; exit {}",
                ":::",
                "0",
                "3",
                "0",
            ],
        ),
        case(
            "halt_now_kills_running",
            "--halt now: running jobs are killed",
            &[
                "--halt",
                "now,fail=1",
                "sleep {1}; echo {1}; exit {2}",
                ":::",
                "3",
                "0.3",
                ":::+",
                "0",
                "1",
            ],
        )
        .jobs(2),
        case(
            "halt_success",
            "--halt now,success=1: stop at the first success",
            &[
                "--halt",
                "now,success=1",
                "-k",
                "echo {}; exit {}",
                ":::",
                "1",
                "0",
                "1",
            ],
        ),
        case(
            "halt_done",
            "--halt now,done=2: stop after 2 jobs",
            &[
                "--halt",
                "now,done=2",
                "-k",
                "echo",
                ":::",
                "a",
                "b",
                "c",
                "d",
            ],
        ),
        case(
            "halt_fail_percent",
            "--halt soon,fail=50%: percentage of jobs",
            &[
                "--halt",
                "soon,fail=50%",
                "-k",
                "echo {}; exit {}",
                ":::",
                "0",
                "1",
                "1",
                "0",
                "0",
                "0",
            ],
        ),
        case(
            "halt_legacy_2",
            "--halt 2: same as now,fail=1",
            &[
                "--halt",
                "2",
                "-k",
                "echo {}; exit {}",
                ":::",
                "0",
                "4",
                "0",
            ],
        ),
        // Exit status, timeout, environment.
        case(
            "exit_all_ok",
            "exit 0: all jobs ran without error",
            &["true", ":::", "a", "b"],
        )
        .ssh(),
        case(
            "exit_counts_failures",
            "exit 1-100: the number of failed jobs",
            &["exit {}", ":::", "0", "1", "2", "3", "0", "5"],
        )
        .jobs(4)
        .ssh(),
        case("exit_101", "exit 101: more than 100 jobs failed", &false150).jobs(8),
        case(
            "exit_killed_by_signal",
            "a job killed by a signal failed; joblog Signal column",
            &["--joblog", "log", "kill -9 $$", ":::", "a"],
        )
        .joblog("log"),
        case(
            "timeout",
            "--timeout secs: kill jobs that run longer",
            &[
                "--timeout",
                "1",
                "-k",
                "sleep {}; echo {}",
                ":::",
                "0.1",
                "3",
            ],
        )
        .jobs(2),
        case(
            "timeout_joblog",
            "a job killed by --timeout is logged with Exitval -1 and Signal 15",
            &["--joblog", "log", "--timeout", "1", "sleep", ":::", "3"],
        )
        .joblog("log"),
        case(
            "repl_slot_reuse",
            "{%} and $PARALLEL_JOBSLOT: a freed slot is reused, never two running jobs in one slot",
            &[
                "-k",
                "sleep {}; echo {%} $PARALLEL_JOBSLOT",
                ":::",
                "0.6",
                "0.1",
                "0.1",
                "0.1",
            ],
        )
        .jobs(2),
        case(
            "parallel_seq_env",
            "$PARALLEL_SEQ: the job's sequence number",
            &["-k", "echo $PARALLEL_SEQ", ":::", "a", "b", "c"],
        )
        .ssh(),
        case(
            "parallel_jobslot_env",
            "$PARALLEL_JOBSLOT: the job's slot",
            &["-k", "echo $PARALLEL_JOBSLOT", ":::", "a", "b"],
        ),
        case(
            "many_jobs_keep_order",
            "-k with many jobs on several slots",
            &[
                "-k", "echo", ":::", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12",
            ],
        )
        .jobs(4),
        case(
            "unicode_values",
            "non-ASCII values pass through",
            &["-k", "echo", "{}", "{.}", ":::", "日本.txt", "ü"],
        ),
        case(
            "command_from_input",
            "no command: the input lines are the commands",
            &["-k"],
        )
        .stdin(b"echo a\necho 'b c'\n"),
        case(
            "unordered_many",
            "jobs in parallel without -k: every job's output once",
            &["echo", ":::", "a", "b", "c", "d", "e", "f"],
        )
        .jobs(3)
        .sorted(),
    ]
}

/// GNU's syntax as typed: its spellings, `-j` forms, `$PARALLEL` and profiles (every case runs without `--`).
pub fn syntax_cases() -> Vec<Case> {
    vec![
        case(
            "max_procs_spelling",
            "-P N / --max-procs N: the same as -j N (the last one counts)",
            &["-P", "1", "--max-procs", "2", "-k", "sleep 0.3; echo {%}", ":::", "a", "b"],
        ),
        case(
            "gnu_spellings",
            "--keeporder, --linebuffer, --jl are -k, --line-buffer, --joblog",
            &["--keeporder", "--linebuffer", "--jl", "log", "echo", ":::", "a", "b"],
        )
        .joblog("log"),
        case(
            "dryrun_spelling",
            "--dryrun: the same as --dry-run",
            &["--dryrun", "-k", "echo", "{}", ":::", "a", "b c"],
        ),
        case(
            "jobs_zero",
            "-j 0: run as many jobs as possible at once",
            &["-j", "0", "-k", "sleep 0.3; echo {%}", ":::", "a", "b", "c"],
        ),
        case(
            "jobs_percent",
            "-j N%: N percent of the CPUs, rounded up",
            &["-j", "1%", "-k", "sleep 0.2; echo {%}", ":::", "a", "b"],
        ),
        case(
            "jobs_plus",
            "-j +N: the CPUs plus N",
            &["-j", "+2", "-k", "sleep 0.3; echo {%}", ":::", "a", "b", "c"],
        ),
        case(
            "jobs_minus",
            "-j -N: the CPUs minus N; none left is an error (exit 255)",
            &["-j", "-1000", "-k", "sleep 0.2; echo {%}", ":::", "a", "b"],
        ),
        case(
            "delay",
            "--delay D: at least D between two job starts; the output is the same",
            &["--delay", "0.2", "-j", "3", "-k", "echo {}", ":::", "a", "b", "c"],
        ),
        case(
            "retries_zero",
            "--retries 0: accepted; each job runs once (GNU 20221122 retries a failing job forever)",
            &["-k", "--retries", "0", "echo {}", ":::", "a", "b"],
        ),
        case(
            "env_parallel",
            "$PARALLEL: options (split as a shell would) before the command line",
            &["echo", ":::", "a", "b"],
        )
        .env("PARALLEL", "-k --tagstring 'x y'"),
        case(
            "profile_config",
            "$PARALLEL_HOME/config: default options, before $PARALLEL and the command line",
            &["-k", "echo", ":::", "a", "b"],
        )
        .file("ph/config", b"# comment\n--tag\n")
        .env("PARALLEL_HOME", "ph")
        .env("PARALLEL", "--tagstring T"),
        case(
            "profile_named",
            "-J NAME: options from $PARALLEL_HOME/NAME instead of config",
            &["-J", "fast", "echo", ":::", "a", "b"],
        )
        .file("ph/config", b"--tag\n")
        .file("ph/fast", b"-k --tagstring 'F G'\n")
        .env("PARALLEL_HOME", "ph"),
        case(
            "timeout_percent",
            "--timeout N%: kill jobs that take more than N% of the median runtime of the successful ones",
            &["--joblog", "log", "-k", "--timeout", "200%", "sleep {}; echo {}", ":::", "0.2", "0.2", "0.2", "3"],
        )
        .joblog("log"),
    ]
}
