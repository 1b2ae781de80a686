//! The errors kb finds before it creates anything (an image that cannot be pulled, too much CPU, a bad quantity, a
//! missing namespace, no API server), no kubeconfig at all, `kb cluster-setup`'s manifests, and a ServiceAccount
//! without rights, then with the Role of `kb cluster-setup`.

use std::path::Path;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kb::k8s::manifests::{Manifest, build_for_namespace};
use kube::api::{Api, PostParams};

use crate::support::cluster::{TestNs, name_of, shared};
use crate::support::process::{CommandExt as _, Run, kb_command};
use crate::support::task::{closed_port_kubeconfig, token_kubeconfig};

/// Runs `kb parallel` expecting a failure before any job: exit 255, `want` in the message, nothing left.
fn expect_error(ns: &TestNs, extra: &[&str], env: &[(&str, &str)], want: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["parallel", "--pods", "2"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "echo", "{}", ":::", "a", "b"]);
    let mut cmd = ns.kb(dir.path(), &args);
    cmd.envs(env.iter().copied());
    let out = cmd.run();
    out.assert_code(255)
        .assert_stderr_contains(want)
        .assert_stderr_contains("hint:");
    ns.assert_clean();
}

#[test]
#[ignore = "needs cluster"]
fn errors_are_found_early_and_leave_nothing() {
    let _cluster = shared();
    let ns = TestNs::new();
    expect_error(
        &ns,
        &["--image", "127.0.0.1:5000/kb/no-such-image:1"],
        &[],
        "cannot be pulled",
    );
    expect_error(&ns, &["--cpu", "1000"], &[], "the largest node");
    expect_error(&ns, &["--mem", "1x"], &[], "invalid memory quantity `1x`");
    expect_error(
        &ns,
        &["--namespace", "kb-test-no-such-namespace"],
        &[],
        "does not exist",
    );
    let closed = closed_port_kubeconfig();
    let path = closed.path().display().to_string();
    expect_error(
        &ns,
        &[],
        &[("KUBECONFIG", path.as_str())],
        "cannot reach the Kubernetes API server",
    );
}

/// `kb` with only the given environment for Kubernetes (no cluster needed).
fn kb_offline(args: &[&str], kubeconfig: &Path) -> Run {
    let dir = tempfile::tempdir().unwrap();
    kb_command()
        .args(args)
        .current_dir(dir.path())
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KB_NAMESPACE")
        .env_remove("KB_CONTEXT")
        .run()
}

#[test]
fn no_kubeconfig_and_a_closed_port_are_explained() {
    let missing = kb_offline(&["status"], Path::new("/nonexistent/kubeconfig"));
    missing.assert_code(1);
    missing.assert_stderr_contains(
        "no kubeconfig found (looked at `KUBECONFIG=/nonexistent/kubeconfig`)",
    );
    missing.assert_stderr_contains("hint: point `KUBECONFIG`");
    let closed = closed_port_kubeconfig();
    for (args, code) in [
        (&["finish", "abc"][..], 1),
        (
            &["parallel", "--pods", "1", "--", "echo", ":::", "a"][..],
            255,
        ),
    ] {
        let out = kb_offline(args, closed.path());
        out.assert_code(code);
        out.assert_stderr_contains(
            "cannot reach the Kubernetes API server at `https://127.0.0.1:1/`",
        );
        out.assert_stderr_contains("hint: check that the cluster is up");
    }
}

#[test]
fn cluster_setup_prints_typed_manifests_for_the_namespace() {
    let out = kb_offline(
        &["cluster-setup", "-n", "team-a"],
        Path::new("/nonexistent"),
    );
    out.assert_success();
    let docs: Vec<serde_yaml_ng::Value> = out
        .stdout
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_yaml_ng::from_str(d).unwrap())
        .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    out.check(
        kinds
            == [
                "Namespace",
                "ServiceAccount",
                "Role",
                "RoleBinding",
                "StatefulSet",
                "Service",
                "DaemonSet",
            ],
        format_args!("unexpected kinds {kinds:?}"),
    );
    assert_eq!(docs[0]["metadata"]["name"], "team-a");
    for doc in &docs[1..] {
        assert_eq!(doc["metadata"]["namespace"], "team-a", "{doc:?}");
    }
    let role: Role = serde_yaml_ng::from_value(docs[2].clone()).unwrap();
    assert!(
        role.rules
            .unwrap()
            .iter()
            .all(|r| !r.verbs.contains(&"*".to_string()))
    );
}

#[test]
#[ignore = "needs cluster"]
fn missing_rights_are_named_and_the_cluster_setup_role_is_enough() {
    let _cluster = shared();
    let ns = TestNs::new();
    let manifests = build_for_namespace(&ns.name).unwrap();
    let pp = PostParams::default();
    let sa_api: Api<ServiceAccount> = Api::namespaced(ns.client.clone(), &ns.name);
    let sa = manifests.iter().find_map(|m| {
        if let Manifest::ServiceAccount(sa) = m {
            Some(sa)
        } else {
            None
        }
    });
    let sa = ns.rt.block_on(sa_api.create(&pp, sa.unwrap())).unwrap();
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = ns
        .rt
        .block_on(sa_api.create_token_request(&name_of(&sa.metadata), &pp, &request))
        .unwrap();
    let config = token_kubeconfig(&token.status.unwrap().token);
    let dir = tempfile::tempdir().unwrap();
    let as_sa = |args: &[&str]| {
        let mut cmd = ns.kb(dir.path(), args);
        cmd.env("KUBECONFIG", config.path());
        cmd
    };
    // Without the Role: every command says which rights are missing, before creating anything.
    let status = as_sa(&["status"]).run();
    status.assert_code(1);
    status.assert_stderr_contains("missing permissions in namespace");
    status.assert_stderr_contains("`list batch/jobs`");
    let run = as_sa(&["parallel", "--pods", "1", "--", "echo", "{}", ":::", "x"]).run();
    run.assert_code(255);
    run.assert_stderr_contains("`create batch/jobs`");
    run.assert_stderr_contains("hint: ask a cluster admin");
    ns.assert_clean();
    // With the Role and RoleBinding of `kb cluster-setup`, and nothing cluster-wide, a run works end to end.
    for manifest in &manifests {
        match manifest {
            Manifest::Role(role) => {
                ns.rt
                    .block_on(
                        Api::<Role>::namespaced(ns.client.clone(), &ns.name).create(&pp, role),
                    )
                    .unwrap();
            }
            Manifest::RoleBinding(binding) => {
                let api = Api::<RoleBinding>::namespaced(ns.client.clone(), &ns.name);
                ns.rt.block_on(api.create(&pp, binding)).unwrap();
            }
            _ => {}
        }
    }
    let run = as_sa(&[
        "parallel",
        "--pods",
        "1",
        "--",
        "echo",
        "{}",
        ":::",
        "least-privilege",
    ])
    .run();
    run.assert_success();
    run.assert_stdout("least-privilege\n");
    // The Role lets the client renew its heartbeat (a merge patch of the Lease).
    run.assert_stderr_lacks("cannot renew the heartbeat");
    let status = as_sa(&["status", "-o", "yaml"]).run();
    status.assert_success();
    ns.assert_clean();
}
