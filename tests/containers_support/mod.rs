//! The harness of `tests/containers.rs`: `kb parallel` with the test image and the static agent, finished runs that
//! explain themselves when an assertion fails (command, status, stdout, stderr), runs in the background read line by
//! line, and the Docker queries that show what a task left.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

pub fn test_image() -> String {
    std::env::var("KB_TEST_IMAGE").unwrap_or_else(|_| "127.0.0.1:5000/kb/debian:bookworm".into())
}

/// The static kb that runs as the agent: `KB_STATIC_BIN`, else what `scripts/build-static` prints. It inherits
/// `CARGO_TARGET_DIR`, as `images/agent/build` does, so under `scripts/test` it finds the binary of the step "static
/// kb for images" instead of building it again (without it: `$HOME/.cache/kb/target-static`).
pub fn static_kb() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("KB_STATIC_BIN") {
            return PathBuf::from(path);
        }
        let mut build = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-static"));
        let output = build.output().expect("run scripts/build-static");
        assert!(output.status.success(), "{}", describe(&build, &output));
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
}

/// Fails unless the engine answers and holds the test image.
pub fn docker_ready() {
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

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker: install docker.io")
}

/// `kb parallel ARGS` in `dir`, with the test image and the static agent.
pub fn kb_parallel(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = kb_parallel_without_agent(dir, args);
    cmd.env("KB_AGENT_BINARY", static_kb());
    cmd
}

/// `kb parallel ARGS` in `dir`, with the test image and no agent binary given.
pub fn kb_parallel_without_agent(dir: &Path, args: &[&str]) -> Command {
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

/// `kb ARGS` (`status`, `finish`) in `dir` with no cluster: KUBECONFIG names a file that does not exist, so only
/// the local Docker engine has tasks.
pub fn kb_without_cluster(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kb"));
    cmd.current_dir(dir)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KB_NAMESPACE")
        .env_remove("KB_CONTEXT")
        .stdin(Stdio::null())
        .args(args);
    cmd
}

/// The row of task `id` in `kb status -o json` (no cluster), once it is there with `status`; fails after 30 s.
#[track_caller]
pub fn wait_status_row(dir: &Path, id: &str, status: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Without a row (and no cluster) `kb status` fails and prints nothing: asked again until the deadline.
        let run = Run::of(kb_without_cluster(dir, &["status", "-o", "json"]));
        let rows: Vec<serde_json::Value> = serde_json::from_str(&run.stdout()).unwrap_or_default();
        if let Some(row) = rows.into_iter().find(|r| r["id"] == id)
            && row["status"] == status
        {
            return row;
        }
        assert!(
            Instant::now() < deadline,
            "task {id} never showed {status}\n{}",
            run.described
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The key directory of task `id` on this machine.
pub fn key_dir(id: &str) -> PathBuf {
    std::env::temp_dir()
        .join(format!("kb-{}", nix::unistd::getuid()))
        .join(id)
}

pub fn describe(cmd: &Command, output: &Output) -> String {
    format!(
        "command: {cmd:?}\nstatus: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A finished command and what it printed.
pub struct Run {
    /// The command, its status and output, for failure messages.
    pub described: String,
    output: Output,
}

impl Run {
    #[track_caller]
    pub fn of(mut cmd: Command) -> Run {
        let output = cmd.output().expect("run kb");
        Run {
            described: describe(&cmd, &output),
            output,
        }
    }

    #[track_caller]
    pub fn assert_status(&self, code: i32) -> &Run {
        assert_eq!(
            self.output.status.code(),
            Some(code),
            "unexpected exit status\n{}",
            self.described
        );
        self
    }

    #[track_caller]
    pub fn assert_stderr_has(&self, text: &str) -> &Run {
        assert!(
            self.stderr().contains(text),
            "stderr lacks `{text}`\n{}",
            self.described
        );
        self
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// The task id from the announcement (`kb: task ID: ...`).
    #[track_caller]
    pub fn task_id(&self) -> String {
        task_id_in(&self.stderr())
            .unwrap_or_else(|| panic!("no task announced\n{}", self.described))
    }
}

pub fn task_id_in(line: &str) -> Option<String> {
    let rest = line.split("kb: task ").nth(1)?;
    Some(rest.split(':').next()?.trim().to_string())
}

/// The containers of task `id`, running or not.
pub fn task_containers(id: &str) -> Vec<String> {
    containers_labelled(&format!("kb.dev/task={id}"))
}

/// The containers, of any task, whose working directory is `dir` (label `kb.dev/pwd`).
pub fn containers_in(dir: &Path) -> Vec<String> {
    containers_labelled(&format!("kb.dev/pwd={}", dir.display()))
}

/// The ids of the containers with `label` (`KEY=VALUE`), running or not.
fn containers_labelled(label: &str) -> Vec<String> {
    let out = docker(&["ps", "-aq", "--filter", &format!("label={label}")]);
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
pub struct TaskGuard(pub String);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        for id in task_containers(&self.0) {
            let _ = docker(&["rm", "-f", &id]);
        }
    }
}

#[track_caller]
pub fn assert_no_containers(id: &str, context: &str) {
    let left = task_containers(id);
    assert!(
        left.is_empty(),
        "containers of task {id} left {context}: {left:?}"
    );
}

/// The test's working directory, under /tmp (shared with the containers at the same path).
pub fn workdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("kb-containers-")
        .tempdir()
        .unwrap()
}

/// `kb parallel` running in the background, its stderr read line by line.
pub struct Background {
    child: Child,
    lines: Receiver<String>,
    /// The lines of stderr read so far.
    pub seen: Vec<String>,
}

impl Background {
    pub fn spawn(mut cmd: Command) -> Background {
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
    pub fn task_id(&mut self) -> String {
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

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// Waits up to `limit` for kb to exit; kills it and fails when it does not.
    #[track_caller]
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
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
pub fn start_two_sleepers(dir: &Path, extra: &[&str]) -> (Background, String, TaskGuard) {
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

/// Containers created (even if removed since) with `dir` as their working directory, since `since` (unix seconds).
pub fn containers_created_for(dir: &Path, since: u64) -> String {
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
