//! Runs on the cluster: the README's example against local `wc`, `kb shell` through a pseudo-terminal, and a pod
//! deleted mid-run whose jobs still run once each.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};

use crate::support::cluster::{MANAGED, TestNs, name_of, shared};
use crate::support::process::{CommandExt as _, wait_until};
use crate::support::terminal::Terminal;

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    lines.sort();
    lines
}

#[test]
#[ignore = "needs cluster"]
fn readme_example_matches_local_wc() {
    let _cluster = shared();
    let ns = TestNs::new();
    let dir = tempfile::tempdir().unwrap();
    for (i, lines) in [3, 10, 0, 250, 7, 1].iter().enumerate() {
        let body: String = (0..*lines).map(|n| format!("line {n}\n")).collect();
        std::fs::write(dir.path().join(format!("f{i}.txt")), body).unwrap();
    }
    std::fs::create_dir(dir.path().join("sub dir")).unwrap();
    std::fs::write(dir.path().join("sub dir/g.txt"), "a\nb\n").unwrap();
    let find = Command::new("find")
        .args([".", "-type", "f"])
        .current_dir(dir.path())
        .run();
    let files = find.stdout;
    let out = ns
        .kb(
            dir.path(),
            &["parallel", "--pods", "3", "--", "wc", "-l", "{}"],
        )
        .run_with_stdin(&files);
    out.assert_success();
    let mut local = String::new();
    for file in files.lines() {
        let wc = Command::new("wc")
            .args(["-l", file])
            .current_dir(dir.path())
            .run();
        local.push_str(&wc.stdout);
    }
    out.check(
        sorted_lines(&out.stdout) == sorted_lines(&local),
        format_args!("local `wc -l` says:\n{local}"),
    );
    ns.assert_clean();
}

#[test]
#[ignore = "needs cluster"]
fn shell_through_a_pty_reports_the_exit_status_and_leaves_nothing() {
    let _cluster = shared();
    let ns = TestNs::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("marker.txt"), "kb-shell-marker\n").unwrap();
    let mut term = Terminal::spawn(ns.kb(dir.path(), &["shell"]));
    // The working directory was copied in, and the shell starts in it.
    term.send("cat marker.txt; echo kb-$((6*7))");
    term.expect("kb-shell-marker", 120);
    term.expect("kb-42", 5);
    term.send("exit 3");
    let (code, shown) = term.wait(60);
    assert_eq!(code, Some(3), "the terminal showed:\n{shown}");
    ns.assert_clean();
}

#[test]
#[ignore = "needs cluster"]
fn a_deleted_pod_is_replaced_and_its_jobs_still_run() {
    let _cluster = shared();
    let ns = TestNs::new();
    let dir = tempfile::tempdir().unwrap();
    let inputs: Vec<String> = (1..=16).map(|i| i.to_string()).collect();
    let mut args = vec!["parallel", "--pods", "2", "--", "sleep 3; echo {}", ":::"];
    args.extend(inputs.iter().map(String::as_str));
    let client = ns.kb(dir.path(), &args).start();
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let lp = ListParams::default().labels(MANAGED);
    let names = |pods: &Api<Pod>| -> Vec<String> {
        let list = ns.rt.block_on(pods.list(&lp)).unwrap();
        list.items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| name_of(&p.metadata))
            .collect()
    };
    let first = wait_until(Duration::from_secs(120), Duration::from_millis(500), || {
        let list = ns.rt.block_on(pods.list(&lp)).unwrap();
        let ready = |p: &Pod| {
            p.status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .any(|c| c.type_ == "Ready" && c.status == "True")
        };
        if list.items.len() == 2 && list.items.iter().all(ready) {
            Ok(name_of(&list.items[0].metadata))
        } else {
            Err("pods never ready".to_string())
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    ns.rt
        .block_on(pods.delete(&first, &DeleteParams::default()))
        .unwrap();
    // The Job replaces the pod (a stopped agent is not a success, and its exit code is not counted as a failure).
    let before: Vec<String> = names(&pods);
    wait_until(Duration::from_secs(90), Duration::from_secs(1), || {
        let now = names(&pods);
        if now.iter().any(|n| n != &first && !before.contains(n)) {
            Ok(())
        } else {
            Err(format!("no replacement pod: {now:?}"))
        }
    });
    let out = client.wait(Duration::from_secs(600));
    out.assert_success();
    let mut got: Vec<u32> = out.stdout.lines().map(|l| l.parse().unwrap()).collect();
    got.sort();
    out.check(
        got == (1..=16).collect::<Vec<u32>>(),
        "every job ran once to its end",
    );
    ns.assert_clean();
}
