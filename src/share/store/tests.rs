//! The store's operations, on a store in a temporary directory.

use super::*;
use crate::share::manifest::{hash_reader, scan};

fn blob_frame(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{} {}\n", hash_reader(data).unwrap(), data.len()).into_bytes();
    out.extend_from_slice(data);
    out
}

#[test]
fn have_put_commit_serve_round_trip() {
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    assert!(store.host_public_key().unwrap().starts_with("ssh-ed25519 "));
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("a.txt"), "alpha\n").unwrap();
    std::fs::create_dir(src.path().join("d")).unwrap();
    std::fs::write(src.path().join("d/b.txt"), "beta\n").unwrap();
    std::os::unix::fs::symlink("a.txt", src.path().join("l")).unwrap();
    let manifest = scan(src.path(), true).unwrap();
    let hashes: Vec<String> = manifest.blobs().into_keys().collect();

    let ask = format!("{}\nend\n", hashes.join("\n"));
    let mut out = Vec::new();
    store.have(ask.as_bytes(), &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), ask);

    // A blob whose content does not match its name is refused.
    let mut bad = format!("{} 3\n", "0".repeat(64)).into_bytes();
    bad.extend_from_slice(b"abc");
    bad.extend_from_slice(b"end\n");
    assert!(store.put(&bad[..], Vec::new()).is_err());

    let mut frames = blob_frame(b"alpha\n");
    frames.extend(blob_frame(b"beta\n"));
    frames.extend_from_slice(b"end\n");
    let mut out = Vec::new();
    store.put(&frames[..], &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "stored 2 11\n");
    let mut out = Vec::new();
    store.have(ask.as_bytes(), &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "end\n");

    let key = russh::keys::PrivateKey::from(
        russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&[1u8; 32]),
    );
    let key = key.public_key().to_openssh().unwrap();
    let json = serde_json::to_vec(&manifest).unwrap();
    let manifest_hash = hash_reader(&json[..]).unwrap();
    // The manifest is a blob like any other: committing it before it is stored fails.
    assert!(
        store
            .commit("abc123", &key, &manifest_hash, "x", Vec::new())
            .is_err()
    );
    let mut frames = blob_frame(&json);
    frames.extend_from_slice(b"end\n");
    store.put(&frames[..], Vec::new()).unwrap();
    let mut out = Vec::new();
    store
        .commit(
            "abc123",
            &key,
            &manifest_hash,
            "kb share serve --task abc123",
            &mut out,
        )
        .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap().trim(),
        store.host_public_key().unwrap()
    );
    let keys = std::fs::read_to_string(store.authorized_keys()).unwrap();
    assert_eq!(keys.lines().count(), 1);
    assert!(
        keys.starts_with("command=\"kb share serve --task abc123\" ssh-ed25519 "),
        "{keys}"
    );
    assert!(
        store
            .commit("../x", &key, &manifest_hash, "x", Vec::new())
            .is_err()
    );

    let mut served = Vec::new();
    store.serve("abc123", &mut served).unwrap();
    let mut reader = std::io::BufReader::new(&served[..]);
    assert_eq!(read_framed_manifest(&mut reader).unwrap(), manifest);
    let dest = tempfile::tempdir().unwrap();
    tar::Archive::new(reader).unpack(dest.path()).unwrap();
    assert_eq!(scan(dest.path(), false).unwrap(), manifest);

    store.drop_task("abc123").unwrap();
    assert_eq!(
        std::fs::read_to_string(store.authorized_keys()).unwrap(),
        ""
    );
    assert!(store.serve("abc123", Vec::new()).is_err());
    store.drop_task("abc123").unwrap();
}

#[test]
fn patch_rebuilds_a_manifest_from_its_base_and_checks_the_result() {
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("a.txt"), "alpha\n").unwrap();
    std::fs::write(src.path().join("b.txt"), "beta\n").unwrap();
    let old = scan(src.path(), true).unwrap();
    let old_json = serde_json::to_vec(&old).unwrap();
    let old_hash = hash_reader(&old_json[..]).unwrap();
    std::fs::rename(src.path().join("b.txt"), src.path().join("c.txt")).unwrap();
    std::fs::write(src.path().join("a.txt"), "changed\n").unwrap();
    let new = scan(src.path(), true).unwrap();
    let new_json = serde_json::to_vec(&new).unwrap();
    let new_hash = hash_reader(&new_json[..]).unwrap();
    let delta = serde_json::to_vec(&crate::share::delta::Delta::between(&old, &new)).unwrap();
    let mut input = format!("{}\n", delta.len()).into_bytes();
    input.extend_from_slice(&delta);

    // Without the base in the store there is nothing to patch.
    assert!(
        store
            .patch(&old_hash, &new_hash, &input[..], Vec::new())
            .is_err()
    );
    let mut frames = blob_frame(&old_json);
    frames.extend_from_slice(b"end\n");
    store.put(&frames[..], Vec::new()).unwrap();
    // A result that does not hash to what the client said is refused and not stored.
    let wrong = "f".repeat(64);
    assert!(
        store
            .patch(&old_hash, &wrong, &input[..], Vec::new())
            .is_err()
    );
    assert!(!store_dir.path().join("blobs").join(&wrong).exists());

    let mut out = Vec::new();
    store
        .patch(&old_hash, &new_hash, &input[..], &mut out)
        .unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "patched\n");
    let stored = std::fs::read(store_dir.path().join("blobs").join(&new_hash)).unwrap();
    assert_eq!(stored, new_json);
}

#[test]
fn collect_deletes_only_old_contents_no_task_names() {
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    let mut frames = Vec::new();
    for body in [
        &b"used by the task"[..],
        b"old and unused",
        b"new and unused",
    ] {
        frames.extend(blob_frame(body));
    }
    frames.extend_from_slice(b"end\n");
    store.put(&frames[..], Vec::new()).unwrap();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("a"), "used by the task").unwrap();
    let manifest = scan(src.path(), true).unwrap();
    let json = serde_json::to_vec(&manifest).unwrap();
    let mut frames = blob_frame(&json);
    frames.extend_from_slice(b"end\n");
    store.put(&frames[..], Vec::new()).unwrap();
    let key = russh::keys::PrivateKey::from(
        russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&[2u8; 32]),
    );
    let key = key.public_key().to_openssh().unwrap();
    let manifest_hash = hash_reader(&json[..]).unwrap();
    store
        .commit("t1", &key, &manifest_hash, "x", Vec::new())
        .unwrap();
    // Everything but the newest content was last used two hours ago.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for body in [&b"used by the task"[..], b"old and unused", &json[..]] {
        let path = store_dir
            .path()
            .join("blobs")
            .join(hash_reader(body).unwrap());
        std::fs::File::open(path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let exists = |body: &[u8]| {
        store_dir
            .path()
            .join("blobs")
            .join(hash_reader(body).unwrap())
            .exists()
    };

    // Under the high-water mark nothing goes.
    assert_eq!(store.collect(1 << 20, 0, KEEP_RECENT).unwrap(), (0, 0));
    // Asking about a content counts as using it.
    let ask = format!("{}\nend\n", hash_reader(&b"old and unused"[..]).unwrap());
    store.have(ask.as_bytes(), Vec::new()).unwrap();
    assert_eq!(
        store.collect(0, 0, KEEP_RECENT).unwrap().0,
        1,
        "only the old manifest blob"
    );
    assert!(!exists(&json) && exists(b"old and unused"));
    let path = store_dir
        .path()
        .join("blobs")
        .join(hash_reader(&b"old and unused"[..]).unwrap());
    std::fs::File::open(path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let (count, bytes) = store.collect(0, 0, KEEP_RECENT).unwrap();
    assert_eq!((count, bytes), (1, "old and unused".len() as u64));
    // What a task names, and what is recent, stays.
    assert!(exists(b"used by the task") && exists(b"new and unused"));
    let mut served = Vec::new();
    store.serve("t1", &mut served).unwrap();
}

#[test]
fn lazy_keys_are_forced_to_their_command_and_go_with_the_task() {
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    let key = |seed: u8| {
        russh::keys::PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(
            &[seed; 32],
        ))
        .public_key()
        .to_openssh()
        .unwrap()
    };
    let lines = [
        (key(3), "kb share lazy-host --task t2".to_string()),
        (key(4), "kb share lazy-attach --task t2".to_string()),
    ];
    let lines: Vec<(&str, String)> = lines.iter().map(|(k, c)| (k.as_str(), c.clone())).collect();
    assert!(store.allow_lazy("../t2", &lines).is_err());
    assert!(
        store
            .allow_lazy("t2", &[("not a key", "x".into())])
            .is_err()
    );
    store.allow_lazy("t2", &lines).unwrap();
    let keys = std::fs::read_to_string(store.authorized_keys()).unwrap();
    let keys: Vec<&str> = keys.lines().collect();
    assert_eq!(keys.len(), 2);
    assert!(keys[0].starts_with("command=\"kb share lazy-host --task t2\" ssh-ed25519 "));
    assert!(keys[1].starts_with("command=\"kb share lazy-attach --task t2\" ssh-ed25519 "));
    assert!(store.lazy_socket("t2").unwrap().ends_with("lazy/t2.sock"));
    assert_eq!(store.nfs_token("t2").unwrap(), None);
    let token = store.allow_nfs("t2").unwrap();
    assert!(is_token(&token), "{token}");
    assert_eq!(store.allow_nfs("t2").unwrap(), token, "kept, not remade");
    assert_ne!(store.allow_nfs("t3").unwrap(), token);
    let file = store_dir.path().join("lazy/t2.nfs");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(store.allow_nfs("../t2").is_err());
    store.drop_task("t2").unwrap();
    assert_eq!(
        std::fs::read_to_string(store.authorized_keys()).unwrap(),
        ""
    );
    assert_eq!(store.nfs_token("t2").unwrap(), None);
    assert!(!file.exists());
}
