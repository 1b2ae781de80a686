//! What task creation checks before anything exists: the pods' shape, room on the nodes, how the lazy share is
//! mounted, and the client's key on disk.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

use super::{DEFAULT_CPU, DEFAULT_IMAGE, DEFAULT_MEM, DEFAULT_START_TIMEOUT, PodShape};
use crate::config::LazyMount;
use crate::k8s::client::{Kube, classify};
use crate::k8s::error::{Error, Result};
use crate::k8s::quantity::{self, capacities, check_fits};
use crate::output::report::{Event, Reporter};
use crate::ssh::task_keys::TaskKeys;

/// `--cpu`, `--mem` and images, checked and with defaults filled in.
pub(super) struct Shape {
    pub(super) cpu: String,
    pub(super) cpu_cores: f64,
    pub(super) mem: String,
    pub(super) mem_bytes: f64,
    pub(super) mem_limit: bool,
    pub(super) image: String,
    pub(super) agent_image: String,
}

pub(super) fn check_shape(opts: &PodShape) -> Result<Shape> {
    let cpu = opts.cpu.clone().unwrap_or_else(|| DEFAULT_CPU.into());
    let mem = opts.mem.clone().unwrap_or_else(|| DEFAULT_MEM.into());
    Ok(Shape {
        cpu_cores: quantity::parse("cpu", &cpu)?,
        mem_bytes: quantity::parse("memory", &mem)?,
        cpu,
        mem,
        mem_limit: opts.mem.is_some(),
        image: opts.image.clone().unwrap_or_else(|| DEFAULT_IMAGE.into()),
        agent_image: opts.agent_image.clone().unwrap_or_else(default_agent_image),
    })
}

/// `$KB_REGISTRY/kb/agent:VERSION`, or `kb/agent:VERSION` without `KB_REGISTRY`.
pub fn default_agent_image() -> String {
    let version = env!("CARGO_PKG_VERSION");
    match std::env::var("KB_REGISTRY").ok().filter(|r| !r.is_empty()) {
        Some(registry) => format!("{}/kb/agent:{version}", registry.trim_end_matches('/')),
        None => format!("kb/agent:{version}"),
    }
}

/// Fails when no node can hold one pod; skipped when the user may not list nodes (a namespaced user), in which
/// case the scheduler's Unschedulable report speaks instead.
pub(super) async fn check_nodes(kube: &Kube, shape: &Shape) -> Result<()> {
    let nodes: Api<Node> = Api::all(kube.client.clone());
    match nodes.list(&ListParams::default()).await {
        Ok(list) => check_fits(shape.cpu_cores, shape.mem_bytes, &capacities(&list.items)),
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(()),
        Err(err) => Err(classify(kube, "list the nodes", err)),
    }
}

/// For the lazy share: whether some node hands pods `/dev/fuse` (the `kb-fuse` device plugin of `kb cluster-setup`
/// advertises `kb.dev/fuse`). Unknown (no right to list nodes) counts as yes: the pods then say it themselves.
/// How the pods will mount the lazy share: what was asked (`--lazy-mount`, kb.toml), else what the cluster
/// offers. FUSE when a node offers `kb.dev/fuse` (kb-fuse runs there, and kb's own deadline rule holds end to end),
/// else an NFS volume (whether the nodes can mount it only a mount shows: a pod that cannot is reported as such).
pub(super) async fn choose_lazy_mount(
    kube: &Kube,
    asked: Option<LazyMount>,
    reporter: &Reporter,
) -> Result<LazyMount> {
    let offered = fuse_offered(kube).await?;
    match decide_lazy_mount(asked, offered) {
        Some(LazyMount::Nfs) if asked.is_none() => {
            reporter.report(&Event::LazyMountFallback {
                resource: crate::deviceplugin::FUSE_RESOURCE.into(),
            });
            Ok(LazyMount::Nfs)
        }
        Some(mount) => Ok(mount),
        None => Err(Error::Share(Box::new(
            crate::share::client::Error::Server {
                namespace: kube.namespace.clone(),
                action: "serve the lazy share with FUSE".into(),
                reason: format!(
                    "no node offers `{}` (the kb-fuse device plugin that hands pods /dev/fuse is not running); \
                     apply `kb cluster-setup` again, or use --lazy-mount nfs or --share eager",
                    crate::deviceplugin::FUSE_RESOURCE
                ),
            },
        ))),
    }
}

/// The rule of [`choose_lazy_mount`], given whether a node offers `kb.dev/fuse` (`None`: not known, this user may
/// not list nodes; kb-fuse is then taken to be there, as `kb cluster-setup` deploys it). `None` when FUSE was
/// asked for and no node offers it.
fn decide_lazy_mount(asked: Option<LazyMount>, fuse_offered: Option<bool>) -> Option<LazyMount> {
    match (asked, fuse_offered) {
        (Some(LazyMount::Fuse), Some(false)) => None,
        (Some(mount), _) => Some(mount),
        (None, Some(false)) => Some(LazyMount::Nfs),
        (None, _) => Some(LazyMount::Fuse),
    }
}

/// Whether a node offers `kb.dev/fuse`; `None` when this user may not list nodes.
async fn fuse_offered(kube: &Kube) -> Result<Option<bool>> {
    let nodes: Api<Node> = Api::all(kube.client.clone());
    let list = match nodes.list(&ListParams::default()).await {
        Ok(list) => list,
        Err(kube::Error::Api(status)) if status.code == 403 => return Ok(None),
        Err(err) => return Err(classify(kube, "list the nodes", err)),
    };
    Ok(Some(list.items.iter().any(|node| {
        node.status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|a| a.get(crate::deviceplugin::FUSE_RESOURCE))
            .is_some_and(|q| q.0 != "0")
    })))
}

pub(super) fn start_timeout() -> Duration {
    std::env::var("KB_START_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_START_TIMEOUT)
}

/// Writes the client key where only this user can read it, for the SSH client, which reads keys from files.
pub(super) fn write_client_key(id: &str, keys: &TaskKeys) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io = |action: &str| {
        let action = action.to_string();
        move |source| Error::Io { action, source }
    };
    let dir = crate::ssh::task_keys::key_dir(id);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io("create the key directory"))?;
    let text = keys
        .client
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|source| Error::Keys { source })?;
    let path = dir.join("id_ed25519");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(io("write the task's client key"))?;
    file.write_all(text.as_bytes())
        .map_err(io("write the task's client key"))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::new_task_id;
    use crate::ssh::task_keys::build_task_keys;

    #[test]
    fn the_lazy_mount_is_what_was_asked_else_what_the_cluster_offers() {
        use LazyMount::{Fuse, Nfs};
        // Asked: taken, unless FUSE is asked where no node offers it.
        assert_eq!(decide_lazy_mount(Some(Nfs), Some(true)), Some(Nfs));
        assert_eq!(decide_lazy_mount(Some(Fuse), Some(true)), Some(Fuse));
        assert_eq!(decide_lazy_mount(Some(Fuse), Some(false)), None);
        assert_eq!(decide_lazy_mount(Some(Fuse), None), Some(Fuse));
        // Not asked: FUSE where kb-fuse offers it, NFS where nothing does.
        assert_eq!(decide_lazy_mount(None, Some(true)), Some(Fuse));
        assert_eq!(decide_lazy_mount(None, Some(false)), Some(Nfs));
        assert_eq!(decide_lazy_mount(None, None), Some(Fuse));
    }

    #[test]
    fn task_ids_are_dns_friendly() {
        for _ in 0..100 {
            let id = new_task_id();
            assert_eq!(id.len(), 8);
            assert!(id.chars().next().unwrap().is_ascii_lowercase());
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            );
        }
    }

    #[test]
    fn shape_defaults_and_errors() {
        let shape = check_shape(&PodShape::default()).unwrap();
        assert_eq!(
            (shape.cpu.as_str(), shape.mem.as_str(), shape.mem_limit),
            ("100m", "128Mi", false)
        );
        let bad = PodShape {
            mem: Some("1x".into()),
            ..Default::default()
        };
        assert!(check_shape(&bad).is_err());
        let given = PodShape {
            mem: Some("1Gi".into()),
            ..Default::default()
        };
        let shape = check_shape(&given).unwrap();
        assert!(shape.mem_limit);
    }

    #[test]
    fn client_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let keys = build_task_keys().unwrap();
        let dir = write_client_key(&new_task_id(), &keys).unwrap();
        let mode = std::fs::metadata(dir.join("id_ed25519"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = crate::ssh::keys::load_private_key(&dir.join("id_ed25519")).unwrap();
        assert_eq!(
            loaded.public_key().to_openssh().unwrap(),
            keys.client_public
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
