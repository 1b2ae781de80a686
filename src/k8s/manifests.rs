//! The static manifests of `manifests/` (namespace, RBAC), parsed into k8s-openapi types so that `kb cluster-setup`
//! can move them to another namespace through typed fields, never by editing YAML text.

use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::Deserialize;

use super::error::{Error, Result};

/// The files of `manifests/`, in the order `kubectl apply` needs them (the namespace first).
pub const FILES: &[(&str, &str)] = &[
    (
        "namespace.yaml",
        include_str!("../../manifests/namespace.yaml"),
    ),
    ("rbac.yaml", include_str!("../../manifests/rbac.yaml")),
];

/// The namespace the manifests are written for.
pub const DEFAULT_NAMESPACE: &str = "kb";

/// One object of `manifests/`.
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    /// The namespace kb works in.
    Namespace(Namespace),
    /// The coordinator's identity.
    ServiceAccount(ServiceAccount),
    /// What the coordinator may do in the namespace.
    Role(Role),
    /// The coordinator's Role, bound to its ServiceAccount.
    RoleBinding(RoleBinding),
    /// The share server (built in code: its image is kb's agent image of this version).
    StatefulSet(StatefulSet),
    /// The share server's Service.
    Service(Service),
    /// The FUSE device plugin on every node (built in code, like the share server).
    DaemonSet(DaemonSet),
}

/// Parses every document of every manifest file.
pub fn load() -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for (file, text) in FILES {
        for doc in serde_yaml_ng::Deserializer::from_str(text) {
            let value = serde_yaml_ng::Value::deserialize(doc)
                .map_err(|source| Error::Manifest { file, source })?;
            if value.is_null() {
                continue;
            }
            out.push(parse_one(file, value)?);
        }
    }
    Ok(out)
}

fn parse_one(file: &'static str, value: serde_yaml_ng::Value) -> Result<Manifest> {
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_string();
    let parsed = match kind.as_str() {
        "Namespace" => serde_yaml_ng::from_value(value).map(Manifest::Namespace),
        "ServiceAccount" => serde_yaml_ng::from_value(value).map(Manifest::ServiceAccount),
        "Role" => serde_yaml_ng::from_value(value).map(Manifest::Role),
        "RoleBinding" => serde_yaml_ng::from_value(value).map(Manifest::RoleBinding),
        _ => return Err(Error::ManifestKind { file, kind }),
    };
    parsed.map_err(|source| Error::Manifest { file, source })
}

/// The manifests, moved to `namespace`: the Namespace's name, every object's namespace and the RoleBinding's
/// ServiceAccount subject.
pub fn build_for_namespace(namespace: &str) -> Result<Vec<Manifest>> {
    let mut manifests = load()?;
    for manifest in &mut manifests {
        match manifest {
            Manifest::Namespace(ns) => ns.metadata.name = Some(namespace.to_string()),
            Manifest::ServiceAccount(sa) => sa.metadata.namespace = Some(namespace.to_string()),
            Manifest::Role(role) => role.metadata.namespace = Some(namespace.to_string()),
            Manifest::StatefulSet(o) => o.metadata.namespace = Some(namespace.to_string()),
            Manifest::Service(o) => o.metadata.namespace = Some(namespace.to_string()),
            Manifest::DaemonSet(o) => o.metadata.namespace = Some(namespace.to_string()),
            Manifest::RoleBinding(binding) => {
                binding.metadata.namespace = Some(namespace.to_string());
                for subject in binding.subjects.iter_mut().flatten() {
                    if subject.kind == "ServiceAccount" {
                        subject.namespace = Some(namespace.to_string());
                    }
                }
            }
        }
    }
    Ok(manifests)
}

/// Everything `kb cluster-setup` prints: the manifests of `manifests/`, and the share server and the FUSE device
/// plugin, both running `share_image` (kb's agent image).
pub fn build_all(namespace: &str, share_image: &str) -> Result<Vec<Manifest>> {
    let mut manifests = build_for_namespace(namespace)?;
    manifests.push(Manifest::StatefulSet(
        super::share_server::build_statefulset(namespace, share_image),
    ));
    manifests.push(Manifest::Service(super::share_server::build_service(
        namespace,
    )));
    manifests.push(Manifest::DaemonSet(super::fuse_plugin::build_daemonset(
        namespace,
        share_image,
    )));
    Ok(manifests)
}

/// Renders manifests as one multi-document YAML stream for `kubectl apply -f -`.
pub fn render(manifests: &[Manifest]) -> Result<String> {
    let mut out = String::new();
    for manifest in manifests {
        let yaml = match manifest {
            Manifest::Namespace(o) => serde_yaml_ng::to_string(o),
            Manifest::ServiceAccount(o) => serde_yaml_ng::to_string(o),
            Manifest::Role(o) => serde_yaml_ng::to_string(o),
            Manifest::RoleBinding(o) => serde_yaml_ng::to_string(o),
            Manifest::StatefulSet(o) => serde_yaml_ng::to_string(o),
            Manifest::Service(o) => serde_yaml_ng::to_string(o),
            Manifest::DaemonSet(o) => serde_yaml_ng::to_string(o),
        }
        .map_err(|source| Error::Encode {
            format: "yaml",
            source: Box::new(source),
        })?;
        out.push_str("---\n");
        out.push_str(&yaml);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_manifest_parses_into_typed_objects() {
        let manifests = load().unwrap();
        let kinds: Vec<&str> = manifests
            .iter()
            .map(|m| match m {
                Manifest::Namespace(_) => "Namespace",
                Manifest::ServiceAccount(_) => "ServiceAccount",
                Manifest::Role(_) => "Role",
                Manifest::RoleBinding(_) => "RoleBinding",
                Manifest::StatefulSet(_) => "StatefulSet",
                Manifest::Service(_) => "Service",
                Manifest::DaemonSet(_) => "DaemonSet",
            })
            .collect();
        assert_eq!(
            kinds,
            ["Namespace", "ServiceAccount", "Role", "RoleBinding"]
        );
    }

    #[test]
    fn role_is_least_privilege() {
        let manifests = load().unwrap();
        let role = manifests
            .iter()
            .find_map(|m| {
                if let Manifest::Role(r) = m {
                    Some(r.clone())
                } else {
                    None
                }
            })
            .unwrap();
        for rule in role.rules.unwrap() {
            assert!(
                !rule.verbs.iter().any(|v| v == "*"),
                "no wildcard verbs: {rule:?}"
            );
            assert!(
                !rule.resources.unwrap_or_default().iter().any(|r| r == "*"),
                "no wildcard resources"
            );
        }
        assert_eq!(role.metadata.namespace.as_deref(), Some(DEFAULT_NAMESPACE));
    }

    #[test]
    fn namespace_moves_every_object() {
        let text = render(&build_for_namespace("team-a").unwrap()).unwrap();
        assert!(!text.contains("namespace: kb\n"), "{text}");
        assert!(!text.contains("name: kb\n"), "{text}");
        // Parse the rendered stream back: the RoleBinding's subject follows the namespace.
        let docs: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde_yaml_ng::Value::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs.len(), 4);
        let binding: RoleBinding = serde_yaml_ng::from_value(docs[3].clone()).unwrap();
        assert_eq!(
            binding.subjects.unwrap()[0].namespace.as_deref(),
            Some("team-a")
        );
        let ns: Namespace = serde_yaml_ng::from_value(docs[0].clone()).unwrap();
        assert_eq!(ns.metadata.name.as_deref(), Some("team-a"));
    }
}
