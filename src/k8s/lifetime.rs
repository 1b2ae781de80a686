//! How long a task's pods may live: `--orphan-timeout` (pods end themselves when no client has been connected for
//! that long) and `--max-runtime` (Kubernetes stops the task whatever happens). Resolution is flag, then the
//! caller's fallback (a project config), then kb's default, in one pure function.
//!
//! Why these defaults, for a cautious user who must not overspend:
//! - `--orphan-timeout 10m`: long enough to ride out what a live client goes through (a laptop changing networks,
//!   a VPN reconnecting, an API server restarted or upgraded, which managed clusters do in under a few minutes),
//!   short enough that a client that died costs at most ten minutes of its pods. `off` disables it.
//! - `--max-runtime 24h`: a hard bound on a forgotten task, even one whose client is alive (a stuck job, a laptop
//!   left running over the weekend), well above what an interactive batch run needs.

use std::time::Duration;

use super::error::{Error, Result};

/// Pods end themselves when no client has been connected to them for this long, unless told otherwise.
pub const DEFAULT_ORPHAN_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Kubernetes stops a task after this long, unless told otherwise.
pub const DEFAULT_MAX_RUNTIME: Duration = Duration::from_secs(24 * 3600);

/// The limits of one task's life, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Pods end themselves after this long without a connected client; `None` when turned off.
    pub orphan_timeout: Option<Duration>,
    /// Kubernetes stops the task after this long (the Job's `activeDeadlineSeconds`).
    pub max_runtime: Duration,
}

impl Default for Lifetime {
    fn default() -> Self {
        Lifetime {
            orphan_timeout: Some(DEFAULT_ORPHAN_TIMEOUT),
            max_runtime: DEFAULT_MAX_RUNTIME,
        }
    }
}

/// The values a caller supplies when a flag is not given (a project config); `None` falls back to kb's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LifetimeFallback {
    /// `--orphan-timeout` when the flag is absent; zero turns it off.
    pub orphan_timeout: Option<Duration>,
    /// `--max-runtime` when the flag is absent.
    pub max_runtime: Option<Duration>,
}

impl Lifetime {
    /// Resolves the limits: the flag (`--orphan-timeout`, `--max-runtime` as given), else `fallback`, else kb's
    /// default. A flag that is not a duration, or a zero duration, is an error naming the flag.
    pub fn resolve(
        orphan_timeout_flag: Option<&str>,
        max_runtime_flag: Option<&str>,
        fallback: LifetimeFallback,
    ) -> Result<Lifetime> {
        let orphan_timeout = match orphan_timeout_flag {
            Some(text) if is_off(text) => None,
            Some(text) => Some(parse_limit("--orphan-timeout", text)?),
            None => match fallback.orphan_timeout {
                Some(Duration::ZERO) => None,
                Some(timeout) => Some(timeout),
                None => Some(DEFAULT_ORPHAN_TIMEOUT),
            },
        };
        let max_runtime = match max_runtime_flag {
            Some(text) => parse_limit("--max-runtime", text)?,
            None => fallback.max_runtime.unwrap_or(DEFAULT_MAX_RUNTIME),
        };
        Ok(Lifetime {
            orphan_timeout,
            max_runtime,
        })
    }

    /// The line printed when a task starts: its id, both limits, and how to change them.
    pub fn announce(&self, task: &str, namespace: &str) -> String {
        let orphan = match self.orphan_timeout {
            Some(timeout) => format!(
                "its pods end {} after this client is gone",
                show_duration(timeout)
            ),
            None => "its pods do not end when this client is gone".into(),
        };
        format!(
            "kb: task {task} in namespace `{namespace}`: {orphan}, and after {} in any case \
             (change with --orphan-timeout, --max-runtime)",
            show_duration(self.max_runtime)
        )
    }
}

/// Why a task's Job stopped its pods for good, if it did: its `--max-runtime` passed (the Job's deadline), or the
/// Job failed for another reason (an orphaned agent, too many crashed pods). Read from the Job's `FailureTarget` or
/// `Failed` condition, whichever comes first.
pub fn build_stop_reason(
    job: &k8s_openapi::api::batch::v1::Job,
    id: &str,
    max_runtime: Duration,
) -> Option<String> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let failed = conditions
        .iter()
        .find(|c| (c.type_ == "FailureTarget" || c.type_ == "Failed") && c.status == "True")?;
    Some(match failed.reason.as_deref() {
        Some("DeadlineExceeded") => format!(
            "task {id} reached its max runtime of {} (--max-runtime): Kubernetes stopped its pods",
            show_duration(max_runtime)
        ),
        reason => format!(
            "task {id} failed in Kubernetes ({}: {}): its pods are stopped",
            reason.unwrap_or("no reason given"),
            failed.message.as_deref().unwrap_or("no message")
        ),
    })
}

fn is_off(text: &str) -> bool {
    matches!(text.trim(), "off" | "none" | "never")
}

fn parse_limit(flag: &'static str, text: &str) -> Result<Duration> {
    let bad = |reason: String| Error::BadDuration {
        flag,
        value: text.to_string(),
        reason,
    };
    let duration = humantime::parse_duration(text.trim()).map_err(|e| bad(e.to_string()))?;
    if duration < Duration::from_secs(1) {
        return Err(bad("give at least 1s".into()));
    }
    Ok(duration)
}

/// A duration in its largest whole units: `10m`, `24h`, `1h30m`, `90s` → `1m30s`.
pub fn show_duration(duration: Duration) -> String {
    let mut secs = duration.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut text = String::new();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        // Up to two days read better in hours (`24h`, `36h`).
        if unit == "d" && secs <= 2 * 86400 {
            continue;
        }
        if secs >= size {
            text.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_then_fallback_then_default() {
        let none = LifetimeFallback::default();
        assert_eq!(
            Lifetime::resolve(None, None, none).unwrap(),
            Lifetime::default()
        );
        assert_eq!(
            Lifetime::default().orphan_timeout,
            Some(Duration::from_secs(600))
        );
        let config = LifetimeFallback {
            orphan_timeout: Some(Duration::from_secs(120)),
            max_runtime: Some(Duration::from_secs(3600)),
        };
        let from_config = Lifetime::resolve(None, None, config).unwrap();
        assert_eq!(from_config.orphan_timeout, Some(Duration::from_secs(120)));
        assert_eq!(from_config.max_runtime, Duration::from_secs(3600));
        let flags = Lifetime::resolve(Some("30s"), Some("2h"), config).unwrap();
        assert_eq!(flags.orphan_timeout, Some(Duration::from_secs(30)));
        assert_eq!(flags.max_runtime, Duration::from_secs(7200));
        let off = Lifetime::resolve(Some("off"), None, config).unwrap();
        assert_eq!(off.orphan_timeout, None);
        let config_off = LifetimeFallback {
            orphan_timeout: Some(Duration::ZERO),
            ..Default::default()
        };
        assert_eq!(
            Lifetime::resolve(None, None, config_off)
                .unwrap()
                .orphan_timeout,
            None
        );
    }

    #[test]
    fn bad_limits_name_the_flag() {
        let err = Lifetime::resolve(Some("soon"), None, LifetimeFallback::default()).unwrap_err();
        assert!(err.to_string().contains("--orphan-timeout"), "{err}");
        let err = Lifetime::resolve(None, Some("0s"), LifetimeFallback::default()).unwrap_err();
        assert!(err.to_string().contains("--max-runtime `0s`"), "{err}");
    }

    #[test]
    fn announcement_has_the_id_both_limits_and_the_flags() {
        let line = Lifetime::default().announce("abc", "kb");
        assert_eq!(
            line,
            "kb: task abc in namespace `kb`: its pods end 10m after this client is gone, and after 24h in any \
             case (change with --orphan-timeout, --max-runtime)"
        );
    }

    #[test]
    fn a_job_past_its_deadline_says_max_runtime() {
        let job = |conditions: serde_json::Value| -> k8s_openapi::api::batch::v1::Job {
            serde_json::from_value(serde_json::json!({"status": {"conditions": conditions}}))
                .unwrap()
        };
        let running = job(serde_json::json!([]));
        assert_eq!(
            build_stop_reason(&running, "abc", Duration::from_secs(20)),
            None
        );
        let deadline = job(
            serde_json::json!([{"type": "FailureTarget", "status": "True",
            "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline"}]),
        );
        assert_eq!(
            build_stop_reason(&deadline, "abc", Duration::from_secs(20)).unwrap(),
            "task abc reached its max runtime of 20s (--max-runtime): Kubernetes stopped its pods"
        );
        let orphaned = job(serde_json::json!([{"type": "Failed", "status": "True",
            "reason": "PodFailurePolicy", "message": "Container main for pod x failed with exit code 75"}]));
        let reason = build_stop_reason(&orphaned, "abc", Duration::from_secs(20)).unwrap();
        assert!(
            reason.contains("(PodFailurePolicy: Container main"),
            "{reason}"
        );
        let not_yet = job(serde_json::json!([{"type": "Failed", "status": "False"}]));
        assert_eq!(
            build_stop_reason(&not_yet, "abc", Duration::from_secs(20)),
            None
        );
    }

    #[test]
    fn durations_in_whole_units() {
        let show = |s| show_duration(Duration::from_secs(s));
        assert_eq!(show(90), "1m30s");
        assert_eq!(show(600), "10m");
        assert_eq!(show(24 * 3600), "24h");
        assert_eq!(show(3 * 86400 + 3600), "3d1h");
        assert_eq!(show(20), "20s");
    }
}
