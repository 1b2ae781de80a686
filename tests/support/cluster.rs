//! A namespace of its own on the local cluster (`tests/cluster/up`) for a test, `kb` commands aimed at it, and a
//! check that nothing kb labelled is left in it. A cluster that cannot be reached is a failure, never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};

/// The label every object kb makes carries.
pub const MANAGED: &str = "app.kubernetes.io/managed-by=kb";

/// The image the cluster tests run their jobs in: `KB_TEST_IMAGE`, else the local registry's Debian.
pub fn test_image() -> String {
    std::env::var("KB_TEST_IMAGE").unwrap_or_else(|_| "127.0.0.1:5000/kb/debian:bookworm".into())
}

/// The admin kubeconfig of the local cluster: `KUBECONFIG`, else the one `tests/cluster/up` wrote.
pub fn kubeconfig() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBECONFIG") {
        return path.into();
    }
    let dir = std::env::var_os("KB_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::home_dir()
                .expect("a home directory")
                .join(".cache/kb/cluster")
        });
    dir.join("admin.kubeconfig")
}

/// A namespace of its own on the local cluster, deleted on drop.
pub struct TestNs {
    /// The namespace.
    pub name: String,
    /// An admin client.
    pub client: kube::Client,
    /// The runtime the client runs on.
    pub rt: tokio::runtime::Runtime,
}

impl TestNs {
    /// Creates the namespace; fails, saying what to run, when the cluster or the agent image is missing.
    pub fn new() -> TestNs {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let path = kubeconfig();
        let client = rt.block_on(async {
            let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap_or_else(|e| {
                panic!(
                    "no kubeconfig at {}: {e}; run tests/cluster/up",
                    path.display()
                )
            });
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .unwrap();
            let client = kube::Client::try_from(config).unwrap();
            let version =
                tokio::time::timeout(Duration::from_secs(20), client.apiserver_version()).await;
            match version {
                Ok(Ok(_)) => client,
                Ok(Err(e)) => {
                    panic!("the local cluster is not reachable ({e}); run tests/cluster/up")
                }
                Err(_) => panic!("the local cluster did not answer in 20 s; run tests/cluster/up"),
            }
        });
        check_agent_image();
        let name = format!("kb-test-{:08x}", rand::random::<u32>());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        rt.block_on(Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns))
            .unwrap();
        TestNs { name, client, rt }
    }

    /// `kb ARGS` with this cluster's kubeconfig, run in `dir`.
    pub fn kb(&self, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kb"));
        cmd.args(args)
            .current_dir(dir)
            .env("KUBECONFIG", kubeconfig())
            .env("KB_NAMESPACE", &self.name);
        cmd.env("KB_IMAGE", test_image())
            .env("KB_START_TIMEOUT", "120")
            // kb's cache (the eager share's last manifests) stays out of the user's.
            .env(
                "XDG_CACHE_HOME",
                std::env::temp_dir().join(format!("{}-cache", self.name)),
            );
        if std::env::var_os("KB_REGISTRY").is_none() {
            cmd.env("KB_REGISTRY", "127.0.0.1:5000");
        }
        // `kb status` and `kb finish` also list the local Docker engine's tasks: a namespace's tests see only their
        // namespace's, whatever a container test left running at the same time.
        if matches!(args.first(), Some(&"status" | &"finish")) {
            cmd.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
        }
        cmd
    }

    /// Names of the objects labelled managed-by=kb left in the namespace.
    pub fn leftovers(&self) -> Vec<String> {
        let lp = ListParams::default().labels(MANAGED);
        self.rt.block_on(async {
            let mut names = Vec::new();
            let jobs: Api<Job> = Api::namespaced(self.client.clone(), &self.name);
            names.extend(
                jobs.list(&lp)
                    .await
                    .unwrap()
                    .items
                    .into_iter()
                    .map(|o| format!("job/{}", name_of(&o.metadata))),
            );
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.name);
            names.extend(
                pods.list(&lp)
                    .await
                    .unwrap()
                    .items
                    .into_iter()
                    .map(|o| format!("pod/{}", name_of(&o.metadata))),
            );
            let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.name);
            names.extend(
                secrets
                    .list(&lp)
                    .await
                    .unwrap()
                    .items
                    .into_iter()
                    .map(|o| format!("secret/{}", name_of(&o.metadata))),
            );
            let leases: Api<Lease> = Api::namespaced(self.client.clone(), &self.name);
            names.extend(
                leases
                    .list(&lp)
                    .await
                    .unwrap()
                    .items
                    .into_iter()
                    .map(|o| format!("lease/{}", name_of(&o.metadata))),
            );
            names
        })
    }

    /// Waits up to a minute for every object labelled managed-by=kb to be gone (pods take a few seconds to stop).
    pub fn assert_clean(&self) {
        self.assert_clean_within(60);
    }

    /// Waits up to `secs` for every object labelled managed-by=kb to be gone.
    pub fn assert_clean_within(&self, secs: u64) {
        let start = Instant::now();
        loop {
            let left = self.leftovers();
            if left.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "left behind in {} after {secs} s: {left:?}",
                self.name
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// The agent image the tests' pods use: `KB_AGENT_IMAGE`, else kb's default with `KB_REGISTRY=127.0.0.1:5000`.
pub fn agent_image() -> String {
    std::env::var("KB_AGENT_IMAGE").unwrap_or_else(|_| {
        let registry = std::env::var("KB_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into());
        format!("{registry}/kb/agent:{}", env!("CARGO_PKG_VERSION"))
    })
}

/// Fails with what to run when the agent image is not in the local registry (every pod would fail to start).
pub fn check_agent_image() {
    let image = agent_image();
    let Some((registry, rest)) = image.split_once('/') else {
        return;
    };
    if !(registry.starts_with("127.0.0.1:") || registry.starts_with("localhost:")) {
        return;
    }
    let (repo, tag) = rest.rsplit_once(':').unwrap_or((rest, "latest"));
    let url = format!("http://{registry}/v2/{repo}/manifests/{tag}");
    let accept = "Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json";
    let found = Command::new("curl")
        .args(["-fsS", "-o", "/dev/null", "-H", accept, &url])
        .status();
    assert!(
        found.is_ok_and(|s| s.success()),
        "the agent image `{image}` is not in the local registry: run `images/agent/build {image} && docker push {image}`"
    );
}

/// The name in `meta` (empty when it has none).
pub fn name_of(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let _ = self
            .rt
            .block_on(api.delete(&self.name, &DeleteParams::background()));
    }
}

/// The API server tests stop the API server, which the node's status updates and every other test's port-forwards
/// need: they run alone ([`exclusive`], a write lock), the others together ([`shared`], read locks). The lock holds
/// within one test binary, and cargo runs test binaries one after another: that is why the tests of `tests/k8s/`
/// are one binary made of several files.
static CLUSTER: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// A read lock on the cluster: other tests may run beside this one.
pub fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    CLUSTER.read().unwrap_or_else(|e| e.into_inner())
}

/// The write lock on the cluster: no other test of this binary runs beside this one.
pub fn exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    CLUSTER.write().unwrap_or_else(|e| e.into_inner())
}
