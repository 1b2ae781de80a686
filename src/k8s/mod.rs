//! The Kubernetes backend: one Job per task whose pods run kb's agent, reached over SSH through port-forwards.
//!
//! It owns creating, watching and deleting the objects of a task, and the client configuration every command uses.
//! It knows nothing of queues or output: pods are announced to the scheduler as [`crate::worker::Worker`]s.

pub mod client;
pub mod coordinator;
pub mod error;
pub mod fuse_plugin;
pub mod heartbeat;
pub mod lifetime;
pub mod manifests;
pub mod pod_state;
pub mod progress;
pub mod quantity;
pub mod ready;
pub mod resources;
pub mod share;
pub mod share_server;
pub mod source;
pub mod status;
pub mod task;
pub mod tracker;
pub mod upload;
pub mod worker;

pub use client::{Kube, Target};
pub use error::{Error, Result};
pub use lifetime::{Lifetime, LifetimeFallback};
pub use task::{PodShape, PodTask, TaskRequest, finish_task};
