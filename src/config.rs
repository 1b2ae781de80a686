//! kb's two configuration files.
//!
//! - The project's `kb.toml`, at the top of the project directory and meant to be committed with it: what
//!   `kb setup` chose (image, share, namespace). `kb parallel` and `kb shell` find it by walking up from the
//!   working directory, like git finds `.git`, and use it for what the command line does not say.
//! - The user's `$XDG_CONFIG_HOME/kb/config.toml` (`~/.config/kb/config.toml`): what is the same for every project
//!   of this user, the registry prefix images are pushed to.
//!
//! Both carry `version = 1`; a file of a newer version is refused with what to do rather than misread. Both are
//! written whole to a temporary file beside the target and renamed over it, so a failure never leaves half a file.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The project config's file name.
pub const PROJECT_FILE: &str = "kb.toml";
/// The version of both files this kb writes and reads.
pub const VERSION: u32 = 1;

/// A configuration file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing failed.
    #[error("cannot {action} `{path}`")]
    Io {
        /// What kb was doing (`read`, `write`).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("`{path}` is not a valid kb config file")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        #[source]
        source: toml::de::Error,
    },
    /// The file was written by a newer kb.
    #[error("`{path}` has version {found}; this kb reads version {VERSION}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version it declares.
        found: u32,
    },
}

impl Error {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Parse { .. } => {
                Some("fix the file by hand, or delete it and run `kb setup` again".into())
            }
            Error::Version { .. } => {
                Some("upgrade kb, or run `kb setup` again to rewrite the file".into())
            }
            Error::Io { .. } => None,
        }
    }
}

/// A result with a config [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the project directory reaches the pods (issue [share] brings the mechanisms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Share {
    /// Files are read from the laptop when a job reads them, through the share server.
    Lazy,
    /// The directory is uploaded before the run.
    Eager,
    /// Uploaded before the run, and files the jobs wrote come back after it.
    Syncback,
    /// The directory is not shared; jobs see only the image.
    None,
}

impl Share {
    /// The name used in the file and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Share::Lazy => "lazy",
            Share::Eager => "eager",
            Share::Syncback => "syncback",
            Share::None => "none",
        }
    }
}

/// How worker pods mount a lazy share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LazyMount {
    /// A FUSE mount inside each pod (kb's `kb.dev/fuse` device, from the `kb-fuse` DaemonSet, and `SYS_ADMIN`).
    Fuse,
    /// A kubelet NFS volume served by the share server (the nodes must mount NFS; the pods need no capability).
    Nfs,
}

impl LazyMount {
    /// The name used in the file and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            LazyMount::Fuse => "fuse",
            LazyMount::Nfs => "nfs",
        }
    }
}

/// The project's `kb.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// The file's format version.
    pub version: u32,
    /// The image `kb setup` pushed, used by `kb parallel` and `kb shell` when `--image` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The image `kb setup` started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<String>,
    /// How the directory reaches the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<Share>,
    /// How pods mount the lazy share; unset, kb finds out on each run (see `--lazy-mount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lazy_mount: Option<LazyMount>,
    /// The namespace tasks run in when `--namespace` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The default `--orphan-timeout` (a duration such as `10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphan_timeout: Option<String>,
    /// The default `--max-runtime` (a duration such as `24h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_runtime: Option<String>,
}

/// The user's `config.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The file's format version.
    pub version: u32,
    /// Where `kb setup` pushes images: a registry and repository prefix (`registry.example.com/team/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_prefix: Option<String>,
}

/// A config file found on disk, and where.
#[derive(Debug, Clone)]
pub struct Found<T> {
    /// Its path.
    pub path: PathBuf,
    /// Its content.
    pub config: T,
}

/// The `kb.toml` of the project containing `dir`: in `dir` or the nearest parent that has one.
pub fn find_project(dir: &Path) -> Result<Option<Found<ProjectConfig>>> {
    for candidate in dir.ancestors() {
        let path = candidate.join(PROJECT_FILE);
        if path.is_file() {
            let config = read::<ProjectConfig>(&path, |c| c.version)?;
            return Ok(Some(Found { path, config }));
        }
    }
    Ok(None)
}

/// The project config of the working directory, or an empty one; errors are reported and the file ignored is
/// worse than refusing, so they are returned.
pub fn current_project() -> Result<Option<Found<ProjectConfig>>> {
    match std::env::current_dir() {
        Ok(dir) => find_project(&dir),
        Err(_) => Ok(None),
    }
}

/// Where the user's config lives: `$KB_CONFIG_DIR/config.toml`, else `$XDG_CONFIG_HOME/kb/config.toml`, else
/// `~/.config/kb/config.toml`.
pub fn user_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("KB_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.toml"));
    }
    dirs::config_dir().map(|d| d.join("kb").join("config.toml"))
}

/// The user's config, or the default when there is none.
pub fn user_config() -> Result<UserConfig> {
    match user_config_path() {
        Some(path) if path.is_file() => read::<UserConfig>(&path, |c| c.version),
        _ => Ok(UserConfig {
            version: VERSION,
            ..Default::default()
        }),
    }
}

fn read<T: for<'de> Deserialize<'de>>(path: &Path, version: impl Fn(&T) -> u32) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })?;
    // The version first, so a newer file with fields this kb does not know says so instead of failing to parse.
    #[derive(Deserialize)]
    struct Versioned {
        version: Option<u32>,
    }
    if let Ok(Versioned {
        version: Some(found),
    }) = toml::from_str::<Versioned>(&text)
        && found > VERSION
    {
        return Err(Error::Version {
            path: path.to_owned(),
            found,
        });
    }
    let config: T = toml::from_str(&text).map_err(|source| Error::Parse {
        path: path.to_owned(),
        source,
    })?;
    let found = version(&config);
    if found != VERSION {
        return Err(Error::Version {
            path: path.to_owned(),
            found,
        });
    }
    Ok(config)
}

/// Writes `config` to `path` atomically (a temporary file in the same directory, then a rename), with `header` as
/// a leading comment.
pub fn write<T: Serialize>(path: &Path, header: &str, config: &T) -> Result<()> {
    let io = |source| Error::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    let body = toml::to_string(config).map_err(|e| io(std::io::Error::other(e)))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut tmp = tempfile_in(dir).map_err(io)?;
    let text = format!("{header}{body}");
    tmp.1.write_all(text.as_bytes()).map_err(io)?;
    tmp.1.sync_all().map_err(io)?;
    drop(tmp.1);
    std::fs::rename(&tmp.0, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp.0);
        io(e)
    })
}

/// A new file `.kb.toml.<random>` in `dir`, created exclusively.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    for _ in 0..16 {
        let path = dir.join(format!(".kb.toml.{:08x}", rand::random::<u32>()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
    Err(std::io::Error::other("cannot create a temporary file"))
}

/// The header written above the project config.
pub const PROJECT_HEADER: &str = "# kb's project settings, written by `kb setup`; commit this file with the project.\n\
# `kb parallel` and `kb shell` use these when the command line does not say otherwise.\n";

/// The header written above the user config.
pub const USER_HEADER: &str = "# kb's settings for this user, written by `kb setup`.\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_config_round_trips_and_is_found_from_a_subdirectory() {
        let dir = tempfile::tempdir().unwrap();
        let config = ProjectConfig {
            version: VERSION,
            image: Some("127.0.0.1:5000/kb-demo-abc123".into()),
            base_image: Some("debian:bookworm".into()),
            share: Some(Share::Syncback),
            lazy_mount: Some(LazyMount::Nfs),
            namespace: Some("kb".into()),
            orphan_timeout: None,
            max_runtime: Some("2h".into()),
        };
        let path = dir.path().join(PROJECT_FILE);
        write(&path, PROJECT_HEADER, &config).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# kb's project settings"), "{text}");
        assert!(text.contains("share = \"syncback\""), "{text}");
        assert!(!text.contains("orphan_timeout"), "{text}");
        let sub = dir.path().join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        let found = find_project(&sub).unwrap().unwrap();
        assert_eq!(found.path, path);
        assert_eq!(found.config, config);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".kb.toml."))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn a_newer_or_broken_file_is_refused_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PROJECT_FILE);
        std::fs::write(&path, "version = 2\nsomething_new = true\n").unwrap();
        let err = find_project(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Version { found: 2, .. }), "{err:?}");
        assert!(err.hint().unwrap().contains("upgrade kb"));
        std::fs::write(&path, "version = 1\nshare = \"sometimes\"\n").unwrap();
        let err = find_project(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Parse { .. }), "{err:?}");
        std::fs::write(&path, "image = \"x\"\n").unwrap();
        assert!(matches!(
            find_project(dir.path()).unwrap_err(),
            Error::Parse { .. }
        ));
    }

    #[test]
    fn no_file_means_no_project() {
        let dir = tempfile::tempdir().unwrap();
        // A tempdir's parents have no kb.toml on a sane machine; the walk stops at `/`.
        assert!(
            find_project(dir.path()).unwrap().is_none()
                || std::path::Path::new("/tmp/kb.toml").exists()
        );
    }
}
