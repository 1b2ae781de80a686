//! kb on the real local cluster (`tests/cluster/up`), one test binary in several files by theme:
//!
//! - [`run`]: the README's example, `kb shell` through a pseudo-terminal, a deleted pod replaced mid-run;
//! - [`errors`]: the errors found before anything is created, no kubeconfig, RBAC and `kb cluster-setup`'s Role;
//! - [`status`]: `kb status`, `kb finish` (`--orphaned` too) after the client is SIGKILLed, `--async` and `kb logs`;
//! - [`lifetime`]: the orphan timeout, the max runtime, and how a task announces them;
//! - [`apiserver`]: runs across a restart of the API server, and one that stays away.
//!
//! Every test uses its own `kb-test-<rand>` namespace, checks that nothing labelled
//! `app.kubernetes.io/managed-by=kb` is left in it, and deletes it. A cluster that cannot be reached is a failure,
//! never a skip. Images: `KB_TEST_IMAGE` (default `127.0.0.1:5000/kb/debian:bookworm`) and `KB_AGENT_IMAGE`
//! (default kb's own default with `KB_REGISTRY=127.0.0.1:5000`). One binary, not one per file: the API server
//! tests must not run beside the others, and the lock that keeps them apart holds within one process
//! (`support::cluster::exclusive`).
// A test that cannot go on fails at once, with the value that stopped it.
#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

mod apiserver;
mod errors;
mod lifetime;
mod run;
mod status;
