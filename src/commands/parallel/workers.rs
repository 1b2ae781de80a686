//! The workers `kb parallel`'s options ask for: this machine's slots and the `--sshlogin` hosts, checked before
//! any of them is contacted.

use std::path::PathBuf;

use super::ParallelOpts;
use super::run::{cpu_count, jobs_here, local_slots};
use crate::commands::error::{Error, Result};
use crate::ssh::{ClientConfig, SshLogin};
use crate::worker::WorkerSource;
use crate::worker::local::LocalSource;
use crate::worker::ssh::SshSource;

/// The workers the options ask for; with none named, this machine.
pub(super) fn worker_sources(opts: &ParallelOpts) -> Result<Vec<Box<dyn WorkerSource>>> {
    let mut logins = Vec::new();
    let mut local = opts.local_procs;
    for file in &opts.sshloginfile {
        let text = std::fs::read_to_string(file).map_err(|source| Error::Io {
            action: format!("read the sshloginfile `{}`", file.display()),
            source,
        })?;
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            collect_login(line, opts, &mut logins, &mut local)?;
        }
    }
    for value in &opts.sshlogin {
        collect_login(value.trim(), opts, &mut logins, &mut local)?;
    }
    let remote = !logins.is_empty() || opts.pods.pods.is_some() || opts.containers.is_some();
    if local.is_none() && !remote {
        // No worker named: this machine, with `-j` slots (default: one per CPU), as GNU parallel.
        local = Some(local_slots(opts).unwrap_or_else(cpu_count));
    }
    let mut sources: Vec<Box<dyn WorkerSource>> = Vec::new();
    if let Some(n) = local {
        if n == 0 && opts.local_procs.is_none() {
            return Err(Error::usage(
                "cannot run any jobs: -j leaves no job slots on this machine",
                format!(
                    "this machine has {} CPUs; give -j N with N >= 1",
                    cpu_count()
                ),
            ));
        }
        if n == 0 {
            return Err(Error::usage(
                "--local-procs must be at least 1",
                "give --local-procs N with N >= 1",
            ));
        }
        sources.push(Box::new(LocalSource::new(n)));
    }
    if !logins.is_empty() {
        let config = ClientConfig {
            identities: opts.identity.clone(),
            ..ClientConfig::default()
        };
        check_identities(&opts.identity)?;
        sources.push(Box::new(SshSource::new(logins, config, opts.jobs)));
    }
    Ok(sources)
}

fn collect_login(
    value: &str,
    opts: &ParallelOpts,
    logins: &mut Vec<SshLogin>,
    local: &mut Option<usize>,
) -> Result<()> {
    if value.is_empty() {
        return Ok(());
    }
    let login: SshLogin = value.parse()?;
    if login.host == ":" || value == ":" {
        // GNU parallel's `-S :` is this machine.
        let slots = login
            .slots
            .or_else(|| jobs_here(opts))
            .unwrap_or_else(cpu_count);
        *local = Some(local.unwrap_or(0) + slots);
    } else {
        logins.push(login);
    }
    Ok(())
}

fn check_identities(paths: &[PathBuf]) -> Result<()> {
    for path in paths {
        if !path.is_file() {
            return Err(Error::usage(
                format!("identity file `{}` does not exist", path.display()),
                "give --identity the path of an SSH private key",
            ));
        }
    }
    Ok(())
}
