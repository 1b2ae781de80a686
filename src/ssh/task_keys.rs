//! The per-task SSH keys: the client's key (its public half is the agent's only authorized key) and the agent's
//! host key (its public half is pinned by the client). Made fresh for every task, never written to disk here.

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{LineEnding, PrivateKey};

/// The keys of one task.
#[derive(Clone)]
pub struct TaskKeys {
    /// The client's private key.
    pub client: PrivateKey,
    /// The agent's host key, OpenSSH private key text (goes into the Secret).
    pub host_private: String,
    /// The agent's public host key, an OpenSSH line (pinned by the client).
    pub host_public: String,
    /// The client's public key, an OpenSSH line (the agent's authorized key).
    pub client_public: String,
}

impl std::fmt::Debug for TaskKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskKeys")
            .field("host_public", &self.host_public)
            .finish_non_exhaustive()
    }
}

/// Where a task's key files are kept on this machine: `$TMPDIR/kb-<uid>/<task>` (the writers make it 0700).
pub fn key_dir(id: &str) -> std::path::PathBuf {
    let uid = nix::unistd::getuid();
    std::env::temp_dir().join(format!("kb-{uid}")).join(id)
}

/// Generates a fresh Ed25519 key.
pub fn generate() -> PrivateKey {
    let seed: [u8; 32] = rand::random();
    PrivateKey::from(Ed25519Keypair::from_seed(&seed))
}

/// Generates both keys of a task.
pub fn build_task_keys() -> Result<TaskKeys, russh::keys::ssh_key::Error> {
    let client = generate();
    let host = generate();
    Ok(TaskKeys {
        host_private: host.to_openssh(LineEnding::LF)?.to_string(),
        host_public: host.public_key().to_openssh()?,
        client_public: client.public_key().to_openssh()?,
        client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fresh_and_round_trip() {
        let a = build_task_keys().unwrap();
        let b = build_task_keys().unwrap();
        assert_ne!(a.host_public, b.host_public);
        assert_ne!(a.client_public, a.host_public);
        assert!(a.host_public.starts_with("ssh-ed25519 "));
        let host = PrivateKey::from_openssh(&a.host_private).unwrap();
        assert_eq!(host.public_key().to_openssh().unwrap(), a.host_public);
        assert!(!format!("{a:?}").contains("PRIVATE"));
    }
}
