//! Client authentication: the `--identity` identities, else the keys of the ssh-agent (`SSH_AUTH_SOCK`), else
//! `~/.ssh/id_ed25519`, `id_ecdsa` and `id_rsa` (`$HOME` honoured). Only public-key authentication; kb never
//! prompts for a password or a passphrase.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::{AuthResult, Handle, Handler};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg};

use super::error::{Error, Result};

/// The default identity files, in the order OpenSSH tries them.
pub fn default_identities() -> Vec<PathBuf> {
    let Some(home) = home_dir() else {
        return Vec::new();
    };
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|name| home.join(".ssh").join(name))
        .collect()
}

/// `$HOME`, else the home directory of the current user.
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(dirs::home_dir)
}

/// Loads an unencrypted OpenSSH (or PKCS#8) private key.
pub fn load_private_key(path: &Path) -> Result<PrivateKey> {
    russh::keys::load_secret_key(path, None).map_err(|source| Error::Key {
        path: path.to_owned(),
        source,
    })
}

/// Logs in as `user` with the first key the server accepts; `host` is for messages.
pub(crate) async fn authenticate<H: Handler>(
    handle: &mut Handle<H>,
    user: &str,
    host: &str,
    identities: &[PathBuf],
) -> Result<()> {
    let mut tried = Vec::new();
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    let handshake = |source| Error::Handshake {
        host: host.to_owned(),
        source,
    };
    if !identities.is_empty() {
        for path in identities {
            let key = load_private_key(path)?;
            tried.push(path.display().to_string());
            if try_key(handle, user, key, rsa_hash)
                .await
                .map_err(handshake)?
            {
                return Ok(());
            }
        }
        return Err(refused(user, host, tried));
    }
    if try_agent(handle, user, rsa_hash, &mut tried).await {
        return Ok(());
    }
    for path in default_identities() {
        if !path.exists() {
            continue;
        }
        let key = match load_private_key(&path) {
            Ok(key) => key,
            Err(err) => {
                tracing::debug!("skipping {}: {err}", path.display());
                continue;
            }
        };
        tried.push(path.display().to_string());
        if try_key(handle, user, key, rsa_hash)
            .await
            .map_err(handshake)?
        {
            return Ok(());
        }
    }
    Err(refused(user, host, tried))
}

fn refused(user: &str, host: &str, tried: Vec<String>) -> Error {
    let tried = if tried.is_empty() {
        "no key found".to_owned()
    } else {
        format!("tried {}", tried.join(", "))
    };
    Error::AuthRefused {
        user: user.to_owned(),
        host: host.to_owned(),
        tried,
    }
}

async fn try_key<H: Handler>(
    handle: &mut Handle<H>,
    user: &str,
    key: PrivateKey,
    rsa_hash: Option<HashAlg>,
) -> std::result::Result<bool, russh::Error> {
    let key = PrivateKeyWithHashAlg::new(Arc::new(key), rsa_hash);
    Ok(matches!(
        handle.authenticate_publickey(user, key).await?,
        AuthResult::Success
    ))
}

/// Tries every plain key of the ssh-agent; false when there is no agent or none is accepted.
async fn try_agent<H: Handler>(
    handle: &mut Handle<H>,
    user: &str,
    rsa_hash: Option<HashAlg>,
    tried: &mut Vec<String>,
) -> bool {
    if std::env::var_os("SSH_AUTH_SOCK").is_none() {
        return false;
    }
    let mut agent = match AgentClient::connect_env().await {
        Ok(agent) => agent,
        Err(err) => {
            tracing::debug!("ssh-agent unavailable: {err}");
            return false;
        }
    };
    let identities = agent.request_identities().await.unwrap_or_default();
    for identity in identities {
        let AgentIdentity::PublicKey { key, comment } = identity else {
            continue;
        };
        tried.push(format!("ssh-agent key `{comment}`"));
        match handle
            .authenticate_publickey_with(user, key, rsa_hash, &mut agent)
            .await
        {
            Ok(AuthResult::Success) => return true,
            Ok(_) => {}
            Err(err) => tracing::debug!("ssh-agent key `{comment}` failed: {err:?}"),
        }
    }
    false
}
