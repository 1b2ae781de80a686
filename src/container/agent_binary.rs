//! Which kb binary runs as the agent in the containers: `--agent-binary FILE` (`KB_AGENT_BINARY`), else the running
//! kb when it is a static Linux binary. A static binary runs in any image, glibc, musl or none; a dynamic one would
//! need the image to hold the same loader and libraries as this machine, which nothing guarantees. The check reads
//! the ELF header and program headers itself (a dynamic binary names its loader in a `PT_INTERP` header).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::error::{Error, Result};

/// `PT_INTERP`: the program header of a dynamically linked binary that names its loader.
const PT_INTERP: u32 = 3;
/// A 64-bit ELF header's size; the program header table's offset and size are inside it.
const EHDR_LEN: usize = 64;
/// More than any real binary's program header table: a larger one is not trusted.
const MAX_PHDRS_END: u64 = 1 << 20;

/// What the ELF headers of a Linux executable say, as far as running it in a container goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ElfFacts {
    /// `e_machine`: the architecture.
    pub machine: u16,
}

/// A kb binary fit to be the containers' agent: static, 64-bit, for the architecture in `machine`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentBinary {
    /// The file, mounted read-only at `/kb/kb`.
    pub path: PathBuf,
    /// `e_machine`: the architecture it is built for.
    machine: u16,
    /// It is the running kb (no `--agent-binary` given).
    current_exe: bool,
}

/// The agent binary to mount into the containers: `given` (the flag or `KB_AGENT_BINARY`), else the running kb,
/// checked to be a static 64-bit Linux executable.
pub fn choose_agent_binary(given: Option<&Path>) -> Result<AgentBinary> {
    let (path, current_exe) = match given {
        Some(path) => (path.to_path_buf(), false),
        None => {
            let exe = std::env::current_exe().map_err(|source| Error::AgentUnreadable {
                path: "/proc/self/exe".into(),
                source,
            })?;
            (exe, true)
        }
    };
    let bytes = read_headers(&path).map_err(|source| Error::AgentUnreadable {
        path: path.clone(),
        source,
    })?;
    match check_elf(&bytes) {
        Ok(facts) => Ok(AgentBinary {
            path,
            machine: facts.machine,
            current_exe,
        }),
        Err(reason) => Err(Error::AgentUnfit {
            path,
            reason: reason.into(),
            current_exe,
        }),
    }
}

impl AgentBinary {
    /// Fails when the binary is built for another architecture than the engine's (`uname -m`, as `docker info`
    /// says it); an architecture kb does not know passes.
    pub fn check_arch(&self, engine_arch: Option<&str>) -> Result<()> {
        match (engine_arch, machine_name(self.machine)) {
            (Some(arch), Some(ours)) if arch != ours => Err(Error::AgentUnfit {
                path: self.path.clone(),
                reason: format!("it is built for {ours}, and the Docker engine runs {arch}"),
                current_exe: self.current_exe,
            }),
            _ => Ok(()),
        }
    }
}

/// Reads the ELF header and the program header table (all that [`check_elf`] looks at).
fn read_headers(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let mut bytes = vec![0; EHDR_LEN];
    let read = read_up_to(&mut file, &mut bytes)?;
    bytes.truncate(read);
    let end = match phdrs_range(&bytes) {
        Some((offset, len)) => offset.saturating_add(len).min(MAX_PHDRS_END),
        None => return Ok(bytes),
    };
    let mut all = vec![0; usize::try_from(end).unwrap_or(EHDR_LEN)];
    file.seek(SeekFrom::Start(0))?;
    let read = read_up_to(&mut file, &mut all)?;
    all.truncate(read);
    Ok(all)
}

fn read_up_to(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read(&mut buf[done..])? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

/// Checks that `bytes` (the file's start) is a static 64-bit little-endian ELF executable.
pub(crate) fn check_elf(bytes: &[u8]) -> Result<ElfFacts, &'static str> {
    if bytes.len() < EHDR_LEN || &bytes[..4] != b"\x7fELF" {
        return Err("it is not an ELF executable (Linux)");
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err("it is not a 64-bit little-endian ELF executable");
    }
    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    let (offset, len) = phdrs_range(bytes).ok_or("its program headers cannot be read")?;
    let entry = usize::from(u16::from_le_bytes([bytes[54], bytes[55]]));
    let table = usize::try_from(offset)
        .ok()
        .zip(usize::try_from(len).ok())
        .and_then(|(start, len)| bytes.get(start..start.checked_add(len)?))
        .ok_or("its program headers are cut off")?;
    if entry < 4 {
        return Err("its program headers cannot be read");
    }
    let dynamic = table.chunks_exact(entry).any(|header| {
        u32::from_le_bytes([header[0], header[1], header[2], header[3]]) == PT_INTERP
    });
    if dynamic {
        return Err(
            "it is dynamically linked (it names a loader in PT_INTERP), so it runs only in images with \
                    this machine's libraries",
        );
    }
    Ok(ElfFacts { machine })
}

/// Where the program header table is (`e_phoff`, `e_phentsize * e_phnum`), from a 64-bit ELF header.
fn phdrs_range(header: &[u8]) -> Option<(u64, u64)> {
    let field = |at: usize, len: usize| header.get(at..at + len);
    let offset = u64::from_le_bytes(field(32, 8)?.try_into().ok()?);
    let entry = u16::from_le_bytes(field(54, 2)?.try_into().ok()?);
    let count = u16::from_le_bytes(field(56, 2)?.try_into().ok()?);
    Some((offset, u64::from(entry) * u64::from(count)))
}

/// The architecture as Docker's `info` names it (`uname -m`), for the `e_machine` values kb can be built for.
fn machine_name(machine: u16) -> Option<&'static str> {
    Some(match machine {
        62 => "x86_64",
        183 => "aarch64",
        243 => "riscv64",
        21 => "ppc64le",
        22 => "s390x",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal 64-bit ELF image: the header, then `types.len()` program headers of 56 bytes.
    fn elf(machine: u16, types: &[u32]) -> Vec<u8> {
        let mut bytes = vec![0u8; EHDR_LEN];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2;
        bytes[5] = 1;
        bytes[18..20].copy_from_slice(&machine.to_le_bytes());
        bytes[32..40].copy_from_slice(&(EHDR_LEN as u64).to_le_bytes());
        bytes[54..56].copy_from_slice(&56u16.to_le_bytes());
        bytes[56..58].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for ty in types {
            let mut header = vec![0u8; 56];
            header[..4].copy_from_slice(&ty.to_le_bytes());
            bytes.extend(header);
        }
        bytes
    }

    #[test]
    fn static_and_dynamic_binaries_are_told_apart() {
        assert_eq!(
            check_elf(&elf(62, &[1, 1, 4])),
            Ok(ElfFacts { machine: 62 })
        );
        assert!(
            check_elf(&elf(62, &[6, PT_INTERP, 1]))
                .unwrap_err()
                .contains("dynamically linked")
        );
    }

    #[test]
    fn other_files_are_refused_with_the_reason() {
        assert!(
            check_elf(b"#!/bin/sh\necho hi\n")
                .unwrap_err()
                .contains("not an ELF")
        );
        let mut bits32 = elf(62, &[1]);
        bits32[4] = 1;
        assert!(check_elf(&bits32).unwrap_err().contains("64-bit"));
        let cut = elf(62, &[1, 1]);
        assert!(
            check_elf(&cut[..cut.len() - 10])
                .unwrap_err()
                .contains("cut off")
        );
    }

    #[test]
    fn the_engines_architecture_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kb");
        std::fs::write(&path, elf(183, &[1])).unwrap();
        let binary = choose_agent_binary(Some(&path)).unwrap();
        assert_eq!(binary.path, path);
        binary.check_arch(Some("aarch64")).unwrap();
        binary.check_arch(None).unwrap();
        binary.check_arch(Some("mips")).unwrap_err();
        let err = binary.check_arch(Some("x86_64")).unwrap_err();
        assert!(err.to_string().contains("cannot be kb's agent"), "{err}");
        assert!(
            matches!(err, Error::AgentUnfit { reason, current_exe: false, .. } if reason.contains("aarch64"))
        );
    }

    #[test]
    fn a_missing_file_and_a_dynamic_test_binary_are_refused() {
        let missing = choose_agent_binary(Some(Path::new("/nonexistent/kb")));
        assert!(matches!(missing, Err(Error::AgentUnreadable { .. })));
        // Test binaries are dynamically linked: the running executable is refused, with the build hint.
        let err = choose_agent_binary(None).unwrap_err();
        assert!(
            err.hint().unwrap().contains("scripts/build-static"),
            "{err:?}"
        );
    }
}
