//! The working directory in the pods (issue [share]). This part is the eager share and syncback through the share
//! server (`kb cluster-setup` deploys it): `manifest` (a tree by content), `store` (the server's store and its
//! requests), `client` (the names both ends share, and the pod fetching its tree), `pod` (the worker pod's
//! side), `sync` (applying a pod's changes locally, by content), `delta` (what changed since the last upload),
//! `lazy` (the lazy share's two ends: the laptop's SFTP server and the pods' FUSE mount) and `relay` (the share
//! server carrying the pods' SFTP sessions to the laptop's), `nfs` (the share server's NFS server over the same
//! relays, for nodes that mount NFS). The laptop's side of a task's share, which reaches the share server through
//! the Kubernetes API, is `k8s::share`.

pub mod client;
pub mod delta;
pub mod lazy;
pub mod manifest;
pub mod nfs;
pub mod pod;
pub mod protocol;
pub mod relay;
pub mod store;
pub mod sync;
