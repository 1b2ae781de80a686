//! The lazy share's two ends (issue [share]): the laptop serves its working directory over SFTP
//! ([`serve_sftp`], `server`), and each worker pod mounts it with FUSE at the same path ([`mount`], `fs`), the SFTP
//! stream relayed by the share server. Both ends take any byte stream; `share::relay` and `share::lazy_task` wire
//! them through the share server. See docs/architecture.md, "The lazy share".

mod confine;
mod fs;
pub(crate) mod inode;
mod local;
mod mount;
pub(crate) mod remote;
mod server;
pub(crate) mod share;
mod stream;

pub use mount::{DEFAULT_DEADLINE, DEFAULT_TTL, Error, MountOutcome, MountSpec, mount};
pub use server::SftpServer;
pub use stream::{Stream, serve_sftp, splice_stdio, stdio};
