//! The laptop's requests to the share server, in one typed place both ends use: the laptop turns a [`Request`]
//! into the argv of `kb share` run in the server's pod ([`Request::argv`]); the server parses that argv with the
//! same names (`commands::internal::share`) and first checks [`VERSION`], so a server from another kb says so instead of
//! misreading a request. What each request reads on stdin and writes on stdout is documented on its variant.

/// The version of the requests below; the server refuses any other. Raise it when a request changes.
pub const VERSION: u32 = 1;

/// The flag that carries [`VERSION`].
pub const VERSION_FLAG: &str = "--protocol";

/// One request of the laptop to the share server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// Which of the hashes on stdin (one per line, then `end`) the store lacks; answers them, then `end`.
    Have,
    /// Stores the blobs on stdin (`HASH LEN` + bytes, then `end`).
    Put,
    /// Stores a manifest made from stored manifest `base` and the delta on stdin; it must hash to `manifest`.
    Patch {
        /// The stored manifest's SHA-256.
        base: &'a str,
        /// The result's SHA-256.
        manifest: &'a str,
    },
    /// Records task `task`'s manifest (a stored blob) and its pods' public key; answers the host key.
    Commit {
        /// The task id.
        task: &'a str,
        /// The pods' public key (an OpenSSH line).
        key: &'a str,
        /// The manifest's SHA-256.
        manifest: &'a str,
    },
    /// Forgets task `task` (its contents stay for later runs).
    Drop {
        /// The task id.
        task: &'a str,
    },
    /// Lets the task's client key host its lazy share and its pod key attach; answers the host key, then the
    /// task's NFS export path.
    LazyAllow {
        /// The task id.
        task: &'a str,
        /// The client's public key.
        client_key: &'a str,
        /// The pods' public key.
        pod_key: &'a str,
    },
}

impl Request<'_> {
    /// The request's subcommand of `kb share`.
    pub fn verb(&self) -> &'static str {
        match self {
            Request::Have => "have",
            Request::Put => "put",
            Request::Patch { .. } => "patch",
            Request::Commit { .. } => "commit",
            Request::Drop { .. } => "drop",
            Request::LazyAllow { .. } => "lazy-allow",
        }
    }

    /// `share --protocol N VERB FLAGS... --store STORE`: the arguments of kb in the server's pod.
    pub fn argv(&self, store: &str) -> Vec<String> {
        let mut argv: Vec<String> = vec![
            "share".into(),
            VERSION_FLAG.into(),
            VERSION.to_string(),
            self.verb().into(),
        ];
        let flags: Vec<(&str, &str)> = match *self {
            Request::Have | Request::Put => Vec::new(),
            Request::Patch { base, manifest } => vec![("--base", base), ("--manifest", manifest)],
            Request::Commit {
                task,
                key,
                manifest,
            } => vec![("--task", task), ("--key", key), ("--manifest", manifest)],
            Request::Drop { task } => vec![("--task", task)],
            Request::LazyAllow {
                task,
                client_key,
                pod_key,
            } => vec![
                ("--task", task),
                ("--client-key", client_key),
                ("--pod-key", pod_key),
            ],
        };
        for (flag, value) in flags {
            argv.push(flag.into());
            argv.push(value.into());
        }
        argv.push("--store".into());
        argv.push(store.into());
        argv
    }
}

/// A request in another version than this kb's.
#[derive(Debug, thiserror::Error)]
#[error(
    "this share server runs requests of version {VERSION}, and was sent version {got}: the share server and this kb \
     differ; apply `kb cluster-setup` from the kb you run"
)]
pub struct VersionMismatch {
    /// The version the request carried.
    pub got: u32,
}

/// Checks a request's version, when it carries one (requests kb runs in worker pods do not: the pod runs the
/// client's own kb).
pub fn check_version(got: Option<u32>) -> Result<(), VersionMismatch> {
    match got {
        Some(got) if got != VERSION => Err(VersionMismatch { got }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_carries_the_version_first_and_the_store_last() {
        let argv = Request::Drop { task: "t1" }.argv("/store");
        assert_eq!(
            argv,
            [
                "share",
                "--protocol",
                "1",
                "drop",
                "--task",
                "t1",
                "--store",
                "/store"
            ]
        );
    }

    #[test]
    fn other_versions_are_refused_and_none_is_accepted() {
        assert!(check_version(Some(VERSION)).is_ok());
        assert!(check_version(None).is_ok());
        let err = check_version(Some(VERSION + 1)).unwrap_err();
        assert!(err.to_string().contains("kb cluster-setup"), "{err}");
    }
}
