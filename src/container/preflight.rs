//! Everything a container task checks while nothing exists yet: the count, the working directory, the agent
//! binary, the Docker engine, the image, and the limits against the engine's CPUs.

use bollard::Docker;

use super::agent_binary::{AgentBinary, choose_agent_binary};
use super::error::{Error, Result};
use super::spec::check_workdir;
use super::task::Request;

/// Docker's smallest memory limit.
const MIN_MEMORY: u64 = 6 << 20;

/// What the checks found.
pub(crate) struct Checked {
    /// The engine, answering.
    pub docker: Docker,
    /// The binary that runs as the agent.
    pub agent: AgentBinary,
    /// Job slots per container.
    pub slots: usize,
}

/// Checks `request` and the engine; creates nothing. Cheap checks first, so bad input fails without Docker.
pub(crate) async fn preflight(request: &Request) -> Result<Checked> {
    if request.count == 0 {
        return Err(Error::NoContainers);
    }
    if let Some(reason) = check_workdir(&request.workdir) {
        return Err(Error::Workdir {
            path: request.workdir.clone(),
            reason,
        });
    }
    let agent = choose_agent_binary(request.agent_binary.as_deref())?;
    let docker = crate::docker::connect().await?;
    let info = docker
        .info()
        .await
        .map_err(crate::docker::call("describe the engine (`docker info`)"))?;
    agent.check_arch(info.architecture.as_deref())?;
    docker
        .inspect_image(&request.image)
        .await
        .map_err(|source| Error::ImageMissing {
            image: request.image.clone(),
            source,
        })?;
    let cpus = info
        .ncpu
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n > 0);
    check_limits(request, cpus)?;
    Ok(Checked {
        docker,
        agent,
        slots: choose_slots(request, cpus),
    })
}

/// `--cpu` at most the engine's CPUs (Docker refuses more), `--mem` at least Docker's minimum.
fn check_limits(request: &Request, cpus: Option<usize>) -> Result<()> {
    if let (Some(cpu), Some(cpus)) = (request.cpu, cpus)
        && cpu > cpus as f64
    {
        return Err(Error::BadLimit {
            what: "cpu",
            value: cpu.to_string(),
            reason: format!("the engine has {cpus} CPUs"),
        });
    }
    if let Some(mem) = request.mem
        && mem < MIN_MEMORY
    {
        return Err(Error::BadLimit {
            what: "mem",
            value: format!("{mem} bytes"),
            reason: "Docker needs at least 6 MiB".into(),
        });
    }
    Ok(())
}

/// Job slots per container, as GNU parallel's `-S` hosts: `-j`, else the CPUs the container may use (`--cpu`,
/// rounded up), else the CPUs it sees, which are the engine's.
fn choose_slots(request: &Request, engine_cpus: Option<usize>) -> usize {
    request
        .slots
        .or(request.cpu.map(|c| c.ceil() as usize))
        .or(engine_cpus)
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            count: 2,
            image: "debian:bookworm".into(),
            cpu: None,
            mem: None,
            slots: None,
            orphan_timeout: None,
            workdir: "/tmp/project".into(),
            command: "echo {}".into(),
            shown_limits: (None, None),
            agent_binary: None,
        }
    }

    #[test]
    fn slots_follow_dash_j_then_cpu_then_the_engine() {
        assert_eq!(choose_slots(&request(), Some(8)), 8);
        assert_eq!(choose_slots(&request(), None), 1);
        let cpu = Request {
            cpu: Some(1.5),
            ..request()
        };
        assert_eq!(choose_slots(&cpu, Some(8)), 2);
        let jobs = Request {
            slots: Some(3),
            ..cpu
        };
        assert_eq!(choose_slots(&jobs, Some(8)), 3);
        let zero = Request {
            slots: Some(0),
            ..request()
        };
        assert_eq!(choose_slots(&zero, Some(8)), 1);
    }

    #[test]
    fn limits_must_fit_the_engine() {
        let big = Request {
            cpu: Some(9.0),
            ..request()
        };
        assert!(matches!(
            check_limits(&big, Some(8)),
            Err(Error::BadLimit { what: "cpu", .. })
        ));
        assert!(check_limits(&big, None).is_ok());
        let tiny = Request {
            mem: Some(1 << 20),
            ..request()
        };
        assert!(matches!(
            check_limits(&tiny, Some(8)),
            Err(Error::BadLimit { what: "mem", .. })
        ));
        assert!(check_limits(&request(), Some(8)).is_ok());
    }

    #[tokio::test]
    async fn bad_input_fails_before_docker_is_asked() {
        let none = Request {
            count: 0,
            ..request()
        };
        assert!(matches!(preflight(&none).await, Err(Error::NoContainers)));
        let root = Request {
            workdir: "/".into(),
            ..request()
        };
        assert!(matches!(preflight(&root).await, Err(Error::Workdir { .. })));
        // The test binary is dynamically linked: refused before Docker is contacted.
        assert!(matches!(
            preflight(&request()).await,
            Err(Error::AgentUnfit {
                current_exe: true,
                ..
            })
        ));
    }
}
