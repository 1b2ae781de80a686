//! One task as `kb status` shows it, whichever backend runs it, and the pure rules every backend shares: where a
//! task comes from (`origin`), how an age is shown, and the table.

use serde::Serialize;

/// The `backend` of a task whose workers are Kubernetes pods.
pub const PODS: &str = "pods";
/// The `backend` of a task whose workers are containers of the local Docker engine.
pub const CONTAINERS: &str = "containers";

/// One task, as `kb status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, tabled::Tabled)]
pub struct TaskRow {
    /// The task id.
    #[tabled(rename = "ID")]
    pub id: String,
    /// Where the workers run: [`PODS`] or [`CONTAINERS`] (a column only when a container task is listed).
    #[tabled(rename = "BACKEND")]
    pub backend: String,
    /// Time since creation (`45s`, `3m`, `2h`, `4d`).
    #[tabled(rename = "AGE")]
    pub age: String,
    /// `STARTING`, `RUNNING`, `ORPHANED`, `IMAGE-ERROR`, `UNSCHEDULABLE`, `FAILED`, `DONE`, `FINISHING`.
    #[tabled(rename = "STATUS")]
    pub status: String,
    /// CPU each worker asks for (pods) or may use (containers).
    #[tabled(rename = "CPU")]
    pub cpu: String,
    /// Memory each worker asks for (pods) or may use (containers).
    #[tabled(rename = "MEM")]
    pub mem: String,
    /// Ready (running) workers / workers asked for.
    #[tabled(rename = "HEALTH")]
    pub health: String,
    /// Jobs done / total, where known; `-` otherwise.
    #[tabled(rename = "PROGRESS")]
    pub progress: String,
    /// The client's working directory.
    #[tabled(rename = "PWD")]
    pub pwd: String,
    /// The command line.
    #[tabled(rename = "COMMAND")]
    pub command: String,
    /// The machine that created the task, as [`origin`] gives it (a column only with `-A`).
    #[tabled(rename = "ORIGIN")]
    pub origin: String,
    /// `parallel` or `shell`.
    #[tabled(skip)]
    pub kind: String,
    /// The exit status an `--async` task's coordinator recorded (GNU parallel's), once it ended.
    #[tabled(skip)]
    pub exit_status: Option<u8>,
    /// The namespace (empty for containers).
    #[tabled(skip)]
    pub namespace: String,
}

/// This machine's name as a label value: the `kb.dev/origin` of every task made here, pods and containers alike,
/// so that `kb status` without `-A` selects the same way for both.
pub fn origin() -> String {
    let name = nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    label_value(&name)
}

/// `raw` as a valid Kubernetes label value: at most 63 characters of `[A-Za-z0-9._-]`, alphanumeric at both ends.
pub fn label_value(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let trimmed = cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.is_empty() {
        "unknown".to_string()
    } else {
        trimmed.to_string()
    }
}

/// kubectl's way of showing an age (times in Unix seconds): the largest unit only.
pub fn show_age(now: i64, then: i64) -> String {
    let secs = now.saturating_sub(then).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 120 * 60 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// The rows as a table with kubectl's look (no borders, columns three spaces apart); ORIGIN only with `all`,
/// BACKEND only when a container task is among the rows.
pub fn render_table(rows: &[TaskRow], all: bool) -> String {
    use tabled::settings::location::ByColumnName;
    use tabled::settings::{Padding, Remove, Style};
    let mut table = tabled::Table::new(rows);
    table.with(Style::empty()).with(Padding::new(0, 3, 0, 0));
    if !all {
        table.with(Remove::column(ByColumnName::new("ORIGIN")));
    }
    if !rows.iter().any(|r| r.backend == CONTAINERS) {
        table.with(Remove::column(ByColumnName::new("BACKEND")));
    }
    let text = table.to_string();
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    lines.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, backend: &str) -> TaskRow {
        TaskRow {
            id: id.into(),
            backend: backend.into(),
            age: "10s".into(),
            status: "RUNNING".into(),
            cpu: "-".into(),
            mem: "-".into(),
            health: "1/1".into(),
            progress: "-".into(),
            pwd: "/p".into(),
            command: "sleep 1".into(),
            origin: "laptop".into(),
            kind: "parallel".into(),
            exit_status: None,
            namespace: String::new(),
        }
    }

    fn header(text: &str) -> Vec<&str> {
        text.lines().next().unwrap().split_whitespace().collect()
    }

    #[test]
    fn the_backend_is_a_column_only_with_a_container_task() {
        let pods = render_table(&[row("a", PODS)], false);
        assert_eq!(header(&pods)[..3], ["ID", "AGE", "STATUS"]);
        let mixed = render_table(&[row("a", PODS), row("b", CONTAINERS)], true);
        assert_eq!(header(&mixed)[..3], ["ID", "BACKEND", "AGE"]);
        assert_eq!(header(&mixed).last(), Some(&"ORIGIN"));
        let second: Vec<&str> = mixed.lines().nth(2).unwrap().split_whitespace().collect();
        assert_eq!(second[..3], ["b", "containers", "10s"], "{mixed}");
    }

    #[test]
    fn the_backend_is_in_json() {
        let json = serde_json::to_value(row("a", CONTAINERS)).unwrap();
        assert_eq!(json["backend"], "containers");
    }

    #[test]
    fn ages() {
        assert_eq!(show_age(45, 0), "45s");
        assert_eq!(show_age(5 * 3600, 0), "5h");
        assert_eq!(show_age(4 * 86400, 0), "4d");
        assert_eq!(show_age(0, 10), "0s");
    }

    #[test]
    fn origin_is_a_label_value() {
        let origin = origin();
        assert!(!origin.is_empty() && origin.len() <= 63);
        assert_eq!(label_value(&origin), origin);
    }
}
