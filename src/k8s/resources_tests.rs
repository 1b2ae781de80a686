//! Unit tests of the builders, on the typed structs.

use super::*;

fn spec() -> TaskSpec {
    TaskSpec {
        id: "abc123".into(),
        origin: "laptop".into(),
        pwd: "/home/alice/proj".into(),
        command: "wc -l {}".into(),
        created: "2026-01-01T00:00:00Z".into(),
        kind: "parallel",
        image: "127.0.0.1:5000/kb/debian:bookworm".into(),
        agent_image: "127.0.0.1:5000/kb/agent:0.1.0".into(),
        pods: 3,
        cpu: "500m".into(),
        mem: "1Gi".into(),
        mem_limit: true,
        fuse: false,
        nfs: None,
        max_runtime_secs: Some(3600),
        orphan_timeout_secs: None,
        total_jobs: None,
    }
}

#[test]
fn job_has_labels_annotations_and_n_pods() {
    let job = build_job(&spec());
    assert_eq!(job.metadata.name.as_deref(), Some("kb-abc123"));
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "kb");
    assert_eq!(labels["kb.dev/task-id"], "abc123");
    assert_eq!(labels["kb.dev/origin"], "laptop");
    let annotations = job.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations[PWD], "/home/alice/proj");
    assert_eq!(annotations[COMMAND], "wc -l {}");
    assert_eq!(annotations[CREATED], "2026-01-01T00:00:00Z");
    let job_spec = job.spec.as_ref().unwrap();
    assert_eq!(job_spec.parallelism, Some(3));
    assert_eq!(job_spec.completions, None);
    assert_eq!(job_spec.active_deadline_seconds, Some(3600));
    let pod_labels = job_spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert_eq!(
        pod_labels, labels,
        "pods carry the task's labels, so finish can select them"
    );
}

#[test]
fn pod_runs_the_agent_from_an_init_container_in_the_users_image() {
    let job = build_job(&spec());
    let pod = job.spec.unwrap().template.spec.unwrap();
    let init = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.image.as_deref(), Some("127.0.0.1:5000/kb/agent:0.1.0"));
    let main = &pod.containers[0];
    assert_eq!(
        main.image.as_deref(),
        Some("127.0.0.1:5000/kb/debian:bookworm")
    );
    let command = main.command.as_ref().unwrap();
    assert_eq!(command[..3], ["/kb/busybox", "sh", "-c"]);
    let script = &command[3];
    assert!(
        script.starts_with("/kb/kb agent --listen 0.0.0.0:2222 --host-key /etc/kb/host_key"),
        "{script}"
    );
    assert!(
        script.contains("--authorized-key /etc/kb/authorized_key &"),
        "{script}"
    );
    assert!(
        script.contains("exit 143' TERM"),
        "a stopped agent is not a success: {script}"
    );
    let secret_volume = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find_map(|v| v.secret.as_ref())
        .unwrap();
    assert_eq!(secret_volume.secret_name.as_deref(), Some("kb-abc123"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert!(main.readiness_probe.as_ref().unwrap().tcp_socket.is_some());
    // The init container writes where the main container reads.
    let init_mount = &init.volume_mounts.as_ref().unwrap()[0];
    let main_mount = main
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == init_mount.name)
        .unwrap();
    assert_eq!(main_mount.mount_path, "/kb");
    assert!(init.command.as_ref().unwrap()[3].contains(&init_mount.mount_path));
}

#[test]
fn resources_request_cpu_and_memory_and_limit_memory_only() {
    let job = build_job(&spec());
    let resources = job.spec.unwrap().template.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap();
    let requests = resources.requests.unwrap();
    assert_eq!(requests["cpu"].0, "500m");
    assert_eq!(requests["memory"].0, "1Gi");
    let limits = resources.limits.unwrap();
    assert_eq!(
        limits.get("cpu"),
        None,
        "no CPU limit: throttling helps nobody"
    );
    assert_eq!(limits["memory"].0, "1Gi");
}

#[test]
fn secret_is_owned_by_the_job() {
    let mut job = build_job(&spec());
    job.metadata.uid = Some("uid-1".into());
    let secret = build_secret(&spec(), &job, "PRIVATE", "ssh-ed25519 AAAA");
    let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("Job", "kb-abc123", "uid-1")
    );
    let data = secret.string_data.unwrap();
    assert_eq!(data[HOST_KEY], "PRIVATE");
    assert_eq!(data[AUTHORIZED_KEY], "ssh-ed25519 AAAA");
    assert_eq!(secret.metadata.labels.unwrap()["kb.dev/task-id"], "abc123");
}

#[test]
fn label_values_are_valid() {
    assert_eq!(
        label_value("alice's MacBook.local"),
        "alice-s-MacBook.local"
    );
    assert_eq!(label_value("-x-"), "x");
    assert_eq!(label_value("???"), "unknown");
    assert_eq!(label_value(&"a".repeat(100)).len(), 63);
}

#[test]
fn selectors() {
    assert_eq!(
        task_selector("x1"),
        "app.kubernetes.io/managed-by=kb,kb.dev/task-id=x1"
    );
    assert_eq!(
        managed_selector(Some("h")),
        "app.kubernetes.io/managed-by=kb,kb.dev/origin=h"
    );
    assert_eq!(managed_selector(None), "app.kubernetes.io/managed-by=kb");
    assert_eq!(
        tasks_selector(&["a1".into(), "b2".into()]),
        "app.kubernetes.io/managed-by=kb,kb.dev/task-id in (a1,b2)"
    );
}

#[test]
fn lease_is_owned_by_the_job_and_held_by_the_origin() {
    let mut job = build_job(&spec());
    job.metadata.uid = Some("uid-1".into());
    let now: k8s_openapi::jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let lease = build_lease(&spec(), &job, now);
    assert_eq!(lease.metadata.name.as_deref(), Some("kb-abc123"));
    assert_eq!(lease.metadata.owner_references.unwrap()[0].uid, "uid-1");
    let lease_spec = lease.spec.unwrap();
    assert_eq!(lease_spec.holder_identity.as_deref(), Some("laptop"));
    assert_eq!(lease_spec.renew_time.unwrap().0, now);
    assert_eq!(
        lease.metadata.labels.unwrap()["app.kubernetes.io/managed-by"],
        "kb"
    );
}

#[test]
fn stopped_pods_are_replaced_without_counting_as_failures() {
    let policy = build_job(&spec()).spec.unwrap().pod_failure_policy.unwrap();
    let ignored: Vec<_> = policy
        .rules
        .iter()
        .filter(|r| r.action == "Ignore")
        .collect();
    assert_eq!(ignored.len(), 2);
    let codes = ignored
        .iter()
        .find_map(|r| r.on_exit_codes.as_ref())
        .unwrap();
    assert_eq!(
        (codes.container_name.as_deref(), codes.values.as_slice()),
        (Some("main"), &[143][..])
    );
    // An agent that ended because its client was gone fails the whole task.
    let fail = policy.rules.iter().find(|r| r.action == "FailJob").unwrap();
    assert_eq!(fail.on_exit_codes.as_ref().unwrap().values, [ORPHANED_EXIT]);
    let conditions = policy
        .rules
        .iter()
        .find_map(|r| r.on_pod_conditions.as_ref())
        .unwrap();
    assert_eq!(conditions[0].type_, "DisruptionTarget");
}

#[test]
fn agent_script_runs_in_a_posix_shell() {
    // The script is what busybox runs in the pod; here `sh -n` checks its syntax.
    let script = &build_agent_command(None)[3];
    let status = std::process::Command::new("sh")
        .args(["-n", "-c", script])
        .status()
        .unwrap();
    assert!(status.success(), "{script}");
}

#[test]
fn lazy_share_pods_ask_for_dev_fuse_and_exactly_sys_admin_and_say_why() {
    let plain = build_job(&spec());
    let template = plain.spec.unwrap().template;
    assert!(template.metadata.unwrap().annotations.is_none());
    let main = &template.spec.unwrap().containers[0];
    assert!(main.security_context.is_none());

    let job = build_job(&TaskSpec {
        fuse: true,
        nfs: None,
        ..spec()
    });
    let template = job.spec.unwrap().template;
    let annotations = template.metadata.unwrap().annotations.unwrap();
    assert!(annotations["kb.dev/capabilities"].starts_with("SYS_ADMIN: "));
    let main = &template.spec.unwrap().containers[0];
    let security = main.security_context.clone().unwrap();
    assert_eq!(security.privileged, None);
    assert_eq!(security.capabilities.unwrap().add.unwrap(), ["SYS_ADMIN"]);
    let limits = main.resources.clone().unwrap().limits.unwrap();
    assert_eq!(limits["kb.dev/fuse"].0, "1");
}

#[test]
fn nfs_share_pods_mount_the_export_at_the_users_path_and_add_nothing() {
    let spec = TaskSpec {
        nfs: Some(NfsExport {
            server: "10.0.0.5".into(),
            path: "/kb/t1-0123".into(),
        }),
        ..spec()
    };
    let template = build_job(&spec).spec.unwrap().template;
    assert!(template.metadata.unwrap().annotations.is_none());
    let pod = template.spec.unwrap();
    let volume = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == NFS_VOLUME)
        .unwrap();
    let nfs = volume.nfs.unwrap();
    assert_eq!(
        (nfs.server.as_str(), nfs.path.as_str()),
        ("10.0.0.5", "/kb/t1-0123")
    );
    assert_eq!(nfs.read_only, Some(false));
    let main = &pod.containers[0];
    let mount = main
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == NFS_VOLUME)
        .unwrap();
    assert_eq!(mount.mount_path, spec.pwd);
    assert_eq!(mount.read_only, Some(false));
    assert!(main.security_context.is_none());
    assert!(
        main.resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .is_none_or(|l| !l.contains_key("kb.dev/fuse"))
    );
}
