//! The one way every command gets a Kubernetes client: from `--context`, `--namespace` and `KUBECONFIG` (or the
//! in-cluster configuration), with the namespace chosen the same way for create, watch, status and delete.
//!
//! The namespace is, in order: `--namespace`/`-n` (or `KB_NAMESPACE`); the namespace the kubeconfig's context sets;
//! inside a cluster, the pod's own namespace; otherwise `kb`, the namespace `kb cluster-setup` creates.
//!
//! Checks up front, so that a command fails before it creates anything: the API server answers, the namespace
//! exists, and a `SelfSubjectAccessReview` per right kb needs says the user has it.

use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::error::{Error, Result};
use super::manifests::DEFAULT_NAMESPACE;

/// How long kb waits for the API server to answer the first request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Which cluster and namespace a command talks to, as the user chose them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// The kubeconfig context; `None` for the current context.
    pub context: Option<String>,
    /// The namespace; `None` to take the context's, else `kb`.
    pub namespace: Option<String>,
}

/// A connected client and the namespace every call of the command uses.
#[derive(Clone)]
pub struct Kube {
    /// The client.
    pub client: kube::Client,
    /// The namespace for every namespaced call.
    pub namespace: String,
    /// The API server's address, for messages.
    pub url: String,
}

/// One right kb needs in the namespace: `verb` on `group/resource[/subresource]`.
#[derive(Debug, Clone, Copy)]
pub struct Right {
    /// The verb (`create`, `list`, ...).
    pub verb: &'static str,
    /// The API group (`""` for core).
    pub group: &'static str,
    /// The resource (`pods`, `jobs`, ...).
    pub resource: &'static str,
    /// The subresource (`portforward`), if any.
    pub subresource: Option<&'static str>,
}

const fn right(verb: &'static str, group: &'static str, resource: &'static str) -> Right {
    Right {
        verb,
        group,
        resource,
        subresource: None,
    }
}

/// What `kb parallel --pods` and `kb shell` need.
pub const RUN_RIGHTS: &[Right] = &[
    right("create", "batch", "jobs"),
    right("deletecollection", "batch", "jobs"),
    right("watch", "", "pods"),
    right("deletecollection", "", "pods"),
    right("create", "", "secrets"),
    right("deletecollection", "", "secrets"),
    Right {
        verb: "create",
        group: "",
        resource: "pods",
        subresource: Some("portforward"),
    },
];

/// What `kb status` needs.
pub const STATUS_RIGHTS: &[Right] = &[right("list", "batch", "jobs"), right("list", "", "pods")];

/// What `kb logs` needs.
pub const LOGS_RIGHTS: &[Right] = &[
    right("get", "", "pods"),
    Right {
        verb: "get",
        group: "",
        resource: "pods",
        subresource: Some("log"),
    },
];

/// What `kb finish` needs.
pub const FINISH_RIGHTS: &[Right] = &[
    right("deletecollection", "batch", "jobs"),
    right("deletecollection", "", "pods"),
    right("deletecollection", "", "secrets"),
];

/// Loads the configuration for `target`, connects, and checks the API server answers, the namespace exists and the
/// user holds `rights` in it.
pub async fn connect(target: &Target, rights: &[Right]) -> Result<Kube> {
    let (config, context_namespace) = load_config(target).await?;
    let namespace = choose_namespace(target, context_namespace.as_deref());
    let url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(|source| Error::Client { source })?;
    let kube = Kube {
        client,
        namespace,
        url,
    };
    tokio::time::timeout(CONNECT_TIMEOUT, preflight(&kube, rights))
        .await
        .map_err(|_| Error::Unreachable {
            url: kube.url.clone(),
            source: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()).into(),
        })??;
    Ok(kube)
}

/// The namespace rule of this module's docs.
pub fn choose_namespace(target: &Target, context_namespace: Option<&str>) -> String {
    target
        .namespace
        .as_deref()
        .or(context_namespace)
        .unwrap_or(DEFAULT_NAMESPACE)
        .to_string()
}

/// Reads the kubeconfig (or the in-cluster configuration) and returns it with the namespace the context sets.
async fn load_config(target: &Target) -> Result<(kube::Config, Option<String>)> {
    let options = KubeConfigOptions {
        context: target.context.clone(),
        ..Default::default()
    };
    match read_kubeconfig()? {
        Some(kubeconfig) => {
            let context_name = options
                .context
                .clone()
                .or_else(|| kubeconfig.current_context.clone());
            let context_namespace = kubeconfig
                .contexts
                .iter()
                .find(|c| Some(&c.name) == context_name.as_ref())
                .and_then(|c| c.context.as_ref())
                .and_then(|c| c.namespace.clone());
            let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|source| Error::Kubeconfig { source })?;
            config.connect_timeout = Some(CONNECT_TIMEOUT);
            Ok((config, context_namespace))
        }
        None => {
            let config = kube::Config::incluster().map_err(|source| Error::InCluster { source })?;
            let namespace = config.default_namespace.clone();
            Ok((config, Some(namespace)))
        }
    }
}

/// The kubeconfig from `KUBECONFIG` or `~/.kube/config`; `None` inside a cluster with neither.
fn read_kubeconfig() -> Result<Option<Kubeconfig>> {
    let from_env = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty());
    let default = std::env::home_dir().map(|h| h.join(".kube").join("config"));
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    if from_env.is_none() && !default.as_ref().is_some_and(|p| p.exists()) {
        if in_cluster {
            return Ok(None);
        }
        let looked_at = default.map(|p| format!("`KUBECONFIG`, `{}`", p.display()));
        return Err(Error::NoKubeconfig {
            looked_at: looked_at.unwrap_or_else(|| "`KUBECONFIG`".into()),
        });
    }
    if let Some(paths) = &from_env
        && std::env::split_paths(paths).all(|p| !p.exists())
    {
        return Err(Error::NoKubeconfig {
            looked_at: format!("`KUBECONFIG={}`", paths.to_string_lossy()),
        });
    }
    Kubeconfig::read()
        .map(Some)
        .map_err(|source| Error::Kubeconfig { source })
}

/// Checks the API server answers, the namespace exists and `rights` are held.
async fn preflight(kube: &Kube, rights: &[Right]) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(kube.client.clone());
    match namespaces.get_opt(&kube.namespace).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(Error::NamespaceMissing {
                namespace: kube.namespace.clone(),
            });
        }
        // Users limited to their namespace may not read Namespace objects: go on and let the rights check speak.
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        Err(err) => return Err(classify(kube, "read the namespace", err)),
    }
    let reviews = rights.iter().map(|r| review(kube, *r));
    let results = futures::future::join_all(reviews).await;
    let mut missing = Vec::new();
    for (right, allowed) in rights.iter().zip(results) {
        if !allowed? {
            missing.push(describe(right));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Forbidden {
            namespace: kube.namespace.clone(),
            missing: missing.join(", "),
        })
    }
}

/// Asks the API server whether the user holds `right` in the namespace.
async fn review(kube: &Kube, right: Right) -> Result<bool> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(kube.namespace.clone()),
                verb: Some(right.verb.into()),
                group: Some(right.group.into()),
                resource: Some(right.resource.into()),
                subresource: right.subresource.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(kube.client.clone());
    let answer = api
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| classify(kube, "check permissions", e))?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

fn describe(right: &Right) -> String {
    let group = if right.group.is_empty() {
        String::new()
    } else {
        format!("{}/", right.group)
    };
    let sub = right
        .subresource
        .map(|s| format!("/{s}"))
        .unwrap_or_default();
    format!("`{} {group}{}{sub}`", right.verb, right.resource)
}

/// Turns a kube error into [`Error::Unreachable`] when the server did not answer, [`Error::NamespaceMissing`] when
/// it says the namespace is not there, and [`Error::Api`] otherwise.
pub fn classify(kube: &Kube, action: &str, err: kube::Error) -> Error {
    match err {
        kube::Error::Api(status) => {
            if status.code == 404
                && status.message.contains("namespaces")
                && status.message.contains("not found")
            {
                return Error::NamespaceMissing {
                    namespace: kube.namespace.clone(),
                };
            }
            Error::Api {
                action: action.to_string(),
                source: kube::Error::Api(status),
            }
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => Error::Unreachable {
            url: kube.url.clone(),
            source: Box::new(err),
        },
        err => Error::Api {
            action: action.to_string(),
            source: err,
        },
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod fake_server_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_flag_beats_context_beats_default() {
        let flag = Target {
            context: None,
            namespace: Some("mine".into()),
        };
        assert_eq!(choose_namespace(&flag, Some("ctx")), "mine");
        assert_eq!(choose_namespace(&Target::default(), Some("ctx")), "ctx");
        assert_eq!(choose_namespace(&Target::default(), None), "kb");
    }

    #[test]
    fn rights_read_as_kubectl_would_say_them() {
        assert_eq!(describe(&RUN_RIGHTS[0]), "`create batch/jobs`");
        assert_eq!(describe(&RUN_RIGHTS[6]), "`create pods/portforward`");
    }
}
