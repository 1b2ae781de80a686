//! Host key checking: OpenSSH `known_hosts` files (plain, hashed `|1|` and `[host]:port` entries, wildcards,
//! negation, `@revoked`) and pinned keys. Only reads files; never learns or writes a key.

use std::path::{Path, PathBuf};

use russh::keys::PublicKey;

/// What the recorded keys say about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A recorded key matches.
    Trusted,
    /// No recorded key of this type names the host.
    Unknown,
    /// A recorded key of the same type, or a `@revoked` entry, contradicts it; the text says where.
    Mismatch(String),
}

/// The name OpenSSH looks up for `host` on `port`: `host` for 22, else `[host]:port`.
pub fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Checks `key` against pinned OpenSSH public key lines (`ssh-ed25519 AAAA... comment`; unparsable lines never match).
pub fn check_pinned(pinned: &[String], key: &PublicKey) -> Verdict {
    let matches = pinned.iter().any(|line| {
        PublicKey::from_openssh(line.trim()).is_ok_and(|p| p.key_data() == key.key_data())
    });
    if matches {
        Verdict::Trusted
    } else {
        Verdict::Mismatch("the key pinned for this host".into())
    }
}

/// Checks `key` for the host named `name` (see [`lookup_name`]) against `files` in order; missing files are skipped.
pub fn check_files(files: &[PathBuf], name: &str, key: &PublicKey) -> Verdict {
    let mut verdict = Verdict::Unknown;
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        match check_text(&text, name, key, file) {
            Verdict::Trusted => verdict = Verdict::Trusted,
            Verdict::Mismatch(at) => return Verdict::Mismatch(at),
            Verdict::Unknown => {}
        }
    }
    verdict
}

fn check_text(text: &str, name: &str, key: &PublicKey, file: &Path) -> Verdict {
    let mut verdict = Verdict::Unknown;
    for (index, line) in text.lines().enumerate() {
        let Some(entry) = parse_line(line) else {
            continue;
        };
        if entry.marker == Some("@cert-authority") || !hosts_match(entry.hosts, name) {
            continue;
        }
        let Ok(recorded) =
            PublicKey::from_openssh(&format!("{} {}", entry.key_type, entry.key_base64))
        else {
            continue;
        };
        let at = || format!("{}:{}", file.display(), index + 1);
        let same = recorded.key_data() == key.key_data();
        if entry.marker == Some("@revoked") {
            if same {
                return Verdict::Mismatch(format!("revoked at {}", at()));
            }
        } else if same {
            verdict = Verdict::Trusted;
        } else if recorded.algorithm() == key.algorithm() && verdict != Verdict::Trusted {
            verdict = Verdict::Mismatch(format!("recorded at {}", at()));
        }
    }
    verdict
}

struct Entry<'a> {
    marker: Option<&'a str>,
    hosts: &'a str,
    key_type: &'a str,
    key_base64: &'a str,
}

fn parse_line(line: &str) -> Option<Entry<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    let marker = if first.starts_with('@') {
        let marker = first;
        first = fields.next()?;
        Some(marker)
    } else {
        None
    };
    Some(Entry {
        marker,
        hosts: first,
        key_type: fields.next()?,
        key_base64: fields.next()?,
    })
}

/// True when the comma-separated `patterns` name `name` (and no negated pattern does).
fn hosts_match(patterns: &str, name: &str) -> bool {
    let mut matched = false;
    for pattern in patterns.split(',') {
        if let Some(hashed) = pattern.strip_prefix("|1|") {
            matched |= hashed_match(hashed, name);
        } else if let Some(negated) = pattern.strip_prefix('!') {
            if glob(negated.as_bytes(), name.as_bytes()) {
                return false;
            }
        } else {
            matched |= glob(pattern.as_bytes(), name.as_bytes());
        }
    }
    matched
}

fn hashed_match(salt_and_hash: &str, name: &str) -> bool {
    let Some((salt, hash)) = salt_and_hash.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (
        data_encoding::BASE64.decode(salt.as_bytes()),
        data_encoding::BASE64.decode(hash.as_bytes()),
    ) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
    ring::hmac::verify(&key, name.as_bytes(), &hash).is_ok()
}

/// OpenSSH's `*` and `?` wildcards, case-insensitive.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.split_first(), name.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => {
            glob(rest, name) || (!name.is_empty() && glob(pattern, &name[1..]))
        }
        (Some((b'?', rest)), Some((_, name_rest))) => glob(rest, name_rest),
        (Some((p, rest)), Some((n, name_rest))) => {
            p.eq_ignore_ascii_case(n) && glob(rest, name_rest)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED1: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA6rWI3G1sz07DnfFlrouTcysQlj2P+jpNSOEWD9OJ3X";

    fn key(line: &str) -> PublicKey {
        PublicKey::from_openssh(line).unwrap()
    }

    fn check(text: &str, name: &str, line: &str) -> Verdict {
        check_text(text, name, &key(line), Path::new("kh"))
    }

    #[test]
    fn plain_and_port_entries() {
        let text = format!("# comment\nother {ED2}\nhost,alias {ED1}\n[host]:2222 {ED2}\n");
        assert_eq!(check(&text, "host", ED1), Verdict::Trusted);
        assert_eq!(check(&text, "alias", ED1), Verdict::Trusted);
        assert_eq!(check(&text, "[host]:2222", ED2), Verdict::Trusted);
        assert_eq!(
            check(&text, "[host]:2222", ED1),
            Verdict::Mismatch("recorded at kh:4".into())
        );
        assert_eq!(check(&text, "nobody", ED1), Verdict::Unknown);
    }

    #[test]
    fn hashed_entries() {
        // `ssh-keygen -H` output for `[127.0.0.1]:2222`, salt and HMAC-SHA1 computed here.
        let salt = [7u8; 20];
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt),
            b"[127.0.0.1]:2222",
        );
        let entry = format!(
            "|1|{}|{}",
            data_encoding::BASE64.encode(&salt),
            data_encoding::BASE64.encode(mac.as_ref())
        );
        let text = format!("{entry} {ED1}\n");
        assert_eq!(check(&text, "[127.0.0.1]:2222", ED1), Verdict::Trusted);
        assert_eq!(check(&text, "127.0.0.1", ED1), Verdict::Unknown);
    }

    #[test]
    fn wildcards_negation_and_revocation() {
        let text = format!("*.example.com,!bad.example.com {ED1}\n@revoked * {ED2}\n");
        assert_eq!(check(&text, "a.example.com", ED1), Verdict::Trusted);
        assert_eq!(check(&text, "bad.example.com", ED1), Verdict::Unknown);
        assert!(
            matches!(check(&text, "a.example.com", ED2), Verdict::Mismatch(m) if m.contains("revoked"))
        );
    }

    #[test]
    fn pinned() {
        assert_eq!(
            check_pinned(&[format!("{ED1} comment")], &key(ED1)),
            Verdict::Trusted
        );
        assert!(matches!(
            check_pinned(&[ED2.into()], &key(ED1)),
            Verdict::Mismatch(_)
        ));
    }
}
