//! The share on the real local cluster (`tests/cluster/up`), through the share server that `kb cluster-setup`
//! deploys, one test binary in several files by theme:
//!
//! - [`eager`]: the eager share and syncback: what jobs see, what a second run and a one-file change move, a
//!   conflict, `--async`, and no privileged container;
//! - [`lazy`]: the lazy share over FUSE and over NFS, and a client that stops answering;
//! - [`server`]: the share server replaced under an eager and a lazy run.
//!
//! The deployments and pod helpers they share are in `support::share`.
// A test that cannot go on fails at once, with the value that stopped it.
#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

mod eager;
mod lazy;
mod server;
