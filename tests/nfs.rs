//! The lazy share's NFS path on this machine, without Kubernetes: the share server (`kb share server`) with a temp
//! store on loopback, a task allowed with `kb share lazy-allow` (which prints the task's NFS export path), the
//! laptop's `sftp-serve` reaching the server with the task's client key (`kb share connect`, forced to
//! `lazy-host`), and a real NFS client against the server's NFS listener: Debian's libnfs utilities (`nfs-ls`,
//! `nfs-cat`, `nfs-cp`; `scripts/deps` installs libnfs-utils), since this machine's kernel has no NFS client. A
//! missing utility fails the tests, it does not skip them.

#![expect(
    clippy::unwrap_used,
    reason = "the helpers of a test panic on failure, as its assertions do"
)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use support::process::{CommandExt as _, Run};

const KB: &str = env!("CARGO_BIN_EXE_kb");
/// The server's deadline for one request to a task's client (`--nfs-deadline`).
const DEADLINE: Duration = Duration::from_secs(3);

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(start.elapsed() < limit, "{what}: not after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A libnfs utility; fails the test with what to do when it is not installed.
fn libnfs(tool: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is not installed: these tests need Debian's libnfs-utils (scripts/deps installs it)"
    );
    Command::new(tool)
}

/// Runs a libnfs utility with a time limit (a hang fails the test instead of stalling it): its output and time.
#[track_caller]
fn run(mut command: Command, limit: Duration) -> (Run, Duration) {
    let start = Instant::now();
    let out = command.stdin(Stdio::null()).start().wait(limit);
    (out, start.elapsed())
}

/// The report of a finished command: its status, stdout and stderr.
fn text(out: &Run) -> String {
    out.to_string()
}

/// The share server, one task (`t1`) with its laptop side serving `src`, and a second task (`t2`) allowed but
/// never served.
struct Fixture {
    dir: tempfile::TempDir,
    server: Child,
    laptop: Child,
    carrier: Child,
    nfs_port: u16,
    export: String,
    other_export: String,
    /// `kb share connect ...` with the task's client key.
    connect: Vec<String>,
}

/// `kb share server` with its store in `dir/store`, NFS on `nfs_listen`, logging to `dir/server.log`, once its SSH
/// port answers: the process, its SSH address, and the port of the first NFS listener, if any was bound.
fn share_server(dir: &Path, nfs_listen: &str) -> (Child, String, Option<u16>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let server = Command::new(KB)
        .args(["share", "server", "--listen", &address])
        .args([
            "--nfs-listen",
            nfs_listen,
            "--nfs-deadline",
            "3s",
            "--store",
        ])
        .arg(dir.join("store"))
        .stderr(Stdio::from(
            fs::File::create(dir.join("server.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    wait_for("the SSH listener", Duration::from_secs(10), || {
        std::net::TcpStream::connect(&address).ok()
    });
    // Each NFS address is reported, bound or not.
    let wanted = nfs_listen.split(',').count();
    let log = wait_for("the NFS listeners", Duration::from_secs(10), || {
        let log = fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        let reported = log
            .lines()
            .filter(|l| {
                l.starts_with("kb share: NFS on ") || l.starts_with("kb share: cannot serve NFS")
            })
            .count();
        (reported >= wanted).then_some(log)
    });
    let nfs_port = log
        .lines()
        .find_map(|l| l.strip_prefix("kb share: NFS on 127.0.0.1:"))
        .map(|p| p.trim().parse::<u16>().unwrap());
    (server, address, nfs_port)
}

/// The laptop's side of task `t1`: `sftp-serve` of `<dir>/src` and the `connect` carrying it to `lazy-host`; returns
/// when the task's relay listens.
fn serve_laptop(dir: &Path, connect: &[String]) -> (Child, Child) {
    let log = |name: &str| Stdio::from(fs::File::create(dir.join(name)).unwrap());
    let socket = dir.join("store/lazy/t1.sock");
    let _ = fs::remove_file(&socket);
    let mut laptop = Command::new(KB)
        .args(["share", "sftp-serve", "--root"])
        .arg(dir.join("src"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log("laptop.log"))
        .spawn()
        .unwrap();
    let carrier = Command::new(KB)
        .args(connect)
        .stdin(Stdio::from(laptop.stdout.take().unwrap()))
        .stdout(Stdio::from(laptop.stdin.take().unwrap()))
        .stderr(log("carrier.log"))
        .spawn()
        .unwrap();
    wait_for("the relay of t1", Duration::from_secs(10), || {
        socket.exists().then_some(())
    });
    (laptop, carrier)
}

impl Fixture {
    fn start(fill: impl FnOnce(&Path)) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (src, store) = (dir.path().join("src"), dir.path().join("store"));
        fs::create_dir(&src).unwrap();
        fill(&src);
        let (server, address, nfs_port) = share_server(dir.path(), "127.0.0.1:0");
        let nfs_port = nfs_port.unwrap();
        let host_key = fs::read_to_string(store.join("host_key.pub")).unwrap();
        let (client_key, client_pub) = support::key_pair(dir.path(), "client");
        let (_, pod_pub) = support::key_pair(dir.path(), "pod");
        let (_, other_pub) = support::key_pair(dir.path(), "other");
        let allow = |task: &str, client: &str, pod: &str| -> Vec<String> {
            let out = Command::new(KB)
                .args(["share", "lazy-allow", "--task", task])
                .args(["--client-key", client, "--pod-key", pod, "--store"])
                .arg(&store)
                .run();
            out.assert_success();
            out.stdout.lines().map(str::to_string).collect()
        };
        let lines = allow("t1", &client_pub, &pod_pub);
        assert_eq!(lines.len(), 2, "the host key, then the export: {lines:?}");
        assert_eq!(lines[0], host_key.trim());
        let export = lines[1].clone();
        let token = export.strip_prefix("/kb/t1-").unwrap();
        assert!(
            token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
            "`{export}`"
        );
        // Allowing the task again keeps its export (pods that mounted it keep it).
        assert_eq!(allow("t1", &client_pub, &pod_pub)[1], export);
        let other_export = allow("t2", &other_pub, &other_pub)[1].clone();
        assert_ne!(other_export, export);

        let connect = vec![
            "share".to_string(),
            "connect".into(),
            "--server".into(),
            address,
            "--host-key-pub".into(),
            host_key.trim().into(),
            "--key".into(),
            client_key.display().to_string(),
        ];
        let (laptop, carrier) = serve_laptop(dir.path(), &connect);
        Fixture {
            dir,
            server,
            laptop,
            carrier,
            nfs_port,
            export,
            other_export,
            connect,
        }
    }

    fn src(&self) -> PathBuf {
        self.dir.path().join("src")
    }

    /// The NFS URL of `path` (absolute on the server, e.g. the export and a file in it), NFSv3 on the listener's
    /// port for both NFS and MOUNT (no portmapper on this machine).
    fn url(&self, path: &str) -> String {
        format!(
            "nfs://127.0.0.1{path}?version=3&nfsport={p}&mountport={p}",
            p = self.nfs_port
        )
    }

    /// The names `nfs-ls` lists at `path`, or its failed output.
    fn ls(&self, path: &str) -> Result<Vec<String>, Box<Run>> {
        let mut command = libnfs("nfs-ls");
        command.arg(self.url(path));
        let (out, _) = run(command, Duration::from_secs(20));
        if !out.status.success() {
            return Err(Box::new(out));
        }
        let mut names: Vec<String> = out
            .stdout
            .lines()
            .filter_map(|l| l.split_whitespace().last().map(str::to_string))
            .filter(|n| n != "." && n != "..")
            .collect();
        names.sort();
        Ok(names)
    }

    /// `nfs-cat` of `name` in the task's export: its output and how long it took.
    fn cat(&self, name: &str) -> (Run, Duration) {
        let mut command = libnfs("nfs-cat");
        command.arg(self.url(&format!("{}/{name}", self.export)));
        run(command, Duration::from_secs(30))
    }

    fn log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for child in [&mut self.carrier, &mut self.laptop, &mut self.server] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn files_made_on_the_laptop_are_read_exactly_and_nfs_writes_reach_the_laptop() {
    let big = random(3 << 20, 11);
    let f = Fixture::start(|src| {
        fs::create_dir(src.join("sub")).unwrap();
        fs::write(src.join("sub/deep.txt"), "deep\n").unwrap();
    });
    // Written on the laptop after the server and the relay started, right before the reads.
    fs::write(f.src().join("data.txt"), "hello over nfs\n").unwrap();
    fs::write(f.src().join("big.bin"), &big).unwrap();
    let (out, _) = f.cat("data.txt");
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        f.log("server.log")
    );
    assert_eq!(out.stdout_bytes(), b"hello over nfs\n");
    let (out, _) = f.cat("big.bin");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        out.stdout_bytes() == big,
        "the 3 MiB file differs ({} bytes read)",
        out.stdout_bytes().len()
    );
    let (out, _) = f.cat("sub/deep.txt");
    assert_eq!(out.stdout_bytes(), b"deep\n", "{}", text(&out));
    // A missing file is an error, not an empty file.
    let (out, _) = f.cat("missing.txt");
    assert!(!out.status.success(), "{}", text(&out));

    // nfs-cp to the share: the bytes are on the laptop when it returns.
    let written = random((1 << 20) + 12345, 12);
    let local = f.dir.path().join("upload.bin");
    fs::write(&local, &written).unwrap();
    let mut command = libnfs("nfs-cp");
    command
        .arg(&local)
        .arg(f.url(&format!("{}/sub/uploaded.bin", f.export)));
    let (out, _) = run(command, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        f.log("server.log")
    );
    assert!(
        fs::read(f.src().join("sub/uploaded.bin")).unwrap() == written,
        "the uploaded file differs on the laptop"
    );
    // ... and back, through nfs-cp the other way.
    let back = f.dir.path().join("back.bin");
    let mut command = libnfs("nfs-cp");
    command
        .arg(f.url(&format!("{}/sub/uploaded.bin", f.export)))
        .arg(&back);
    let (out, _) = run(command, Duration::from_secs(30));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        fs::read(&back).unwrap() == written,
        "the downloaded file differs"
    );
    // nfs-cp creates exclusively: onto an existing file it fails with EXIST, and the laptop's file is untouched.
    let shorter = f.dir.path().join("short.txt");
    fs::write(&shorter, "short\n").unwrap();
    let mut command = libnfs("nfs-cp");
    command
        .arg(&shorter)
        .arg(f.url(&format!("{}/data.txt", f.export)));
    let (out, _) = run(command, Duration::from_secs(30));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(out.stderr.contains("NFS3ERR_EXIST"), "{}", text(&out));
    assert_eq!(
        fs::read(f.src().join("data.txt")).unwrap(),
        b"hello over nfs\n"
    );
}

#[test]
fn listings_show_a_local_create_and_delete_at_once() {
    let f = Fixture::start(|src| fs::write(src.join("a.txt"), "a").unwrap());
    assert_eq!(f.ls(&f.export).map_err(|o| text(&o)).unwrap(), ["a.txt"]);
    fs::write(f.src().join("b.txt"), "b").unwrap();
    fs::create_dir(f.src().join("dir")).unwrap();
    assert_eq!(
        f.ls(&f.export).map_err(|o| text(&o)).unwrap(),
        ["a.txt", "b.txt", "dir"]
    );
    fs::remove_file(f.src().join("a.txt")).unwrap();
    assert_eq!(
        f.ls(&f.export).map_err(|o| text(&o)).unwrap(),
        ["b.txt", "dir"]
    );
    // A file read before it changed on the laptop is read anew.
    let (out, _) = f.cat("b.txt");
    assert_eq!(out.stdout_bytes(), b"b", "{}", text(&out));
    fs::write(f.src().join("b.txt"), "b, changed on the laptop").unwrap();
    let (out, _) = f.cat("b.txt");
    assert_eq!(
        out.stdout_bytes(),
        b"b, changed on the laptop",
        "{}",
        text(&out)
    );
    // A directory of many entries is listed whole, over several READDIRPLUS pages.
    for i in 0..600 {
        fs::write(f.src().join("dir").join(format!("f{i:03}")), "x").unwrap();
    }
    let names = f
        .ls(&format!("{}/dir", f.export))
        .map_err(|o| text(&o))
        .unwrap();
    assert_eq!(names.len(), 600, "{:?}", &names[..names.len().min(5)]);
    assert_eq!(names[0], "f000");
    assert_eq!(names[599], "f599");
}

#[test]
fn without_the_token_nothing_is_found_and_the_root_lists_nothing() {
    let f = Fixture::start(|src| fs::write(src.join("secret.txt"), "t1's file").unwrap());
    // The export works with its token.
    assert_eq!(
        f.ls(&f.export).map_err(|o| text(&o)).unwrap(),
        ["secret.txt"]
    );
    // The root lists no task.
    let root = f.ls("/kb");
    assert!(
        root.as_ref().is_ok_and(Vec::is_empty),
        "{:?}",
        root.map_err(|o| text(&o))
    );
    // A wrong token, the task's bare name, and the task's token under another task's name find nothing.
    let token = f.export.strip_prefix("/kb/t1-").unwrap();
    let wrong: String = token.chars().rev().collect();
    let other_token = f.other_export.strip_prefix("/kb/t2-").unwrap();
    for path in [
        format!("/kb/t1-{wrong}"),
        format!("/kb/t1-{other_token}"),
        "/kb/t1".to_string(),
        format!("/kb/t2-{token}"),
        format!("/kb/t1-{token}/../t2-{other_token}"),
    ] {
        let listed = f.ls(&path);
        assert!(listed.is_err(), "{path} listed {listed:?}");
    }
    let mut command = libnfs("nfs-cat");
    command.arg(f.url(&format!("/kb/t1-{wrong}/secret.txt")));
    let (out, _) = run(command, Duration::from_secs(20));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!out.stdout.contains("t1's file"));
    // The other task's own export reaches only that task, whose client is not there: an error, not t1's files.
    let other = f.ls(&f.other_export);
    assert!(other.is_err(), "{other:?}");
}

#[test]
fn a_killed_laptop_makes_reads_fail_within_the_deadline() {
    let mut f = Fixture::start(|src| fs::write(src.join("data.txt"), "alive\n").unwrap());
    let (out, _) = f.cat("data.txt");
    assert_eq!(out.stdout_bytes(), b"alive\n", "{}", text(&out));
    f.carrier.kill().unwrap();
    f.carrier.wait().unwrap();
    let (out, took) = f.cat("data.txt");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!out.stdout.contains("alive"), "{}", text(&out));
    assert!(
        took < DEADLINE,
        "nfs-cat took {took:?}, the deadline is {DEADLINE:?}"
    );
    eprintln!(
        "nfs-cat failed {took:?} after the laptop was killed: {}",
        text(&out)
    );
    // Later requests fail as fast, and listings fail too.
    let (out, took) = f.cat("data.txt");
    assert!(
        !out.status.success() && took < DEADLINE,
        "{took:?}: {}",
        text(&out)
    );
    assert!(f.ls(&f.export).is_err());

    // The laptop comes back (a new `lazy-host` for the task): the export is served again, with what it holds now.
    let _ = f.laptop.kill();
    let _ = f.laptop.wait();
    fs::write(f.src().join("data.txt"), "back\n").unwrap();
    (f.laptop, f.carrier) = serve_laptop(f.dir.path(), &f.connect);
    std::thread::sleep(Duration::from_millis(2100));
    let (out, _) = f.cat("data.txt");
    assert_eq!(out.stdout_bytes(), b"back\n", "{}", text(&out));
}

#[test]
fn a_stalled_laptop_makes_reads_fail_at_the_deadline() {
    let f = Fixture::start(|src| fs::write(src.join("data.txt"), "alive\n").unwrap());
    let (out, _) = f.cat("data.txt");
    assert_eq!(out.stdout_bytes(), b"alive\n", "{}", text(&out));
    // The laptop's SFTP server stops answering; its connection stays up.
    let stop = Command::new("kill")
        .args(["-STOP", &f.laptop.id().to_string()])
        .status()
        .unwrap();
    assert!(stop.success());
    let (out, took) = f.cat("data.txt");
    let _ = Command::new("kill")
        .args(["-CONT", &f.laptop.id().to_string()])
        .status();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(out.stderr.contains("NFS3ERR_IO"), "{}", text(&out));
    eprintln!("nfs-cat failed {took:?} after the laptop stopped answering");
    assert!(
        took >= DEADLINE - Duration::from_millis(500) && took < DEADLINE + Duration::from_secs(2),
        "nfs-cat took {took:?}, the deadline is {DEADLINE:?}"
    );
}

/// One ONC RPC call over TCP (record marking, AUTH_NULL): the reply's body after the accepted status.
fn rpc_call(port: u16, prog: u32, vers: u32, proc_: u32, args: &[u32]) -> Vec<u32> {
    use std::io::{Read, Write};
    let mut words = vec![0x1234_5678, 0, 2, prog, vers, proc_, 0, 0, 0, 0];
    words.extend_from_slice(args);
    let body: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mark = 0x8000_0000u32 | body.len() as u32;
    stream.write_all(&mark.to_be_bytes()).unwrap();
    stream.write_all(&body).unwrap();
    let mut mark = [0u8; 4];
    stream.read_exact(&mut mark).unwrap();
    let mut reply = vec![0u8; (u32::from_be_bytes(mark) & 0x7fff_ffff) as usize];
    stream.read_exact(&mut reply).unwrap();
    let words: Vec<u32> = reply
        .chunks(4)
        .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
        .collect();
    // xid, REPLY, MSG_ACCEPTED, verifier (flavor, empty body), SUCCESS.
    assert_eq!(words[..6], [0x1234_5678, 1, 0, 0, 0, 0], "{words:?}");
    words[6..].to_vec()
}

/// A kernel client asks the portmapper (port 111) where NFS and MOUNT are: the server answers PORTMAP GETPORT on
/// each of its listeners with that listener's own port, so the same service on 111 sends it back to 111.
#[test]
fn the_portmapper_answers_with_the_port_it_was_asked_on_and_an_unbindable_address_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let (mut server, address, port) =
        share_server(dir.path(), &format!("127.0.0.1:0,{taken},127.0.0.1:0"));
    let log = fs::read_to_string(dir.path().join("server.log")).unwrap();
    let ports: Vec<u16> = log
        .lines()
        .filter_map(|l| l.strip_prefix("kb share: NFS on 127.0.0.1:"))
        .map(|p| p.trim().parse().unwrap())
        .collect();
    assert_eq!(ports.len(), 2, "{log}");
    assert_eq!(Some(ports[0]), port);
    assert!(
        log.contains(&format!("cannot serve NFS on `{taken}`")),
        "{log}"
    );
    // The SSH side serves on.
    assert!(std::net::TcpStream::connect(&address).is_ok());
    for port in ports {
        // PMAP_PROG 100000 v2 GETPORT(NFS 100003 v3 TCP) and (MOUNT 100005 v3 TCP).
        assert_eq!(
            rpc_call(port, 100_000, 2, 3, &[100_003, 3, 6, 0]),
            [u32::from(port)]
        );
        assert_eq!(
            rpc_call(port, 100_000, 2, 3, &[100_005, 3, 6, 0]),
            [u32::from(port)]
        );
    }
    server.kill().unwrap();
    server.wait().unwrap();
}
