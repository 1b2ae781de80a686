//! The lazy share's NFS path (issue [share]): an NFSv3 server (the `nfsserve` crate) in the share server, for
//! nodes that mount NFS as a kubelet volume. The export is `/kb`; a task's share is `/kb/<task>-<token>`, the
//! token made by `kb share lazy-allow` and kept in the store, and each request on it goes to the task's client over
//! an SFTP session to the task's relay (as a pod's `lazy-attach` does). `handle` (file ids and handles), `attr`
//! (NFS ↔ SFTP terms), `task` (a task's paths and session), `registry` (the tasks seen, by slot), `fs` (the file system), `listen` (the listeners). See
//! docs/architecture.md, "The NFS path".

mod attr;
mod fs;
mod handle;
mod listen;
mod registry;
mod task;

pub use fs::NfsShare;
pub use listen::{DEFAULT_LISTEN, EXPORT, Listeners, bind, export_path, serve};
