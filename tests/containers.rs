//! `kb parallel --containers N` on the real Docker engine: the same output and exit status as local jobs, jobs that
//! really run in containers sharing the working directory, bad input refused before any container exists, and no
//! container left after a run, a failed run, an interrupt, or a client killed outright.
//!
//! Needs a running Docker engine (`tests/cluster/up` starts it) with the test image (`KB_TEST_IMAGE`, default
//! `127.0.0.1:5000/kb/debian:bookworm`, which `tests/cluster/up` imports), and a static kb (`KB_STATIC_BIN`, else
//! `scripts/build-static`). A missing component is a failure, never a skip.
// A test that cannot go on fails at once, with the value that stopped it.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

fn test_image() -> String {
    std::env::var("KB_TEST_IMAGE").unwrap_or_else(|_| "127.0.0.1:5000/kb/debian:bookworm".into())
}

/// The static kb that runs as the agent: `KB_STATIC_BIN`, else what `scripts/build-static` prints (built once, in its
/// own cached target directory).
fn static_kb() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("KB_STATIC_BIN") {
            return PathBuf::from(path);
        }
        let mut build = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-static"));
        build.env_remove("CARGO_TARGET_DIR");
        let output = build.output().expect("run scripts/build-static");
        assert!(output.status.success(), "{}", describe(&build, &output));
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
}

/// Fails unless the engine answers and holds the test image.
fn docker_ready() {
    let info = docker(&["info", "--format", "{{.ServerVersion}}"]);
    assert!(
        info.status.success(),
        "docker is not running: start dockerd (tests/cluster/up does): {}",
        String::from_utf8_lossy(&info.stderr)
    );
    let image = docker(&["image", "inspect", "--format", "{{.Id}}", &test_image()]);
    assert!(
        image.status.success(),
        "the test image `{}` is not in Docker: tests/cluster/up imports it",
        test_image()
    );
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker: install docker.io")
}

/// `kb parallel ARGS` in `dir`, with the test image and the static agent.
fn kb_parallel(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = kb_parallel_without_agent(dir, args);
    cmd.env("KB_AGENT_BINARY", static_kb());
    cmd
}

/// `kb parallel ARGS` in `dir`, with the test image and no agent binary given.
fn kb_parallel_without_agent(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kb"));
    cmd.current_dir(dir)
        .env("KB_IMAGE", test_image())
        .env_remove("KB_AGENT_BINARY")
        .env_remove("KB_START_TIMEOUT")
        .stdin(Stdio::null())
        .arg("parallel")
        .args(args);
    cmd
}

fn describe(cmd: &Command, output: &Output) -> String {
    format!(
        "command: {cmd:?}\nstatus: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A finished command and what it printed.
struct Run {
    described: String,
    output: Output,
}

impl Run {
    #[track_caller]
    fn of(mut cmd: Command) -> Run {
        let output = cmd.output().expect("run kb");
        Run {
            described: describe(&cmd, &output),
            output,
        }
    }

    #[track_caller]
    fn assert_status(&self, code: i32) -> &Run {
        assert_eq!(
            self.output.status.code(),
            Some(code),
            "unexpected exit status\n{}",
            self.described
        );
        self
    }

    #[track_caller]
    fn assert_stderr_has(&self, text: &str) -> &Run {
        assert!(
            self.stderr().contains(text),
            "stderr lacks `{text}`\n{}",
            self.described
        );
        self
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// The task id from the announcement (`kb: task ID: ...`).
    #[track_caller]
    fn task_id(&self) -> String {
        task_id_in(&self.stderr())
            .unwrap_or_else(|| panic!("no task announced\n{}", self.described))
    }
}

fn task_id_in(line: &str) -> Option<String> {
    let rest = line.split("kb: task ").nth(1)?;
    Some(rest.split(':').next()?.trim().to_string())
}

/// The containers of task `id`, running or not.
fn task_containers(id: &str) -> Vec<String> {
    let out = docker(&["ps", "-aq", "--filter", &format!("label=kb.dev/task={id}")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Removes the task's containers when the test ends, however it ends (a failed test must not leave any).
struct TaskGuard(String);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        for id in task_containers(&self.0) {
            let _ = docker(&["rm", "-f", &id]);
        }
    }
}

#[track_caller]
fn assert_no_containers(id: &str, context: &str) {
    let left = task_containers(id);
    assert!(
        left.is_empty(),
        "containers of task {id} left {context}: {left:?}"
    );
}

/// The test's working directory, under /tmp (shared with the containers at the same path).
fn workdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("kb-containers-")
        .tempdir()
        .unwrap()
}

/// `kb parallel` running in the background, its stderr read line by line.
struct Background {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Background {
    fn spawn(mut cmd: Command) -> Background {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kb");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Background {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for the task's announcement and returns its id.
    #[track_caller]
    fn task_id(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let id = task_id_in(&line);
                    self.seen.push(line);
                    if let Some(id) = id {
                        return id;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("kb announced no task; stderr: {:?}", self.seen);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// Waits up to `limit` for kb to exit; kills it and fails when it does not.
    #[track_caller]
    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.seen.extend(self.lines.try_iter());
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("kb did not exit within {limit:?}; stderr: {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `kb parallel --containers 2 -j 1 EXTRA` with two jobs that sleep a minute, and returns once both run,
/// with the task's id and a guard that removes its containers.
#[track_caller]
fn start_two_sleepers(dir: &Path, extra: &[&str]) -> (Background, String, TaskGuard) {
    let mut args = vec!["--containers", "2", "-j", "1"];
    args.extend(extra);
    args.extend(["--", "touch started-{}; sleep 60", ":::", "1", "2"]);
    let mut kb = Background::spawn(kb_parallel(dir, &args));
    let id = kb.task_id();
    let guard = TaskGuard(id.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !["started-1", "started-2"]
        .iter()
        .all(|n| dir.join(n).exists())
    {
        assert!(
            Instant::now() < deadline,
            "the jobs did not start; stderr: {:?}",
            kb.seen
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(task_containers(&id).len(), 2);
    (kb, id, guard)
}

/// Jobs with output on both streams and two failures (3 and 6), in input order (`-k`).
const JOBS: &[&str] = &[
    "-k",
    "--",
    "echo out {}; echo err {} >&2; test $(( {} % 3 )) -ne 0",
    ":::",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
];

#[test]
#[ignore = "needs docker"]
fn output_and_exit_status_match_local_jobs() {
    docker_ready();
    let dir = workdir();
    let mut local_args = vec!["--local-procs", "4"];
    local_args.extend(JOBS);
    let local = Run::of(kb_parallel(dir.path(), &local_args));
    local.assert_status(2);
    let mut args = vec!["--containers", "2", "-j", "2"];
    args.extend(JOBS);
    let remote = Run::of(kb_parallel(dir.path(), &args));
    let _guard = TaskGuard(remote.task_id());
    remote.assert_status(2);
    assert_eq!(remote.stdout(), local.stdout(), "{}", remote.described);
    assert_eq!(remote.stdout().lines().count(), 7);
    assert!(remote.stderr().contains("err 5"), "{}", remote.described);
    assert_no_containers(&remote.task_id(), "after a run with failed jobs");
}

#[test]
#[ignore = "needs docker"]
fn jobs_run_in_two_containers_at_the_working_directory() {
    docker_ready();
    let dir = workdir();
    let job = "sleep 1; test -f /.dockerenv && echo \"$(hostname) $(pwd)\"";
    let run = Run::of(kb_parallel(
        dir.path(),
        &[
            "--containers",
            "2",
            "-j",
            "1",
            "--",
            job,
            ":::",
            "1",
            "2",
            "3",
            "4",
        ],
    ));
    let id = run.task_id();
    let _guard = TaskGuard(id.clone());
    run.assert_status(0);
    let here = dir.path().display().to_string();
    let mut hosts = BTreeSet::new();
    for line in run.stdout().lines() {
        let (host, pwd) = line.split_once(' ').unwrap();
        assert_eq!(pwd, here, "{}", run.described);
        // Docker names a container's host after the first 12 hex digits of its id.
        assert!(
            host.len() == 12 && host.chars().all(|c| c.is_ascii_hexdigit()),
            "`{host}` is not a container id\n{}",
            run.described
        );
        hosts.insert(host.to_string());
    }
    assert_eq!(hosts.len(), 2, "{}", run.described);
    assert_no_containers(&id, "after a successful run");
}

#[test]
#[ignore = "needs docker"]
fn files_are_shared_both_ways() {
    docker_ready();
    let dir = workdir();
    std::fs::write(dir.path().join("in.txt"), "from here\n").unwrap();
    let run = Run::of(kb_parallel(
        dir.path(),
        &[
            "--containers",
            "1",
            "--",
            "cat in.txt > out-{}.txt; echo {} >> out-{}.txt",
            ":::",
            "a",
            "b",
        ],
    ));
    let _guard = TaskGuard(run.task_id());
    run.assert_status(0);
    for name in ["a", "b"] {
        let text = std::fs::read_to_string(dir.path().join(format!("out-{name}.txt"))).unwrap();
        assert_eq!(text, format!("from here\n{name}\n"));
    }
}

/// Containers created (even if removed since) with `dir` as their working directory, since `since` (unix seconds).
fn containers_created_for(dir: &Path, since: u64) -> String {
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let out = docker(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "type=container",
        "--filter",
        "event=create",
        "--filter",
        &format!("label=kb.dev/pwd={}", dir.display()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs docker"]
fn bad_input_fails_before_any_container_exists() {
    docker_ready();
    let dir = workdir();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Run::of(kb_parallel(
        dir.path(),
        &["--containers", "0", "echo", ":::", "1"],
    ))
    .assert_status(255)
    .assert_stderr_has("--containers must be at least 1")
    .assert_stderr_has("hint: give --containers N with N >= 1");
    let missing = "kb-test/no-such-image:never";
    Run::of(kb_parallel(
        dir.path(),
        &["--containers", "1", "--image", missing, "echo", ":::", "1"],
    ))
    .assert_status(255)
    .assert_stderr_has(&format!(
        "the image `{missing}` is not in the local Docker engine"
    ))
    .assert_stderr_has(&format!("docker pull {missing}"));
    Run::of(kb_parallel(
        dir.path(),
        &["--containers", "1", "--cpu", "100000", "echo", ":::", "1"],
    ))
    .assert_status(255)
    .assert_stderr_has("does not fit a container");
    let created = containers_created_for(dir.path(), since);
    assert!(created.is_empty(), "containers were created: {created}");
}

#[test]
#[ignore = "needs docker"]
fn an_interrupt_mid_run_removes_every_container() {
    docker_ready();
    let dir = workdir();
    let (mut kb, id, _guard) = start_two_sleepers(dir.path(), &[]);
    kb.signal(nix::sys::signal::Signal::SIGINT);
    let status = kb.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(130), "stderr: {:?}", kb.seen);
    assert_no_containers(&id, "after SIGINT");
    let keys = std::env::temp_dir()
        .join(format!("kb-{}", nix::unistd::getuid()))
        .join(&id);
    assert!(!keys.exists(), "the task's keys are left in {keys:?}");
}

#[test]
#[ignore = "needs docker"]
fn containers_of_a_killed_client_end_by_themselves() {
    docker_ready();
    let dir = workdir();
    let (mut kb, id, _guard) = start_two_sleepers(dir.path(), &["--orphan-timeout", "2s"]);
    kb.signal(nix::sys::signal::Signal::SIGKILL);
    kb.wait(Duration::from_secs(10));
    assert_eq!(task_containers(&id).len(), 2, "the containers went with kb");
    // A client killed outright cannot delete its keys.
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir()
            .join(format!("kb-{}", nix::unistd::getuid()))
            .join(&id),
    );
    // 2 s without a client, then the agent exits and Docker removes the container (auto_remove).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !task_containers(&id).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the containers of task {id} did not end within 30 s of their client's death"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// No Docker needed: these fail before kb contacts the engine.
#[test]
fn bad_input_is_refused_before_docker_is_asked() {
    let dir = workdir();
    let no_docker = |args: &[&str]| {
        let mut cmd = kb_parallel_without_agent(dir.path(), args);
        cmd.env("DOCKER_HOST", "unix:///nonexistent.sock");
        cmd
    };
    Run::of(no_docker(&["--containers", "1", "--pods", "1", "echo"]))
        .assert_status(255)
        .assert_stderr_has("cannot be used with");
    Run::of(no_docker(&["--containers", "0", "echo", ":::", "1"]))
        .assert_status(255)
        .assert_stderr_has("--containers must be at least 1");
    // The kb under test is dynamically linked: without --agent-binary it cannot be the agent.
    Run::of(no_docker(&["--containers", "1", "echo", ":::", "1"]))
        .assert_status(255)
        .assert_stderr_has("cannot be kb's agent in the containers")
        .assert_stderr_has("scripts/build-static");
}
