//! NFS file ids and file handles, and the export path's name of a task. Pure: no I/O.
//!
//! A file id is the task's slot (top 16 bits: the slot numbers tasks in the order the server first saw them, 0
//! is the export root `/kb`) and the task's inode number (low 48 bits, from `lazy::inode`), so two tasks never share
//! an id. A file handle is the server's generation (random per start: handles of an earlier server are stale), the
//! file id, and a keyed hash (HMAC-SHA-256, truncated to 128 bits) of both under the task's secret token (the
//! server's own secret for the root). Knowing one task's token gives handles of that task only: a handle naming
//! another task's file cannot be made without that task's token.

use nfsserve::nfs::nfsstat3;
use ring::hmac;

/// The slot of the export root `/kb`.
pub(crate) const ROOT_SLOT: u16 = 0;
/// The bits of a file id that hold the inode number.
const INODE_BITS: u32 = 48;
/// The length of a file handle: generation, file id, tag.
pub(crate) const HANDLE_LEN: usize = 8 + 8 + TAG_LEN;
const TAG_LEN: usize = 16;
// NFSv3 handles are at most 64 bytes (RFC 1813, NFS3_FHSIZE).
const _: () = assert!(HANDLE_LEN <= 64);

/// The file id of inode `ino` of the task in `slot`.
pub(crate) fn file_id(slot: u16, ino: u64) -> u64 {
    (u64::from(slot) << INODE_BITS) | (ino & ((1 << INODE_BITS) - 1))
}

/// The slot and inode number of a file id.
pub(crate) fn split_id(id: u64) -> (u16, u64) {
    ((id >> INODE_BITS) as u16, id & ((1 << INODE_BITS) - 1))
}

/// The key of a slot's handles, from its secret (a task's token, or the server's secret for the root).
pub(crate) fn key(secret: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret)
}

/// The handle of file `id`, made by the server of generation `generation` with the key of the id's slot.
pub(crate) fn encode(generation: u64, id: u64, key: &hmac::Key) -> Vec<u8> {
    let mut handle = Vec::with_capacity(HANDLE_LEN);
    handle.extend_from_slice(&generation.to_be_bytes());
    handle.extend_from_slice(&id.to_be_bytes());
    let tag = hmac::sign(key, &handle);
    handle.extend_from_slice(&tag.as_ref()[..TAG_LEN]);
    handle
}

/// The file id a handle names, given this server's generation and the key of a slot (`key_of`, `None` for a slot
/// this server does not know). A handle of an earlier server, or of a slot no longer known, is stale; one whose
/// tag does not match is bad.
pub(crate) fn decode(
    handle: &[u8],
    generation: u64,
    key_of: impl FnOnce(u16) -> Option<hmac::Key>,
) -> Result<u64, nfsstat3> {
    if handle.len() != HANDLE_LEN {
        return Err(nfsstat3::NFS3ERR_BADHANDLE);
    }
    let (body, tag) = handle.split_at(16);
    let id = u64::from_be_bytes(
        body[8..16]
            .try_into()
            .map_err(|_| nfsstat3::NFS3ERR_BADHANDLE)?,
    );
    if body[..8] != generation.to_be_bytes() {
        return Err(nfsstat3::NFS3ERR_STALE);
    }
    let key = key_of(split_id(id).0).ok_or(nfsstat3::NFS3ERR_STALE)?;
    // The full tag is checked in constant time by ring; a truncated one is checked here, byte for byte, without
    // stopping early.
    let expected = hmac::sign(&key, body);
    let differ = expected.as_ref()[..TAG_LEN]
        .iter()
        .zip(tag)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if differ != 0 {
        return Err(nfsstat3::NFS3ERR_BADHANDLE);
    }
    Ok(id)
}

/// The name of a task's share in the export root: `<task>-<token>`.
pub(crate) fn share_name(task: &str, token: &str) -> String {
    format!("{task}-{token}")
}

/// The task and token a name of the export root claims (task ids may hold `-`; the token is after the last).
pub(crate) fn parse_share_name(name: &str) -> Option<(&str, &str)> {
    let (task, token) = name.rsplit_once('-')?;
    (crate::share::store::check_task(task).is_ok() && crate::share::store::is_token(token))
        .then_some((task, token))
}

/// Whether two secrets are equal, in time independent of where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN_A: &str = "0123456789abcdef0123456789abcdef";
    const TOKEN_B: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn file_ids_carry_the_slot_and_never_collide_across_tasks() {
        assert_eq!(split_id(file_id(3, 7)), (3, 7));
        assert_ne!(file_id(1, 2), file_id(2, 2));
        assert_eq!(file_id(ROOT_SLOT, 1), 1, "the export root is file id 1");
        assert_eq!(
            split_id(file_id(u16::MAX, (1 << 48) - 1)),
            (u16::MAX, (1 << 48) - 1)
        );
    }

    #[test]
    fn a_handle_decodes_only_with_its_task_s_key_and_generation() {
        let (a, b) = (key(TOKEN_A.as_bytes()), key(TOKEN_B.as_bytes()));
        let id = file_id(1, 5);
        let handle = encode(42, id, &a);
        assert_eq!(handle.len(), HANDLE_LEN);
        let with = |k: &hmac::Key| {
            let k = k.clone();
            move |slot: u16| (slot == 1).then_some(k)
        };
        assert_eq!(decode(&handle, 42, with(&a)).unwrap(), id);
        // Another task's token cannot vouch for this task's file.
        assert!(matches!(
            decode(&handle, 42, with(&b)),
            Err(nfsstat3::NFS3ERR_BADHANDLE)
        ));
        // A handle of an earlier server, or of a slot the server does not know, is stale.
        assert!(matches!(
            decode(&handle, 43, with(&a)),
            Err(nfsstat3::NFS3ERR_STALE)
        ));
        assert!(matches!(
            decode(&handle, 42, |_| None),
            Err(nfsstat3::NFS3ERR_STALE)
        ));
        // Changing the file id (to reach another file or task) breaks the tag; so does any flipped bit.
        let mut forged = handle.clone();
        forged[15] ^= 1;
        assert!(matches!(
            decode(&forged, 42, |_| Some(a.clone())),
            Err(nfsstat3::NFS3ERR_BADHANDLE)
        ));
        let mut forged = handle.clone();
        forged[HANDLE_LEN - 1] ^= 0x80;
        assert!(matches!(
            decode(&forged, 42, with(&a)),
            Err(nfsstat3::NFS3ERR_BADHANDLE)
        ));
        assert!(matches!(
            decode(&handle[..20], 42, with(&a)),
            Err(nfsstat3::NFS3ERR_BADHANDLE)
        ));
    }

    #[test]
    fn share_names_hold_a_task_and_a_token() {
        let name = share_name("kb-run-7", TOKEN_A);
        assert_eq!(parse_share_name(&name), Some(("kb-run-7", TOKEN_A)));
        assert_eq!(parse_share_name("t1"), None);
        assert_eq!(
            parse_share_name(&format!("t1-{}", &TOKEN_A[1..])),
            None,
            "short token"
        );
        assert_eq!(
            parse_share_name(&format!("T1-{TOKEN_A}")),
            None,
            "not a task id"
        );
        assert_eq!(parse_share_name(&format!("-{TOKEN_A}")), None);
        assert_eq!(parse_share_name(&format!("../t-{TOKEN_A}")), None);
        assert!(same_secret(TOKEN_A, TOKEN_A));
        assert!(!same_secret(TOKEN_A, TOKEN_B));
        assert!(!same_secret(TOKEN_A, &TOKEN_A[1..]));
    }
}
