//! The eager share and syncback through the share server that `kb cluster-setup` deploys: what the jobs see, what
//! a second run and a one-file change move, syncback with a conflict, `--async` with the eager share, and that no
//! container of the namespace runs privileged or adds a capability.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use crate::support::cluster::TestNs;
use crate::support::process::{CommandExt as _, Pipe};
use crate::support::share::deploy_share_server;

/// A project: 200 files of 10 KiB, ignored files, and a file to edit.
fn make_project(dir: &Path) {
    for i in 0..200 {
        let body = format!("{i:05}\n").repeat(10 * 1024 / 6);
        std::fs::write(dir.join(format!("f{i:03}.txt")), body).unwrap();
    }
    std::fs::write(dir.join(".gitignore"), "ignored/\n*.tmp\n").unwrap();
    std::fs::write(dir.join(".kbignore"), "secret.txt\n").unwrap();
    std::fs::create_dir(dir.join("ignored")).unwrap();
    std::fs::write(dir.join("ignored/big"), vec![b'x'; 100_000]).unwrap();
    std::fs::write(dir.join("scratch.tmp"), "no").unwrap();
    std::fs::write(dir.join("secret.txt"), "no").unwrap();
    std::fs::write(dir.join("shared.txt"), "original\n").unwrap();
}

/// `kb: share: sent S of T bytes (P%: C of content in F of N files, M of lists) in X s` → (S, T, C).
fn sent(stderr: &str) -> (u64, u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("kb: share: sent "))
        .unwrap_or_else(|| panic!("no share line in:\n{stderr}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let number = |i: usize| -> u64 {
        words[i]
            .parse()
            .unwrap_or_else(|_| panic!("word {i} of `{line}`"))
    };
    (number(3), number(5), number(8))
}

fn no_privileged_containers(ns: &TestNs) {
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let list = ns.rt.block_on(pods.list(&ListParams::default())).unwrap();
    assert!(!list.items.is_empty());
    for pod in list.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.unwrap();
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            let security = c.security_context.clone().unwrap_or_default();
            assert_ne!(
                security.privileged,
                Some(true),
                "{name}/{} is privileged",
                c.name
            );
            let added = security
                .capabilities
                .and_then(|c| c.add)
                .unwrap_or_default();
            assert!(
                added.is_empty(),
                "{name}/{} adds {added:?}, which no doc names",
                c.name
            );
        }
    }
}

#[test]
#[ignore = "needs cluster"]
fn eager_share_moves_only_changes_and_syncback_keeps_conflicts() {
    let ns = TestNs::new();
    deploy_share_server(&ns);
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    make_project(dir);

    // Run 1: everything not ignored goes up once; every job sees the files and none of the ignored ones.
    let out = ns
        .kb(
            dir,
            &[
                "parallel", "-k", "--pods", "2", "--share", "eager", "--",
                "sha256sum f{}.txt | cut -c1-16; ls ignored scratch.tmp secret.txt 2>/dev/null | wc -l",
                ":::", "000", "100", "199",
            ],
        )
        .run();
    let stderr = &out.stderr;
    out.assert_code(0);
    let (sent1, total, content1) = sent(stderr);
    let expected_total: u64 = (0..200)
        .map(|i| format!("{i:05}\n").repeat(10 * 1024 / 6).len() as u64)
        .sum::<u64>()
        + "ignored/\n*.tmp\n".len() as u64
        + "secret.txt\n".len() as u64
        + "original\n".len() as u64;
    out.check(
        total == expected_total,
        format_args!("{:?} != {:?}", total, expected_total),
    );
    out.check(content1 == total, "a fresh server gets everything");
    out.check(sent1 > total, "and the lists");
    let mut local = Vec::new();
    for i in ["000", "100", "199"] {
        let sum = Command::new("sha256sum")
            .arg(dir.join(format!("f{i}.txt")))
            .run();
        local.push(sum.stdout[..16].to_string());
        local.push("0".to_string());
    }
    let remote: Vec<String> = out.stdout.lines().map(str::to_string).collect();
    out.check(remote == local, format_args!("{:?} != {:?}", remote, local));

    // Run 2, nothing changed: under 1% of the tree moves.
    let out = ns
        .kb(
            dir,
            &[
                "parallel", "--pods", "1", "--share", "eager", "--", "true", ":::", "1",
            ],
        )
        .run();
    let stderr = &out.stderr;
    out.assert_code(0);
    let (sent2, total2, content2) = sent(stderr);
    println!("second run: sent {sent2} of {total2} bytes");
    // Everything the second run moves, lists included: the manifest's hash, asked about once.
    out.check(sent2 * 100 < total2, "sent2 * 100 < total2");
    out.check(sent2 < 200, "sent2 < 200");
    out.check(content2 == 0, format_args!("{:?} != {:?}", content2, 0));

    // Run 3, one file changed: only it moves.
    std::fs::write(dir.join("f007.txt"), "changed\n").unwrap();
    let out = ns
        .kb(
            dir,
            &[
                "parallel",
                "--pods",
                "1",
                "--share",
                "eager",
                "--",
                "cat f007.txt",
                ":::",
                "1",
            ],
        )
        .run();
    let stderr = &out.stderr;
    out.assert_stdout("changed\n");
    let (sent3, _, content3) = sent(stderr);
    println!("one file changed: sent {sent3} bytes");
    out.check(
        content3 == "changed\n".len() as u64,
        format_args!("{:?} != {:?}", content3, "changed\n".len() as u64),
    );
    // Only the changes of the manifest go, not the whole list of 200 files.
    out.check(sent3 < 1000, "sent3 < 1000");

    // Run 4, a rename and a delete: no content moves, and the jobs see both.
    std::fs::rename(dir.join("f008.txt"), dir.join("g008.txt")).unwrap();
    std::fs::remove_file(dir.join("f009.txt")).unwrap();
    let out = ns
        .kb(
            dir,
            &[
                "parallel",
                "--pods",
                "1",
                "--share",
                "eager",
                "--",
                "ls f008.txt f009.txt g008.txt 2>/dev/null; true",
                ":::",
                "1",
            ],
        )
        .run();
    let stderr = &out.stderr;
    out.assert_stdout("g008.txt\n");
    let (sent4, _, content4) = sent(stderr);
    out.check(content4 == 0, format_args!("{:?} != {:?}", content4, 0));
    out.check(sent4 < 1000, "sent4 < 1000");

    // Syncback: outputs come back; a file edited here while a job also edits it is a conflict, both kept.
    let mut child = ns
        .kb(
            dir,
            &[
                "parallel", "--pods", "2", "--share", "syncback", "--",
                "echo result {} > out-{}.txt; if [ {} = b ]; then sleep 8; echo from-the-job > shared.txt; fi",
                ":::", "a", "b",
            ],
        )
        .start();
    // Once the upload is done (the share line), edit the file locally, while the job sleeps.
    child.wait_for_line(Pipe::Stderr, Duration::from_secs(300), |l| {
        l.starts_with("kb: share: sent ")
    });
    std::fs::write(dir.join("shared.txt"), "edited-here\n").unwrap();
    let sync = child.wait(Duration::from_secs(300));
    sync.assert_code(0);
    assert_eq!(
        std::fs::read_to_string(dir.join("out-a.txt")).unwrap(),
        "result a\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("out-b.txt")).unwrap(),
        "result b\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("shared.txt")).unwrap(),
        "edited-here\n"
    );
    let aside: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("shared.txt.kb-conflict-"))
        .collect();
    sync.check(aside.len() == 1, format_args!("conflict copies: {aside:?}"));
    assert_eq!(
        std::fs::read_to_string(dir.join(&aside[0])).unwrap(),
        "from-the-job\n"
    );
    sync.assert_stderr_contains("kb: conflict: `shared.txt` changed here and in a pod")
        .assert_stderr_contains("kb: syncback: 2 files updated");
    // Nothing local was deleted.
    assert!(dir.join("ignored/big").exists() && dir.join("secret.txt").exists());

    // --async with the eager share: the tree is uploaded before the client returns, and the coordinator's pods
    // fetch it from the share server.
    let out = ns
        .kb(
            dir,
            &[
                "parallel",
                "--pods",
                "1",
                "--async",
                "--share",
                "eager",
                "--",
                "head -c 5 f{}.txt; echo",
                ":::",
                "123",
            ],
        )
        .run();
    out.assert_code(0);
    out.assert_stderr_contains("kb: share: sent ");
    let id = out.stdout.trim().to_string();
    let logs = ns
        .kb(dir, &["logs", &id, "-f"])
        .start()
        .wait(Duration::from_secs(240));
    logs.assert_code(0);
    logs.assert_stdout_contains("00123\n");
    let finish = ns.kb(dir, &["finish", &id]).run();
    finish.assert_success();
    // The lazy share and syncback need this machine after the start: refused with --async, before anything is made.
    for share in ["lazy", "syncback"] {
        let out = ns
            .kb(
                dir,
                &[
                    "parallel", "--pods", "1", "--async", "--share", share, "--", "true", ":::",
                    "1",
                ],
            )
            .run();
        out.assert_code(255);
        out.assert_stderr_contains("--async does not work with");
    }

    no_privileged_containers(&ns);
    ns.assert_clean();
}
