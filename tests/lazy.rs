//! The lazy share's two ends on this machine, without Kubernetes: `kb share mount --at MNT` (FUSE) with its
//! stdin/stdout crossed with those of `kb share sftp-serve --root SRC`, as the share server's relay will cross them.
//! Needs root and /dev/fuse (a missing one fails the tests, it does not skip them).

#![expect(
    clippy::unwrap_used,
    reason = "the helpers of a test panic on failure, as its assertions do"
)]

mod support;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use support::process::{CommandExt as _, Run};

const KB: &str = env!("CARGO_BIN_EXE_kb");

fn mounted(path: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mounts").expect("read /proc/self/mounts");
    let path = path.to_str().expect("utf-8 path");
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(path))
}

/// A server and a mount with crossed pipes, in a temporary directory holding `src` and `mnt`.
struct Pair {
    dir: tempfile::TempDir,
    server: Child,
    mount: Child,
}

impl Pair {
    fn src(&self) -> PathBuf {
        self.dir.path().join("src")
    }

    fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// A directory with `src` filled by `fill`, then the server and the mount started.
    fn start(fill: impl FnOnce(&Path), args: &[&str]) -> Pair {
        assert!(
            Path::new("/dev/fuse").exists(),
            "these tests need /dev/fuse"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let (src, mnt) = (dir.path().join("src"), dir.path().join("mnt"));
        fs::create_dir(&src).unwrap();
        fs::create_dir(&mnt).unwrap();
        fill(&src);
        let log = |name: &str| Stdio::from(fs::File::create(dir.path().join(name)).unwrap());
        let mut server = Command::new(KB)
            .args(["share", "sftp-serve", "--root"])
            .arg(&src)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log("server.log"))
            .spawn()
            .expect("spawn kb share sftp-serve");
        let mount = Command::new(KB)
            .args(["share", "mount", "--at"])
            .arg(&mnt)
            .args(args)
            .stdin(Stdio::from(server.stdout.take().unwrap()))
            .stdout(Stdio::from(server.stdin.take().unwrap()))
            .stderr(log("mount.log"))
            .spawn()
            .expect("spawn kb share mount");
        let pair = Pair { dir, server, mount };
        pair.wait_mounted();
        pair
    }

    fn wait_mounted(&self) {
        let start = Instant::now();
        while !mounted(&self.mnt()) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "not mounted after 10 s: {}",
                self.log("mount.log")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// SIGTERM to the mount; its exit status once it exited (within 10 s).
    fn stop_mount(&mut self) -> std::process::ExitStatus {
        signal(self.mount.id(), "TERM");
        wait(&mut self.mount, Duration::from_secs(10))
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = self.mount.kill();
        let _ = self.mount.wait();
        let _ = self.server.kill();
        let _ = self.server.wait();
        if mounted(&self.mnt()) {
            let _ = Command::new("umount").arg("-l").arg(self.mnt()).status();
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(ok.success(), "kill -{sig} {pid}");
}

fn wait(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            start.elapsed() < limit,
            "process {} still runs after {limit:?}",
            child.id()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// `cat PATH`: whether it failed with an I/O error, and how long it took.
fn cat(path: &Path) -> (Run, Duration) {
    let start = Instant::now();
    let out = Command::new("cat").arg(path).run();
    (out, start.elapsed())
}

#[test]
fn files_written_before_the_mount_read_back_exactly_and_writes_reach_the_laptop() {
    let big = random(40 << 20, 7);
    let mut pair = Pair::start(
        |src| {
            fs::write(src.join("small.txt"), "hello\n").unwrap();
            fs::write(src.join("big.bin"), &big).unwrap();
            fs::create_dir(src.join("sub")).unwrap();
            for i in 0..300 {
                fs::write(src.join("sub").join(format!("f{i:03}")), i.to_string()).unwrap();
            }
            symlink("small.txt", src.join("link")).unwrap();
        },
        &[],
    );
    let (src, mnt) = (pair.src(), pair.mnt());
    assert_eq!(fs::read(mnt.join("small.txt")).unwrap(), b"hello\n");
    assert!(
        fs::read(mnt.join("big.bin")).unwrap() == big,
        "the 40 MiB file differs"
    );
    assert_eq!(names(&mnt), ["big.bin", "link", "small.txt", "sub"]);
    assert_eq!(names(&mnt.join("sub")), names(&src.join("sub")));
    assert_eq!(names(&mnt.join("sub")).len(), 300);
    assert_eq!(
        fs::read_link(mnt.join("link")).unwrap(),
        Path::new("small.txt")
    );
    assert_eq!(fs::read(mnt.join("link")).unwrap(), b"hello\n");

    // Writes through the mount: a new file, a large one, a directory, mode, truncation, append.
    fs::write(mnt.join("new.txt"), "from the pod\n").unwrap();
    assert_eq!(fs::read(src.join("new.txt")).unwrap(), b"from the pod\n");
    let written = random(3 << 20, 8);
    fs::write(mnt.join("sub/written.bin"), &written).unwrap();
    assert!(
        fs::read(src.join("sub/written.bin")).unwrap() == written,
        "the 3 MiB written file differs"
    );
    fs::create_dir(mnt.join("made")).unwrap();
    assert!(src.join("made").is_dir());
    fs::set_permissions(mnt.join("new.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(
        fs::metadata(src.join("new.txt"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o640
    );
    fs::OpenOptions::new()
        .write(true)
        .open(mnt.join("big.bin"))
        .unwrap()
        .set_len(10)
        .unwrap();
    assert_eq!(fs::read(src.join("big.bin")).unwrap(), &big[..10]);
    fs::OpenOptions::new()
        .append(true)
        .open(mnt.join("small.txt"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"more\n"))
        .unwrap();
    assert_eq!(fs::read(src.join("small.txt")).unwrap(), b"hello\nmore\n");

    // Rename and delete through the mount reach the laptop.
    fs::rename(mnt.join("new.txt"), mnt.join("made/renamed.txt")).unwrap();
    assert!(!src.join("new.txt").exists());
    assert_eq!(
        fs::read(src.join("made/renamed.txt")).unwrap(),
        b"from the pod\n"
    );
    fs::rename(mnt.join("made"), mnt.join("moved")).unwrap();
    assert_eq!(
        fs::read(mnt.join("moved/renamed.txt")).unwrap(),
        b"from the pod\n"
    );
    fs::remove_file(mnt.join("moved/renamed.txt")).unwrap();
    fs::remove_dir(mnt.join("moved")).unwrap();
    assert!(!src.join("moved").exists());
    // Errors keep their errno across SFTP.
    let err = fs::remove_dir(mnt.join("sub")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTEMPTY), "{err}");
    let err = fs::read(mnt.join("missing")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);

    assert!(pair.stop_mount().success(), "{}", pair.log("mount.log"));
    assert!(!mounted(&mnt), "still mounted after SIGTERM");
}

#[test]
fn changes_on_the_laptop_show_in_listings_at_once_and_in_names_after_the_ttl() {
    let mut pair = Pair::start(
        |src| {
            fs::write(src.join("a"), "a1").unwrap();
            fs::write(src.join("c"), "c").unwrap();
        },
        &["--ttl", "1s"],
    );
    let (src, mnt) = (pair.src(), pair.mnt());
    // The kernel now holds entries for a and c.
    assert_eq!(fs::read(mnt.join("a")).unwrap(), b"a1");
    assert!(mnt.join("c").exists());
    fs::rename(src.join("a"), src.join("b")).unwrap();
    fs::remove_file(src.join("c")).unwrap();
    fs::write(src.join("d"), "new").unwrap();
    // A listing is never cached.
    assert_eq!(names(&mnt), ["b", "d"]);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        !mnt.join("a").exists(),
        "renamed-away name still there after the TTL"
    );
    assert!(
        !mnt.join("c").exists(),
        "deleted file still there after the TTL"
    );
    assert_eq!(fs::read(mnt.join("b")).unwrap(), b"a1");
    // New content of a changed file: each open drops the cached pages, the TTL the cached size.
    fs::write(src.join("b"), "changed, and longer").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(fs::read(mnt.join("b")).unwrap(), b"changed, and longer");
    assert!(pair.stop_mount().success());
}

#[test]
fn a_killed_server_makes_reads_fail_with_eio_within_the_deadline() {
    let mut pair = Pair::start(
        |src| {
            fs::write(src.join("read-before"), "x").unwrap();
            fs::write(src.join("never-read"), "y").unwrap();
        },
        &["--deadline", "5s"],
    );
    let mnt = pair.mnt();
    assert_eq!(fs::read(mnt.join("read-before")).unwrap(), b"x");
    pair.server.kill().unwrap();
    pair.server.wait().unwrap();
    for name in ["never-read", "read-before"] {
        let (out, took) = cat(&mnt.join(name));
        out.assert_failure()
            .assert_stderr_contains("Input/output error");
        assert!(took < Duration::from_secs(5), "cat {name} took {took:?}");
    }
    let err = fs::read_dir(&mnt)
        .and_then(|d| d.collect::<Result<Vec<_>, _>>())
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    // The mount stays (answering EIO) until told to stop; then it is gone, and the exit status says it was lost.
    assert!(mounted(&mnt));
    let status = pair.stop_mount();
    assert_eq!(status.code(), Some(1), "{}", pair.log("mount.log"));
    assert!(!mounted(&mnt), "still mounted after the client exited");
}

#[test]
fn a_server_that_stops_answering_fails_the_request_at_the_deadline_and_the_rest_at_once() {
    let mut pair = Pair::start(
        |src| fs::write(src.join("f"), "f").unwrap(),
        &["--deadline", "2s"],
    );
    let mnt = pair.mnt();
    signal(pair.server.id(), "STOP");
    let (out, took) = cat(&mnt.join("f"));
    signal(pair.server.id(), "CONT");
    out.assert_stderr_contains("Input/output error");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "first failure after {took:?}"
    );
    // The server answers again, but the share is lost for good: every later operation fails at once.
    let (out, took) = cat(&mnt.join("f"));
    out.assert_stderr_contains("Input/output error");
    assert!(
        took < Duration::from_millis(500),
        "later failure after {took:?}"
    );
    assert_eq!(pair.stop_mount().code(), Some(1));
    assert!(!mounted(&mnt));
}

#[test]
fn mount_spawning_the_server_unmounts_on_sigterm_even_while_busy() {
    let dir = tempfile::tempdir().unwrap();
    let (src, mnt) = (dir.path().join("src"), dir.path().join("mnt"));
    fs::create_dir(&src).unwrap();
    fs::create_dir(&mnt).unwrap();
    fs::create_dir(src.join("d")).unwrap();
    fs::write(src.join("d/f"), "spawned").unwrap();
    let mut mount = Command::new(KB)
        .args(["share", "mount", "--at"])
        .arg(&mnt)
        .args(["--", KB, "share", "sftp-serve", "--root"])
        .arg(&src)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !mounted(&mnt) {
        assert!(start.elapsed() < Duration::from_secs(10), "not mounted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(fs::read(mnt.join("d/f")).unwrap(), b"spawned");
    // A process whose working directory is in the mount makes a plain unmount fail (EBUSY).
    let mut busy = Command::new("sleep")
        .arg("30")
        .current_dir(mnt.join("d"))
        .spawn()
        .unwrap();
    signal(mount.id(), "TERM");
    let status = wait(&mut mount, Duration::from_secs(10));
    let _ = busy.kill();
    let _ = busy.wait();
    assert!(status.success(), "{status:?}");
    assert!(!mounted(&mnt), "still mounted after SIGTERM");
}

async fn sftp_to(src: &Path) -> (RawSftpSession, tokio::process::Child) {
    let mut server = tokio::process::Command::new(KB)
        .args(["share", "sftp-serve", "--root"])
        .arg(src)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stream = tokio::io::join(server.stdout.take().unwrap(), server.stdin.take().unwrap());
    let sftp = RawSftpSession::new(stream);
    sftp.init().await.unwrap();
    (sftp, server)
}

fn denied<T: std::fmt::Debug>(what: &str, result: Result<T, SftpError>) {
    match result {
        Err(SftpError::Status(s)) if s.status_code == StatusCode::PermissionDenied => {}
        other => panic!("{what}: expected permission denied, got {other:?}"),
    }
}

#[tokio::test]
async fn the_server_refuses_dotdot_and_symlinks_that_leave_its_root() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(dir.path().join("secret"), "outside").unwrap();
    fs::set_permissions(dir.path().join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(src.join("inside"), "inside").unwrap();
    symlink("..", src.join("up")).unwrap();
    symlink("../secret", src.join("rel")).unwrap();
    symlink(dir.path().join("secret"), src.join("abs")).unwrap();
    symlink("inside", src.join("ok")).unwrap();
    let (sftp, _server) = sftp_to(&src).await;
    let read = OpenFlags::READ;
    let none = FileAttributes::default;

    denied(
        "open /../secret",
        sftp.open("/../secret", read, none()).await,
    );
    denied("open ../secret", sftp.open("../secret", read, none()).await);
    denied(
        "open /up/secret",
        sftp.open("/up/secret", read, none()).await,
    );
    denied("open /rel", sftp.open("/rel", read, none()).await);
    denied("open /abs", sftp.open("/abs", read, none()).await);
    denied("stat /abs", sftp.stat("/abs").await);
    denied("opendir /up", sftp.opendir("/up").await);
    denied(
        "create through /up",
        sftp.open("/up/created", OpenFlags::WRITE | OpenFlags::CREATE, none())
            .await,
    );
    denied("mkdir /up/made", sftp.mkdir("/up/made", none()).await);
    denied("remove /up/secret", sftp.remove("/up/secret").await);
    denied("rename out", sftp.rename("/inside", "/../moved").await);
    denied("rename in", sftp.rename("/up/secret", "/stolen").await);
    let chmod = FileAttributes {
        permissions: Some(0o666),
        ..FileAttributes::default()
    };
    denied("setstat /abs", sftp.setstat("/abs", chmod).await);
    denied("readlink /up/x", sftp.readlink("/up/rel").await);
    // A new link may point anywhere, but following it is confined like any other.
    sftp.symlink("/planted", "/etc/passwd").await.unwrap();
    denied("open /planted", sftp.open("/planted", read, none()).await);
    // Nothing outside changed.
    assert_eq!(
        fs::read_to_string(dir.path().join("secret")).unwrap(),
        "outside"
    );
    assert_eq!(
        fs::metadata(dir.path().join("secret"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(!dir.path().join("made").exists() && !dir.path().join("created").exists());
    assert!(!dir.path().join("moved").exists() && src.join("inside").exists());

    // What stays inside works: the link itself, a link to a file inside, `..` that stays inside.
    assert!(sftp.lstat("/abs").await.unwrap().attrs.is_symlink());
    // `..` is resolved lexically, before the file system sees the path: `/sub/../ok` is `/ok`.
    let handle = sftp.open("/sub/../ok", read, none()).await.unwrap().handle;
    sftp.close(handle).await.unwrap();
    let handle = sftp.open("/./ok", read, none()).await.unwrap().handle;
    let data = sftp.read(handle.as_str(), 0, 100).await.unwrap().data;
    assert_eq!(data, b"inside");
}

/// The share server's relay in between, as in a cluster: the laptop's `sftp-serve` crossed with `lazy-host`, and
/// two mounts ("pods") whose command is `lazy-attach`. Both see the laptop's files and write to it; when the
/// laptop's server goes, both fail with EIO instead of waiting.
#[test]
fn two_mounts_through_the_relay_share_the_laptop_s_files_and_fail_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (src, store) = (dir.path().join("src"), dir.path().join("store"));
    fs::create_dir(&src).unwrap();
    fs::write(src.join("input.txt"), "from the laptop\n").unwrap();
    let log = |name: &str| Stdio::from(fs::File::create(dir.path().join(name)).unwrap());
    let mut laptop = Command::new(KB)
        .args(["share", "sftp-serve", "--root"])
        .arg(&src)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log("laptop.log"))
        .spawn()
        .unwrap();
    let mut host = Command::new(KB)
        .args(["share", "lazy-host", "--task", "t1", "--store"])
        .arg(&store)
        .stdin(Stdio::from(laptop.stdout.take().unwrap()))
        .stdout(Stdio::from(laptop.stdin.take().unwrap()))
        .stderr(log("host.log"))
        .spawn()
        .unwrap();
    let socket = store.join("lazy/t1.sock");
    let start = Instant::now();
    while !socket.exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "no relay socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut mounts = Vec::new();
    for pod in ["pod1", "pod2"] {
        let mnt = dir.path().join(pod);
        fs::create_dir(&mnt).unwrap();
        let child = Command::new(KB)
            .args(["share", "mount", "--deadline", "5s", "--at"])
            .arg(&mnt)
            .args(["--", KB, "share", "lazy-attach", "--task", "t1", "--store"])
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log(&format!("{pod}.log")))
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !mounted(&mnt) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{pod} not mounted"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        mounts.push((mnt, child));
    }
    for (i, (mnt, _)) in mounts.iter().enumerate() {
        assert_eq!(
            fs::read_to_string(mnt.join("input.txt")).unwrap(),
            "from the laptop\n"
        );
        fs::write(
            mnt.join(format!("out{i}.txt")),
            format!("written by pod {i}\n"),
        )
        .unwrap();
    }
    assert_eq!(
        fs::read_to_string(src.join("out0.txt")).unwrap(),
        "written by pod 0\n"
    );
    assert_eq!(
        fs::read_to_string(src.join("out1.txt")).unwrap(),
        "written by pod 1\n"
    );
    // Each pod sees what the other wrote.
    assert_eq!(
        fs::read_to_string(mounts[0].0.join("out1.txt")).unwrap(),
        "written by pod 1\n"
    );

    // The laptop goes: the relay ends, and both mounts answer EIO well before their deadline.
    laptop.kill().unwrap();
    laptop.wait().unwrap();
    wait(&mut host, Duration::from_secs(10));
    for (mnt, _) in &mounts {
        let (out, took) = cat(&mnt.join("input.txt"));
        out.assert_failure()
            .assert_stderr_contains("Input/output error");
        assert!(took < Duration::from_secs(5), "took {took:?}");
    }
    for (mnt, mut child) in mounts {
        signal(child.id(), "TERM");
        wait(&mut child, Duration::from_secs(10));
        assert!(!mounted(&mnt));
    }
}

/// The whole data path of the lazy share except Kubernetes: the share server (`kb share server`, kb's agent with
/// the store's forced-command keys) on loopback; the laptop's `sftp-serve` reaching it with the task's client key
/// (`kb share connect`, forced to `lazy-host`); a mount reaching it with the task's pod key (forced to
/// `lazy-attach`). A key of another task reaches nothing of this one.
#[test]
fn the_lazy_share_over_ssh_through_the_share_server() {
    let dir = tempfile::tempdir().unwrap();
    let (src, store, mnt) = (
        dir.path().join("src"),
        dir.path().join("store"),
        dir.path().join("mnt"),
    );
    fs::create_dir(&src).unwrap();
    fs::create_dir(&mnt).unwrap();
    fs::write(src.join("data.txt"), "over ssh\n").unwrap();
    let log = |name: &str| Stdio::from(fs::File::create(dir.path().join(name)).unwrap());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let mut server = Command::new(KB)
        .args(["share", "server", "--listen", &address])
        // NFS only on loopback, at a port of the system's choosing (the default binds 2049 and 111 everywhere).
        .args(["--nfs-listen", "127.0.0.1:0", "--store"])
        .arg(&store)
        .stderr(log("server.log"))
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(&address).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "share server not listening"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let host_key = fs::read_to_string(store.join("host_key.pub")).unwrap();
    let (client_key, client_pub) = support::key_pair(dir.path(), "client");
    let (pod_key, pod_pub) = support::key_pair(dir.path(), "pod");
    let (other_key, other_pub) = support::key_pair(dir.path(), "other");
    for (task, client, pod) in [
        ("t1", &client_pub, &pod_pub),
        ("t2", &other_pub, &other_pub),
    ] {
        let out = Command::new(KB)
            .args([
                "share",
                "lazy-allow",
                "--task",
                task,
                "--client-key",
                client,
                "--pod-key",
                pod,
            ])
            .arg("--store")
            .arg(&store)
            .run();
        out.assert_success();
    }
    let connect = |key: &Path| -> Vec<String> {
        vec![
            KB.into(),
            "share".into(),
            "connect".into(),
            "--server".into(),
            address.clone(),
            "--host-key-pub".into(),
            host_key.trim().into(),
            "--key".into(),
            key.display().to_string(),
        ]
    };

    // The laptop: sftp-serve, its stdin and stdout carried to the server's lazy-host by the client key.
    let mut laptop = Command::new(KB)
        .args(["share", "sftp-serve", "--root"])
        .arg(&src)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log("laptop.log"))
        .spawn()
        .unwrap();
    let client_args = connect(&client_key);
    let mut carrier = Command::new(&client_args[0])
        .args(&client_args[1..])
        .stdin(Stdio::from(laptop.stdout.take().unwrap()))
        .stdout(Stdio::from(laptop.stdin.take().unwrap()))
        .stderr(log("carrier.log"))
        .spawn()
        .unwrap();
    let socket = store.join("lazy/t1.sock");
    let start = Instant::now();
    while !socket.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no relay for t1: {}",
            fs::read_to_string(dir.path().join("carrier.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Another task's pod key reaches only that task's relay, which has no client: its mount fails.
    let other = connect(&other_key);
    let denied = Command::new(KB)
        .args(["share", "mount", "--deadline", "5s", "--at"])
        .arg(&mnt)
        .arg("--")
        .args(&other)
        .run();
    denied.assert_failure();
    assert!(!mounted(&mnt));

    // The task's pod.
    let pod = connect(&pod_key);
    let mut mount = Command::new(KB)
        .args(["share", "mount", "--deadline", "5s", "--at"])
        .arg(&mnt)
        .arg("--")
        .args(&pod)
        .stderr(log("mount.log"))
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !mounted(&mnt) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not mounted: {}",
            fs::read_to_string(dir.path().join("mount.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        fs::read_to_string(mnt.join("data.txt")).unwrap(),
        "over ssh\n"
    );
    fs::write(mnt.join("result.txt"), "from the pod\n").unwrap();
    assert_eq!(
        fs::read_to_string(src.join("result.txt")).unwrap(),
        "from the pod\n"
    );

    // The laptop goes: the pod's reads fail with EIO at once.
    carrier.kill().unwrap();
    carrier.wait().unwrap();
    let (out, took) = cat(&mnt.join("data.txt"));
    out.assert_stderr_contains("Input/output error");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    signal(mount.id(), "TERM");
    wait(&mut mount, Duration::from_secs(10));
    assert!(!mounted(&mnt));
    let _ = laptop.kill();
    let _ = laptop.wait();
    server.kill().unwrap();
    server.wait().unwrap();
}
