//! The local Docker engine, through bollard: connecting with a check that it answers, making sure an image is
//! there (pulling it when not), registry credentials from `~/.docker/config.json`, and pushing with a progress bar.
//! `kb setup` is the only user.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{CreateImageOptionsBuilder, PushImageOptionsBuilder};
use futures::StreamExt;

/// How long the engine has to answer the first ping.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// A Docker failure, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine does not answer.
    #[error("cannot reach the Docker engine at {host}")]
    Unreachable {
        /// Where kb looked (`DOCKER_HOST` or the local socket).
        host: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An image is neither local nor pullable.
    #[error("the image `{image}` is not on this machine and cannot be pulled")]
    ImageMissing {
        /// The image.
        image: String,
        /// The engine's answer.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The registry refused the push or could not be reached.
    #[error("cannot push `{image}`: {message}")]
    Push {
        /// The image.
        image: String,
        /// The engine's or registry's message.
        message: String,
    },
    /// Any other call failed.
    #[error("Docker could not {action}")]
    Call {
        /// What kb asked for.
        action: String,
        /// The engine's answer.
        #[source]
        source: bollard::errors::Error,
    },
}

impl Error {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Error::Unreachable { .. } => "start Docker (`sudo systemctl start docker`, or Docker Desktop), check that \
                                          you may use it (`docker info`), or point DOCKER_HOST at a running engine"
                .into(),
            Error::ImageMissing { .. } => "check the name with `docker images`, pull or build it, or choose another \
                                           with --base-image"
                .into(),
            Error::Push { message, .. } if message.contains("no space") => {
                "free disk space for Docker (`docker system df`, `docker image prune`) and run kb setup again".into()
            }
            Error::Push { .. } => "check the prefix (--image-prefix), that the registry is up, and that \
                                   `docker login REGISTRY` has been done if it needs credentials; the image is kept \
                                   locally until then"
                .into(),
            Error::Call { source, .. } if source.to_string().contains("no space left") => {
                "free disk space for Docker (`docker system df`, `docker image prune`)".into()
            }
            Error::Call { .. } => return None,
        })
    }
}

/// A result with a Docker [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps a failed call.
pub fn call(action: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> Error {
    let action = action.into();
    move |source| Error::Call { action, source }
}

/// Connects to the engine named by `DOCKER_HOST`, else the local socket, and checks that it answers.
pub async fn connect() -> Result<Docker> {
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let unreachable = |source: Box<dyn std::error::Error + Send + Sync>| Error::Unreachable {
        host: host.clone(),
        source,
    };
    let docker = Docker::connect_with_local_defaults().map_err(|e| unreachable(Box::new(e)))?;
    match tokio::time::timeout(PING_TIMEOUT, docker.ping()).await {
        Ok(Ok(_)) => Ok(docker),
        Ok(Err(err)) => Err(unreachable(Box::new(err))),
        Err(_) => Err(unreachable(
            format!("no answer within {} s", PING_TIMEOUT.as_secs()).into(),
        )),
    }
}

/// Makes sure `image` is on this machine, pulling it (with the user's credentials) when it is not.
pub async fn ensure_image(docker: &Docker, image: &str) -> Result<()> {
    if docker.inspect_image(image).await.is_ok() {
        return Ok(());
    }
    let options = CreateImageOptionsBuilder::default()
        .from_image(image)
        .build();
    let mut pull = docker.create_image(Some(options), None, credentials_for(image));
    while let Some(event) = pull.next().await {
        match event {
            Ok(info) => {
                if let Some(detail) = info.error_detail {
                    return Err(Error::ImageMissing {
                        image: image.into(),
                        source: detail.message.unwrap_or_default().into(),
                    });
                }
            }
            Err(err) => {
                return Err(Error::ImageMissing {
                    image: image.into(),
                    source: Box::new(err),
                });
            }
        }
    }
    docker
        .inspect_image(image)
        .await
        .map(|_| ())
        .map_err(|e| Error::ImageMissing {
            image: image.into(),
            source: Box::new(e),
        })
}

/// Pushes `image` (`repo[:tag]`), drawing a progress bar on stderr when it is a terminal.
pub async fn push(docker: &Docker, image: &str) -> Result<()> {
    let (repo, tag) = split_tag(image);
    let options = PushImageOptionsBuilder::default().tag(tag).build();
    let bar = push_bar(image);
    // The engine reports progress per layer without naming it here; a layer's total size tells them apart well
    // enough for a bar.
    let mut layers: HashMap<i64, i64> = HashMap::new();
    let mut stream = docker.push_image(repo, Some(options), credentials_for(image));
    let failed = |message: String| Error::Push {
        image: image.into(),
        message,
    };
    while let Some(event) = stream.next().await {
        let info = event.map_err(|e| failed(crate::error::chain(&e)))?;
        if let Some(detail) = info.error_detail {
            bar.abandon();
            return Err(failed(
                detail
                    .message
                    .unwrap_or_else(|| "the registry refused it".into()),
            ));
        }
        if let Some(progress) = info.progress_detail
            && let (Some(current), Some(total)) = (progress.current, progress.total)
            && total > 0
        {
            layers.insert(total, current.min(total));
            bar.set_length(layers.keys().sum::<i64>().max(0) as u64);
            bar.set_position(layers.values().sum::<i64>().max(0) as u64);
        }
        if let Some(status) = info.status {
            bar.set_message(status);
        }
    }
    bar.finish_and_clear();
    Ok(())
}

fn push_bar(image: &str) -> indicatif::ProgressBar {
    let bar =
        indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "pushing {prefix} [{bar:30}] {bytes}/{total_bytes} {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(image.to_string());
    bar
}

/// `repo:tag` → (`repo`, `tag`); a `:` inside the registry's host:port is not a tag.
pub fn split_tag(image: &str) -> (&str, &str) {
    match image.rfind(':') {
        Some(i) if !image[i + 1..].contains('/') => (&image[..i], &image[i + 1..]),
        _ => (image, "latest"),
    }
}

/// The registry host of an image reference (`docker.io` when the first part is not a host).
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// The credentials `docker login` stored for the image's registry in `~/.docker/config.json` (`auths.*.auth`),
/// if any. Credential helpers (`credsStore`) are not consulted.
pub fn credentials_for(image: &str) -> Option<DockerCredentials> {
    let path = docker_config_path()?;
    let text = std::fs::read_to_string(path).ok()?;
    credentials_in(&text, registry_of(image))
}

fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    dirs::home_dir().map(|h| h.join(".docker/config.json"))
}

fn credentials_in(config: &str, registry: &str) -> Option<DockerCredentials> {
    let json: serde_json::Value = serde_json::from_str(config).ok()?;
    let auths = json.get("auths")?.as_object()?;
    let keys: Vec<String> = if registry == "docker.io" {
        vec![
            "https://index.docker.io/v1/".into(),
            "docker.io".into(),
            "index.docker.io".into(),
        ]
    } else {
        vec![
            registry.into(),
            format!("https://{registry}"),
            format!("http://{registry}"),
        ]
    };
    let entry = keys.iter().find_map(|k| auths.get(k))?;
    let auth = entry.get("auth")?.as_str()?;
    let decoded = data_encoding::BASE64.decode(auth.as_bytes()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (username, password) = decoded.split_once(':')?;
    Some(DockerCredentials {
        username: Some(username.into()),
        password: Some(password.into()),
        serveraddress: Some(registry.into()),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_registries_are_read_like_docker_does() {
        assert_eq!(
            split_tag("127.0.0.1:5000/kb-x-1"),
            ("127.0.0.1:5000/kb-x-1", "latest")
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/kb/x:2"),
            ("127.0.0.1:5000/kb/x", "2")
        );
        assert_eq!(split_tag("debian"), ("debian", "latest"));
        assert_eq!(registry_of("127.0.0.1:5000/kb/x:2"), "127.0.0.1:5000");
        assert_eq!(registry_of("ghcr.io/a/b"), "ghcr.io");
        assert_eq!(registry_of("library/debian"), "docker.io");
        assert_eq!(registry_of("debian:bookworm"), "docker.io");
        assert_eq!(registry_of("localhost/x"), "localhost");
    }

    #[test]
    fn credentials_come_from_docker_login_entries() {
        let config = r#"{"auths":{"127.0.0.1:5000":{"auth":"dXNlcjpwYTpzcw=="},
            "https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="}}}"#;
        let local = credentials_in(config, "127.0.0.1:5000").unwrap();
        assert_eq!(local.username.as_deref(), Some("user"));
        assert_eq!(local.password.as_deref(), Some("pa:ss"));
        let hub = credentials_in(config, "docker.io").unwrap();
        assert_eq!(hub.username.as_deref(), Some("hub"));
        assert!(credentials_in(config, "ghcr.io").is_none());
        assert!(credentials_in("not json", "ghcr.io").is_none());
    }
}
