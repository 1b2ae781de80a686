//! What the store lets in besides a task's tree: the keys of a task's lazy share and the secret of its NFS
//! export path.

use std::path::PathBuf;

use super::{Store, check_task, invalid, task_marker, write_atomic};

impl Store {
    /// `lazy-allow`: adds one forced-command line per `(key, command)` for `task` to `authorized_keys` (the client's
    /// key to host the task's lazy share, the pods' key to attach to it); `drop` removes them with the rest.
    pub fn allow_lazy(&self, task: &str, lines: &[(&str, String)]) -> std::io::Result<()> {
        check_task(task)?;
        let mut add = Vec::new();
        for (key, command) in lines {
            russh::keys::PublicKey::from_openssh(key.trim())
                .map_err(|e| invalid(format!("not a public key: {e}")))?;
            add.push(format!(
                "command=\"{}\" {} {}",
                command.replace('\\', "\\\\").replace('"', "\\\""),
                key.trim(),
                task_marker(task)
            ));
        }
        self.edit_authorized_keys(|keys| keys.extend(add))
    }

    /// Where the relay of `task`'s lazy share listens for its pods (a Unix socket in the store).
    pub fn lazy_socket(&self, task: &str) -> std::io::Result<PathBuf> {
        check_task(task)?;
        let dir = self.root.join("lazy");
        std::fs::create_dir_all(&dir)?;
        Ok(dir.join(format!("{task}.sock")))
    }

    pub(super) fn nfs_token_path(&self, task: &str) -> std::io::Result<PathBuf> {
        Ok(self.lazy_socket(task)?.with_extension("nfs"))
    }

    /// `lazy-allow`: the secret of `task`'s NFS export (128 random bits, hex), made on first call and kept in the
    /// store (0600) until `drop`; the export path is `/kb/<task>-<token>` (see `share::nfs`).
    pub fn allow_nfs(&self, task: &str) -> std::io::Result<String> {
        if let Some(token) = self.nfs_token(task)? {
            return Ok(token);
        }
        let token: String = rand::random::<[u8; 16]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        write_atomic(&self.nfs_token_path(task)?, token.as_bytes(), 0o600)?;
        Ok(token)
    }

    /// The secret of `task`'s NFS export, if `lazy-allow` made one and the task was not dropped since.
    pub fn nfs_token(&self, task: &str) -> std::io::Result<Option<String>> {
        match std::fs::read_to_string(self.nfs_token_path(task)?) {
            Ok(token) if is_token(token.trim()) => Ok(Some(token.trim().to_string())),
            Ok(_) => Err(invalid(format!(
                "the NFS token of task `{task}` is damaged"
            ))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }
}

/// Whether `token` is what [`Store::allow_nfs`] makes: 32 lowercase hex digits.
pub fn is_token(token: &str) -> bool {
    token.len() == 32
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
