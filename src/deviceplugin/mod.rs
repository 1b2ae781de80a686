//! `kb device-plugin`: a kubelet device plugin (Device Plugin API v1beta1) that hands containers the node's
//! `/dev/fuse` as the extended resource `kb.dev/fuse`, so that pods can mount FUSE filesystems without a
//! privileged container (see `docs/architecture.md`, "FUSE in pods").
//!
//! It runs on every node (the `kb-fuse` DaemonSet of `kb cluster-setup`) and talks only to the kubelet, over unix
//! sockets in the kubelet's device plugin directory; it never calls the Kubernetes API.

pub mod api;
pub mod error;
pub mod grpc;
pub mod lock;
pub mod plugin;
pub mod run;

pub use error::{Error, Result};
pub use plugin::{FUSE_DEVICE, FUSE_RESOURCE, Plugin};
pub use run::{Placement, run};
