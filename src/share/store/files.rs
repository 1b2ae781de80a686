//! The store's files on disk and on the wire: a manifest framed by its length, and atomic writes.

use std::io::{BufRead, Read, Write};
use std::path::Path;

use super::invalid;
use crate::share::manifest::Manifest;

/// `LEN\n` then LEN bytes of JSON.
pub fn write_framed_manifest(manifest: &Manifest, mut out: impl Write) -> std::io::Result<()> {
    let json = serde_json::to_vec(manifest)?;
    writeln!(out, "{}", json.len())?;
    out.write_all(&json)
}

/// Reads what [`write_framed_manifest`] wrote.
pub fn read_framed_manifest(mut input: impl BufRead) -> std::io::Result<Manifest> {
    let mut header = String::new();
    input.read_line(&mut header)?;
    let len: u64 = header
        .trim()
        .parse()
        .map_err(|_| invalid(format!("bad manifest length `{}`", header.trim())))?;
    let mut json = Vec::new();
    input.take(len).read_to_end(&mut json)?;
    if json.len() as u64 != len {
        return Err(invalid("the manifest was cut short"));
    }
    Ok(serde_json::from_slice(&json)?)
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{:08x}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
