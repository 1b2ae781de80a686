//! What a pod of a task is doing, read from its status: the pure part of watching pods, so that the rules for
//! "ready", "pulling", "cannot pull" and "cannot be scheduled" are tested without a cluster.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// Waiting reasons that mean the image will not arrive without a change on the user's side.
const PULL_ERRORS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];
/// Waiting reasons that mean the container cannot be created as specified.
const CREATE_ERRORS: &[&str] = &[
    "CreateContainerError",
    "CreateContainerConfigError",
    "RunContainerError",
];

/// The state of one pod, as far as kb cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    /// Not yet placed on a node.
    Pending,
    /// The scheduler cannot place it; the scheduler's message.
    Unschedulable(String),
    /// Placed on a node, images being pulled or containers starting.
    Starting,
    /// An image cannot be pulled.
    PullFailed {
        /// The image.
        image: String,
        /// The kubelet's reason and message.
        message: String,
    },
    /// The agent listens: the pod can join.
    Ready,
    /// The pod ended or its containers cannot start; why.
    Failed(String),
    /// Being deleted.
    Deleting,
}

impl PodState {
    /// True when the pod was placed on a node (for the progress display).
    pub fn scheduled(&self) -> bool {
        matches!(
            self,
            PodState::Starting | PodState::Ready | PodState::PullFailed { .. }
        )
    }
}

/// Reads the state of `pod`.
pub fn observe(pod: &Pod) -> PodState {
    if pod.metadata.deletion_timestamp.is_some() {
        return PodState::Deleting;
    }
    let Some(status) = &pod.status else {
        return PodState::Pending;
    };
    let statuses = || {
        status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten())
    };
    if matches!(status.phase.as_deref(), Some("Failed" | "Succeeded")) {
        let why = statuses()
            .find_map(terminated)
            .or_else(|| status.message.clone());
        return PodState::Failed(why.unwrap_or_else(|| "the pod ended".into()));
    }
    for container in statuses() {
        let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = waiting.reason.as_deref().unwrap_or_default();
        let message = waiting.message.clone().unwrap_or_default();
        if PULL_ERRORS.contains(&reason) {
            let message = if message.is_empty() {
                reason.to_string()
            } else {
                format!("{reason}: {message}")
            };
            return PodState::PullFailed {
                image: container.image.clone(),
                message,
            };
        }
        if CREATE_ERRORS.contains(&reason) {
            return PodState::Failed(format!(
                "container `{}`: {reason}: {message}",
                container.name
            ));
        }
    }
    let condition = |kind: &str| status.conditions.iter().flatten().find(|c| c.type_ == kind);
    if condition("Ready").is_some_and(|c| c.status == "True") {
        return PodState::Ready;
    }
    match condition("PodScheduled") {
        Some(c) if c.status == "True" => PodState::Starting,
        Some(c) if c.reason.as_deref() == Some("Unschedulable") => {
            PodState::Unschedulable(c.message.clone().unwrap_or_else(|| "no node fits".into()))
        }
        _ => PodState::Pending,
    }
}

fn terminated(container: &ContainerStatus) -> Option<String> {
    let t = container.state.as_ref()?.terminated.as_ref()?;
    let mut why = format!("container `{}` exited with {}", container.name, t.exit_code);
    if let Some(reason) = &t.reason {
        why.push_str(&format!(" ({reason})"));
    }
    if let Some(message) = t.message.as_ref().filter(|m| !m.trim().is_empty()) {
        why.push_str(&format!(": {}", message.trim()));
    }
    Some(why)
}

/// How many pods are in each stage, for the progress display.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Placed on a node.
    pub scheduled: usize,
    /// Placed, not yet ready (pulling images, starting).
    pub starting: usize,
    /// Ready.
    pub ready: usize,
    /// Cannot start.
    pub failed: usize,
}

/// Counts the states of a task's pods.
pub fn count<'a>(states: impl IntoIterator<Item = &'a PodState>) -> Counts {
    let mut counts = Counts::default();
    for state in states {
        counts.scheduled += usize::from(state.scheduled());
        match state {
            PodState::Starting => counts.starting += 1,
            PodState::Ready => counts.ready += 1,
            PodState::PullFailed { .. } | PodState::Failed(_) | PodState::Unschedulable(_) => {
                counts.failed += 1
            }
            PodState::Pending | PodState::Deleting => {}
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn states_from_status() {
        assert_eq!(observe(&pod(serde_json::json!({}))), PodState::Pending);
        let unschedulable = pod(
            serde_json::json!({"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/1 nodes are available: 1 Insufficient cpu."}]}}),
        );
        assert_eq!(
            observe(&unschedulable),
            PodState::Unschedulable("0/1 nodes are available: 1 Insufficient cpu.".into())
        );
        let pulling = pod(
            serde_json::json!({"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "True"}],
            "initContainerStatuses": [{"name": "kb-install", "image": "a", "imageID": "", "ready": false,
              "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]}}),
        );
        assert_eq!(observe(&pulling), PodState::Starting);
        let ready = pod(
            serde_json::json!({"status": {"phase": "Running", "conditions": [
            {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]}}),
        );
        assert_eq!(observe(&ready), PodState::Ready);
    }

    #[test]
    fn pull_errors_name_the_image() {
        let p = pod(
            serde_json::json!({"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": "main", "image": "nope:1", "imageID": "", "ready": false,
              "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff",
              "message": "Back-off pulling image \"nope:1\""}}}]}}),
        );
        let PodState::PullFailed { image, message } = observe(&p) else {
            panic!("{:?}", observe(&p))
        };
        assert_eq!(image, "nope:1");
        assert!(
            message.starts_with("ImagePullBackOff: Back-off"),
            "{message}"
        );
    }

    #[test]
    fn failed_pod_says_which_container_and_why() {
        let p = pod(serde_json::json!({"status": {"phase": "Failed",
            "containerStatuses": [{"name": "main", "image": "x", "imageID": "", "ready": false,
              "restartCount": 0, "state": {"terminated": {"exitCode": 127, "reason": "Error"}}}]}}));
        assert_eq!(
            observe(&p),
            PodState::Failed("container `main` exited with 127 (Error)".into())
        );
    }

    #[test]
    fn counts() {
        let states = [
            PodState::Ready,
            PodState::Starting,
            PodState::Pending,
            PodState::Unschedulable("x".into()),
        ];
        assert_eq!(
            count(&states),
            Counts {
                scheduled: 2,
                starting: 1,
                ready: 1,
                failed: 1
            }
        );
    }
}
