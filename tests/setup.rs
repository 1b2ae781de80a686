//! `kb setup` on the real Docker engine, the local registry and the local cluster (`tests/cluster/up`): through a
//! pseudo-terminal with apt-get from Debian's archive, with `--yes` and no terminal, and each error that can be
//! provoked here. After each: no container `kb setup` made is left, and on failure neither config file is written.
// A test that cannot go on fails at once, with the value that stopped it.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::cluster::TestNs;
use support::process::{CommandExt as _, Run};
use support::terminal::Terminal;

fn base_image() -> String {
    std::env::var("KB_TEST_IMAGE").unwrap_or_else(|_| "127.0.0.1:5000/kb/debian:bookworm".into())
}

fn registry() -> String {
    std::env::var("KB_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into())
}

/// A project directory and a user config directory of the test's own.
struct Project {
    dir: tempfile::TempDir,
    config: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::Builder::new()
            .prefix("kb-setup-test-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("data.txt"), "one\ntwo\n").unwrap();
        Project {
            dir,
            config: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `kb ARGS` in the project, with the test's namespace only in the environment `kb setup` may record.
    fn kb(&self, ns: &TestNs, args: &[&str]) -> Command {
        let mut cmd = ns.kb(self.path(), args);
        cmd.env("KB_CONFIG_DIR", self.config.path())
            .env_remove("KB_IMAGE")
            .env_remove("KB_IMAGE_PREFIX")
            .env_remove("KB_BASE_IMAGE");
        cmd
    }

    fn project_config(&self) -> Option<String> {
        std::fs::read_to_string(self.path().join("kb.toml")).ok()
    }

    fn user_config(&self) -> Option<String> {
        std::fs::read_to_string(self.config.path().join("config.toml")).ok()
    }

    /// The `image = "..."` of kb.toml.
    fn image(&self) -> String {
        let text = self.project_config().expect("kb.toml written");
        let value: toml::Value = toml::from_str(&text).unwrap();
        value["image"]
            .as_str()
            .expect("an image in kb.toml")
            .to_string()
    }
}

/// Containers `kb setup` made that still exist.
fn setup_containers() -> Vec<String> {
    // docker comes with docker.io.
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "label=kb.dev/setup",
            "--format",
            "{{.Names}}",
        ])
        .run();
    out.assert_success();
    out.stdout.lines().map(str::to_string).collect()
}

/// Fails when the `kb setup` of process `pid` left a container (named `kb-setup-<host>-<pid>[-...]`); other tests'
/// sessions may be running at the same time.
fn assert_no_setup_containers(pid: u32) {
    let left: Vec<String> = setup_containers()
        .into_iter()
        .filter(|c| c.ends_with(&format!("-{pid}")) || c.contains(&format!("-{pid}-")))
        .collect();
    assert!(left.is_empty(), "kb setup left containers: {left:?}");
}

fn remove_image(image: &str) {
    let _ = Command::new("docker").args(["rmi", "-f", image]).run();
}

/// Runs `cmd` with `input` on stdin (then closed); returns what it left and its PID (for its containers' names).
fn run_with_stdin(mut cmd: Command, input: &str) -> (Run, u32) {
    let mut child = cmd.stdin(Stdio::piped()).start();
    let pid = child.pid();
    child.take_stdin().write_all(input.as_bytes()).unwrap();
    (child.wait(Duration::from_secs(900)), pid)
}

/// The main flow: answer the questions on a terminal, install jq with apt-get from Debian's archive,
/// export a variable, exit, say yes; then `kb parallel --pods 2` in the project uses the pushed image (from kb.toml,
/// no `--image`) and sees both.
#[test]
#[ignore = "needs docker and cluster"]
fn setup_through_a_terminal_then_parallel_uses_the_image() {
    let ns = TestNs::new();
    let project = Project::new();
    let mut cmd = project.kb(&ns, &["setup"]);
    // The namespace is answered at the prompt, not taken from the environment.
    cmd.env_remove("KB_NAMESPACE");
    let mut term = Terminal::spawn(cmd);
    let pid = term.pid();
    term.expect("share [lazy/eager/syncback/none] (eager): ", 30);
    term.send("");
    term.expect("The image the shell starts from", 10);
    term.send(&base_image());
    term.expect("Where to push the image", 10);
    term.send(&format!("{}/", registry()));
    term.expect("The namespace tasks of this project run in", 10);
    term.send(&ns.name);
    term.expect("exit (or Ctrl-D) when done", 60);
    // The container's terminal has this terminal's size, and follows it.
    term.send("echo size-$(stty size | tr ' ' x)");
    term.expect("size-40x100", 30);
    term.resize(50, 120);
    std::thread::sleep(Duration::from_millis(500));
    term.send("echo size-$(stty size | tr ' ' x)");
    term.expect("size-50x120", 30);
    term.send(
        "apt-get -o Acquire::Check-Valid-Until=false update -qq >/dev/null 2>&1; \
         DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null 2>&1; \
         export KB_SETUP_TEST_VAR=made-in-setup; echo installed-$(jq --version)",
    );
    term.expect("installed-jq-", 300);
    term.send("exit");
    term.expect("kb's agent runs jobs in the new image", 120);
    term.expect("Does it work? [y/n] ", 10);
    term.send("y");
    let (code, shown) = term.wait(300);
    assert_eq!(code, Some(0), "kb setup showed:\n{shown}");
    assert_no_setup_containers(pid);

    let image = project.image();
    assert!(
        image.starts_with(&format!("{}/kb-kb-setup-test-", registry())),
        "{image}"
    );
    let config = project.project_config().unwrap();
    assert!(config.contains("share = \"eager\""), "{config}");
    // The task limits are written out with kb's defaults, to be seen and changed there.
    assert!(config.contains("orphan_timeout = \"10m\""), "{config}");
    assert!(config.contains("max_runtime = \"24h\""), "{config}");
    assert!(
        config.contains(&format!("namespace = \"{}\"", ns.name)),
        "{config}"
    );
    let user = project.user_config().expect("the prefix is remembered");
    assert!(
        user.contains(&format!("image_prefix = \"{}/\"", registry())),
        "{user}"
    );
    // The image is in the registry, not only in the local engine.
    remove_image(&image);

    // No --image and no namespace in the environment: both come from kb.toml.
    let mut parallel = project.kb(
        &ns,
        &[
            "parallel",
            "--pods",
            "2",
            "--",
            "jq --version; echo $KB_SETUP_TEST_VAR {}",
            ":::",
            "1",
            "2",
        ],
    );
    parallel.env_remove("KB_NAMESPACE");
    let out = parallel.run();
    out.assert_code(0);
    let mut lines: Vec<&str> = out.stdout.lines().collect();
    lines.sort();
    out.check(lines.len() == 4, "four lines")
        .check(lines[0].starts_with("jq-1."), "jq's version")
        .check(lines[1].starts_with("jq-1."), "jq's version")
        .check(
            lines[2..] == ["made-in-setup 1", "made-in-setup 2"],
            "the variable exported in setup",
        );
    ns.assert_clean();
}

/// `--yes`, flags and no terminal: the shell's commands come from stdin; the variable and a file made in the image
/// reach a pod.
#[test]
#[ignore = "needs docker and cluster"]
fn setup_with_yes_and_no_terminal() {
    let ns = TestNs::new();
    let project = Project::new();
    let prefix = format!("{}/", registry());
    let cmd = project.kb(
        &ns,
        &[
            "setup",
            "--yes",
            "--share",
            "none",
            "--base-image",
            &base_image(),
            "--image-prefix",
            &prefix,
        ],
    );
    let (out, pid) = run_with_stdin(
        cmd,
        "echo baked > /etc/kb-setup-marker\nexport KB_PIPED_VAR='two words'\ncat data.txt\n",
    );
    out.assert_code(0)
        // The shell ran in the project directory, which is mounted at its own path.
        .assert_stdout("one\ntwo\n")
        .assert_stderr_contains("keeping exported variables: KB_PIPED_VAR");
    assert_no_setup_containers(pid);
    let config = project.project_config().unwrap();
    assert!(config.contains("share = \"none\""), "{config}");
    let image = project.image();
    remove_image(&image);
    let out = project
        .kb(
            &ns,
            &[
                "parallel",
                "--pods",
                "1",
                "--",
                "cat /etc/kb-setup-marker; test -e data.txt || echo not-shared; echo \"$KB_PIPED_VAR\" {}",
                ":::",
                "x",
            ],
        )
        .run();
    out.assert_code(0)
        // `share = "none"` from kb.toml: the project's files are not copied in.
        .assert_stdout("baked\nnot-shared\ntwo words x\n");
    ns.assert_clean();
}

/// Each failure says what to do, leaves no container, and writes neither config file.
#[test]
#[ignore = "needs docker and cluster"]
fn setup_errors_say_what_to_do_and_leave_nothing() {
    let ns = TestNs::new();
    let project = Project::new();
    let prefix = format!("{}/", registry());
    let flags = |base: &str, prefix: &str| -> Vec<String> {
        [
            "setup",
            "--yes",
            "--share",
            "eager",
            "--base-image",
            base,
            "--image-prefix",
            prefix,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |args: &[String], env: &[(&str, &str)], stdin: &str| -> (Option<i32>, String, u32) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = project.kb(&ns, &args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (out, pid) = run_with_stdin(cmd, stdin);
        (out.code(), out.stderr, pid)
    };
    let check_nothing_written = |what: &str, pid: u32| {
        assert!(
            project.project_config().is_none(),
            "{what}: kb.toml written"
        );
        assert!(
            project.user_config().is_none(),
            "{what}: user config written"
        );
        assert_no_setup_containers(pid);
    };

    // No terminal and no --yes: a usage error before anything.
    let (code, err, pid) = run(&["setup".to_string()], &[], "");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("give --yes"), "{err}");
    check_nothing_written("no terminal", pid);

    // Docker not running.
    let (code, err, pid) = run(
        &flags(&base_image(), &prefix),
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
        "",
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("cannot reach the Docker engine at unix:///nonexistent/docker.sock"),
        "{err}"
    );
    assert!(err.contains("hint: start Docker"), "{err}");
    check_nothing_written("docker down", pid);

    // The cluster unreachable: found before any container is made.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let kubeconfig = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        kubeconfig.path(),
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n\
             contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  \
             user:\n    token: x\n"
        ),
    )
    .unwrap();
    let kubeconfig_path: PathBuf = kubeconfig.path().to_owned();
    let (code, err, pid) = run(
        &flags(&base_image(), &prefix),
        &[("KUBECONFIG", kubeconfig_path.to_str().unwrap())],
        "",
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("hint:"), "{err}");
    check_nothing_written("cluster unreachable", pid);

    // A base image that is not there.
    let missing = format!("{}/kb/no-such-image:1", registry());
    let (code, err, pid) = run(&flags(&missing, &prefix), &[], "");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "the image `{missing}` is not on this machine and cannot be pulled"
        )),
        "{err}"
    );
    assert!(err.contains("hint: check the name"), "{err}");
    check_nothing_written("missing base image", pid);

    // A registry that cannot be reached: the work is committed locally, the push fails, nothing is recorded.
    let (code, err, pid) = run(&flags(&base_image(), "127.0.0.1:1/"), &[], "true\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("cannot push `127.0.0.1:1/kb-kb-setup-test-"),
        "{err}"
    );
    assert!(err.contains("the image is kept locally"), "{err}");
    check_nothing_written("registry unreachable", pid);
    let kept = Command::new("docker")
        .args(["images", "--format", "{{.Repository}}", "127.0.0.1:1/*"])
        .run();
    for image in kept.stdout.lines() {
        remove_image(image);
    }
    ns.assert_clean();
}

/// Answering no: nothing is pushed or written, the committed image is removed, no container is left.
#[test]
#[ignore = "needs docker and cluster"]
fn answering_no_keeps_nothing() {
    let ns = TestNs::new();
    let project = Project::new();
    let prefix = format!("{}/", registry());
    let cmd = project.kb(
        &ns,
        &[
            "setup",
            "--share",
            "eager",
            "--base-image",
            &base_image(),
            "--image-prefix",
            &prefix,
        ],
    );
    let mut term = Terminal::spawn(cmd);
    let pid = term.pid();
    term.expect("exit (or Ctrl-D) when done", 60);
    term.send("touch /made-in-setup; exit");
    term.expect("Does it work? [y/n] ", 120);
    term.send("n");
    let (code, shown) = term.wait(120);
    assert_eq!(code, Some(1), "kb setup showed:\n{shown}");
    assert!(
        shown.contains("nothing pushed; kb.toml is unchanged"),
        "{shown}"
    );
    assert!(project.project_config().is_none());
    assert!(project.user_config().is_none());
    assert_no_setup_containers(pid);
    let images = Command::new("docker")
        .args(["images", "-q", "--filter", "label=kb.dev/setup"])
        .run();
    // Images of other tests running now may carry the label too; none may be named after this project.
    let named = Command::new("docker")
        .args(["images", "--format", "{{.Repository}}"])
        .run();
    let project_name = project
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_lowercase();
    let leftover: Vec<String> = named
        .stdout
        .lines()
        .filter(|r| r.contains(&project_name))
        .map(str::to_string)
        .collect();
    assert!(
        leftover.is_empty(),
        "images left: {leftover:?} ({})",
        images.stdout
    );
    ns.assert_clean();
}
