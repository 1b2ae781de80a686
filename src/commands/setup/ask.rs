//! `kb setup`'s questions: each choice from its flag, else from the user on the terminal, else its default.

use std::io::{BufRead, Write};
use std::path::Path;

use super::args::SetupOpts;
use super::run::DEFAULT_BASE_IMAGE;
use crate::commands::error::{Error, Result};
use crate::config::{ProjectConfig, Share, UserConfig};

/// What the user chose.
#[derive(Debug, Clone)]
pub(super) struct Answers {
    pub(super) share: Share,
    pub(super) base_image: String,
    pub(super) prefix: String,
    pub(super) namespace: String,
}

/// Each choice from its flag, else asked (the project's or the user's earlier choice as the default), else the
/// default with `--yes`.
pub(super) fn ask_all(
    opts: &SetupOpts,
    existing: &Option<ProjectConfig>,
    user: &UserConfig,
) -> Result<Answers> {
    let ask = !opts.yes;
    let share = match opts.share {
        Some(share) => share,
        None => {
            let default = existing
                .as_ref()
                .and_then(|c| c.share)
                .unwrap_or(Share::Eager);
            if ask { ask_share(default)? } else { default }
        }
    };
    let base_default = existing
        .as_ref()
        .and_then(|c| c.base_image.clone())
        .unwrap_or_else(|| DEFAULT_BASE_IMAGE.into());
    let base_image = answer(
        ask,
        opts.base_image.clone(),
        "The image the shell starts from (it needs /bin/sh; kb's agent is added to pods by kb)",
        Some(base_default),
    )?;
    let prefix_default = user.image_prefix.clone().or_else(|| {
        std::env::var("KB_REGISTRY")
            .ok()
            .filter(|r| !r.is_empty())
            .map(|r| format!("{}/", r.trim_end_matches('/')))
    });
    let prefix = answer(
        ask,
        opts.image_prefix.clone(),
        "Where to push the image, a registry and path prefix the cluster can pull from (remembered for you)",
        prefix_default,
    )?;
    let prefix = normalize_prefix(&prefix)?;
    let namespace_default = existing
        .as_ref()
        .and_then(|c| c.namespace.clone())
        .unwrap_or_else(|| crate::k8s::manifests::DEFAULT_NAMESPACE.into());
    let namespace = answer(
        ask,
        opts.kube.namespace.clone(),
        "The namespace tasks of this project run in (`kb cluster-setup -n NS` prepares one)",
        Some(namespace_default),
    )?;
    Ok(Answers {
        share,
        base_image,
        prefix,
        namespace,
    })
}

/// Asks how the pods should see this directory, explaining each way.
pub(super) fn ask_share(default: Share) -> Result<Share> {
    eprintln!(
        "How should the pods see this directory?\n  \
         lazy      files are read from this machine when a job opens them (not in this version yet: uploads as \
         eager does)\n  \
         eager     the directory is uploaded before each run (only what changed): jobs read at cluster speed\n  \
         syncback  eager, and files the jobs write come back here after the run\n  \
         none      jobs see only the image"
    );
    loop {
        let line = prompt(&format!(
            "share [lazy/eager/syncback/none] ({}): ",
            default.name()
        ))?;
        if line.is_empty() {
            return Ok(default);
        }
        match <Share as clap::ValueEnum>::from_str(&line, true) {
            Ok(share) => return Ok(share),
            Err(_) => eprintln!("  please answer lazy, eager, syncback or none"),
        }
    }
}

/// The flag's value, else the answer to `question` (empty takes `default`), else `default` with `--yes`.
pub(super) fn answer(
    ask: bool,
    flag: Option<String>,
    question: &str,
    default: Option<String>,
) -> Result<String> {
    if let Some(value) = flag.filter(|v| !v.is_empty()) {
        return Ok(value);
    }
    if !ask {
        return default.ok_or_else(|| {
            Error::usage(
                format!("no answer for: {question}"),
                "give it as a flag (see `kb setup --help`)",
            )
        });
    }
    loop {
        let shown = default
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        let line = prompt(&format!("{question}{shown}: "))?;
        match (line.is_empty(), &default) {
            (false, _) => return Ok(line),
            (true, Some(d)) => return Ok(d.clone()),
            (true, None) => eprintln!("  an answer is needed"),
        }
    }
}

/// Shows `text` on stderr and reads one line from stdin; end of input stops setup as an interrupt would.
pub(super) fn prompt(text: &str) -> Result<String> {
    let mut err = std::io::stderr();
    let _ = write!(err, "{text}");
    let _ = err.flush();
    let mut line = String::new();
    let read = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|source| Error::Io {
            action: "read the answer".into(),
            source,
        })?;
    if read == 0 {
        return Err(Error::Interrupted);
    }
    Ok(line.trim().to_string())
}

/// `registry[/path]` with a trailing `/` (or `-`) so that `kb-<project>` can follow.
pub(super) fn normalize_prefix(prefix: &str) -> Result<String> {
    let prefix = prefix.trim();
    if prefix.is_empty() || prefix.contains(char::is_whitespace) || prefix.contains('@') {
        return Err(Error::usage(
            format!("`{prefix}` is not an image prefix"),
            "give a registry and path such as `registry.example.com/team/` or `127.0.0.1:5000/`",
        ));
    }
    if prefix.ends_with('/') || prefix.ends_with('-') {
        Ok(prefix.to_string())
    } else {
        Ok(format!("{prefix}/"))
    }
}

/// The project's name as it may appear in an image name: lowercase letters, digits and single dashes.
pub(super) fn project_name(dir: &Path) -> String {
    let raw = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut name = String::new();
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.ends_with('-') && !name.is_empty() {
            name.push('-');
        }
    }
    let name = name.trim_end_matches('-').to_string();
    if name.is_empty() {
        "project".into()
    } else {
        name
    }
}

/// Asks until the answer is yes or no.
pub(super) fn ask_yes_no(question: &str) -> Result<bool> {
    loop {
        let line = prompt(question)?.to_lowercase();
        match line.as_str() {
            "y" | "yes" => return Ok(true),
            "n" | "no" => return Ok(false),
            _ => eprintln!("  please answer y or n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn prefixes_and_project_names_make_valid_image_names() {
        assert_eq!(
            normalize_prefix("127.0.0.1:5000").unwrap(),
            "127.0.0.1:5000/"
        );
        assert_eq!(normalize_prefix("reg.io/team/").unwrap(), "reg.io/team/");
        assert_eq!(
            normalize_prefix("reg.io/team/x-").unwrap(),
            "reg.io/team/x-"
        );
        assert!(normalize_prefix("").is_err());
        assert!(normalize_prefix("a b").is_err());
        assert_eq!(
            project_name(Path::new("/home/u/My Project_2")),
            "my-project-2"
        );
        assert_eq!(project_name(Path::new("/")), "project");
        assert_eq!(project_name(Path::new("/x/--a--")), "a");
    }
}
