//! The bookkeeping of a task's pods while they start: which to connect to, what to report, and when the task as a
//! whole cannot start. Pure, so the rules are tested without a cluster; `source.rs` does the I/O.

use std::collections::{HashMap, HashSet};

use super::pod_state::{Counts, PodState, count};

/// What the watcher must do after an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Connect to this pod's agent.
    Connect(String),
    /// Connect again to a pod that had joined and whose connection was lost while the pod still runs (the API
    /// server carrying the port-forward restarted, say), patiently.
    Reconnect(String),
    /// Tell the scheduler this pod cannot be used.
    Report {
        /// The pod.
        name: String,
        /// Why, in the user's terms.
        reason: String,
    },
}

/// The pods of one task, as seen so far.
#[derive(Debug, Default)]
pub struct Tracker {
    expected: usize,
    states: HashMap<String, PodState>,
    connecting: HashSet<String>,
    joined: HashSet<String>,
    bad: HashSet<String>,
    /// Pods whose agent could not be joined: not tried again.
    join_failed: HashSet<String>,
    first_reason: Option<String>,
    pull_failure: Option<String>,
    request: Option<String>,
}

impl Tracker {
    /// A tracker for a task of `expected` pods.
    pub fn new(expected: usize) -> Self {
        Tracker {
            expected: expected.max(1),
            ..Default::default()
        }
    }

    /// Names what each pod asks for (`100m cpu, 128Mi memory`), for the Unschedulable message.
    pub fn with_request(mut self, request: String) -> Self {
        self.request = Some(request);
        self
    }

    /// How many pods have joined.
    pub fn joined(&self) -> usize {
        self.joined.len()
    }

    /// The counts for the progress display.
    pub fn counts(&self) -> Counts {
        count(self.states.values())
    }

    /// True once every pod the task asked for has joined.
    pub fn all_joined(&self) -> bool {
        self.joined.len() >= self.expected
    }

    /// Records the state of pod `name`.
    pub fn on_pod(&mut self, name: &str, state: PodState) -> Vec<Action> {
        let mut actions = Vec::new();
        let fresh = !self.connecting.contains(name)
            && !self.joined.contains(name)
            && !self.join_failed.contains(name);
        match &state {
            // An unschedulable pod may be placed later (another task ended) and a pull may succeed on a retry: a
            // pod reported unusable that becomes Ready joins after all.
            PodState::Ready if fresh => {
                self.bad.remove(name);
                self.connecting.insert(name.to_string());
                actions.push(Action::Connect(name.to_string()));
            }
            PodState::PullFailed { image, message } if !self.bad.contains(name) => {
                let reason = format!("image `{image}` cannot be pulled: {message}");
                self.pull_failure.get_or_insert_with(|| reason.clone());
                actions.push(self.mark_bad(name, reason));
            }
            PodState::Unschedulable(message) if !self.bad.contains(name) => {
                let asked = self
                    .request
                    .as_ref()
                    .map(|r| format!(" asking for {r}"))
                    .unwrap_or_default();
                actions
                    .push(self.mark_bad(name, format!("no node can run a pod{asked}: {message}")));
            }
            // A pod that joined and then ended is reported by its connection, which the scheduler watches.
            PodState::Failed(_) if self.joined.contains(name) => {}
            PodState::Failed(why) if !self.bad.contains(name) => {
                actions.push(self.mark_bad(
                    name,
                    format!("the pod failed before kb's agent answered: {why}"),
                ));
            }
            _ => {}
        }
        self.states.insert(name.to_string(), state);
        actions
    }

    /// Forgets a deleted pod (the Job may replace it with a new one).
    pub fn on_deleted(&mut self, name: &str) {
        self.states.remove(name);
        self.connecting.remove(name);
    }

    /// Records that pod `name` joined the run.
    pub fn on_joined(&mut self, name: &str) {
        self.connecting.remove(name);
        self.joined.insert(name.to_string());
    }

    /// Records that the connection to joined pod `name` is gone: reconnect if the pod still runs; otherwise the
    /// pod is done (deleted, evicted, ended) and a replacement, if any, joins as a new pod.
    pub fn on_lost(&mut self, name: &str) -> Vec<Action> {
        if !self.joined.remove(name) {
            return Vec::new();
        }
        if self.states.get(name) == Some(&PodState::Ready) {
            self.connecting.insert(name.to_string());
            return vec![Action::Reconnect(name.to_string())];
        }
        Vec::new()
    }

    /// Records that pod `name` could not join (its agent did not answer, or the files could not be copied).
    pub fn on_join_failed(&mut self, name: &str, why: &str) -> Action {
        self.connecting.remove(name);
        self.join_failed.insert(name.to_string());
        self.mark_bad(name, format!("cannot join the run: {why}"))
    }

    fn mark_bad(&mut self, name: &str, reason: String) -> Action {
        self.bad.insert(name.to_string());
        self.first_reason.get_or_insert_with(|| reason.clone());
        Action::Report {
            name: name.to_string(),
            reason,
        }
    }

    /// Why the task cannot start at all, when no pod joined and none can: an image that cannot be pulled (every
    /// pod uses the same images), or as many pods unusable as the task asked for and none on its way.
    pub fn fatal(&self) -> Option<String> {
        if !self.joined.is_empty() || !self.connecting.is_empty() {
            return None;
        }
        if let Some(reason) = &self.pull_failure {
            return Some(reason.clone());
        }
        let on_the_way = self.states.iter().any(|(name, s)| {
            !self.bad.contains(name)
                && matches!(s, PodState::Pending | PodState::Starting | PodState::Ready)
        });
        if self.bad.len() >= self.expected && !on_the_way {
            return self.first_reason.clone();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_pods_are_connected_once() {
        let mut t = Tracker::new(2);
        assert_eq!(t.on_pod("a", PodState::Starting), vec![]);
        assert_eq!(
            t.on_pod("a", PodState::Ready),
            vec![Action::Connect("a".into())]
        );
        assert_eq!(t.on_pod("a", PodState::Ready), vec![]);
        t.on_joined("a");
        assert_eq!(t.on_pod("a", PodState::Ready), vec![]);
        assert_eq!(t.joined(), 1);
        assert!(!t.all_joined());
        assert_eq!(t.fatal(), None);
    }

    #[test]
    fn a_lost_connection_to_a_running_pod_is_made_again_once() {
        let mut t = Tracker::new(2);
        t.on_pod("a", PodState::Ready);
        t.on_joined("a");
        assert_eq!(t.on_lost("a"), vec![Action::Reconnect("a".into())]);
        assert_eq!(t.on_lost("a"), vec![], "not joined any more: nothing to do");
        assert_eq!(
            t.on_pod("a", PodState::Ready),
            vec![],
            "already reconnecting"
        );
        assert_eq!(t.fatal(), None, "a reconnecting pod is on its way");
        t.on_joined("a");
        assert_eq!(t.joined(), 1);
        // A pod that is being deleted is not reconnected: the Job's replacement joins instead.
        t.on_pod("b", PodState::Ready);
        t.on_joined("b");
        t.on_pod("b", PodState::Deleting);
        assert_eq!(t.on_lost("b"), vec![]);
    }

    #[test]
    fn a_pull_failure_stops_the_task_before_any_pod_joined() {
        let mut t = Tracker::new(3);
        t.on_pod("b", PodState::Starting);
        let actions = t.on_pod(
            "a",
            PodState::PullFailed {
                image: "nope:1".into(),
                message: "ErrImagePull".into(),
            },
        );
        assert_eq!(actions.len(), 1);
        assert_eq!(
            t.fatal().unwrap(),
            "image `nope:1` cannot be pulled: ErrImagePull"
        );
    }

    #[test]
    fn some_unschedulable_pods_do_not_stop_the_task() {
        let mut t = Tracker::new(3);
        t.on_pod("a", PodState::Ready);
        t.on_pod("b", PodState::Unschedulable("Insufficient cpu".into()));
        t.on_pod("c", PodState::Unschedulable("Insufficient cpu".into()));
        assert_eq!(t.fatal(), None, "a is connecting");
        t.on_joined("a");
        assert_eq!(t.fatal(), None);
    }

    #[test]
    fn an_unschedulable_pod_placed_later_joins_but_a_failed_join_is_not_retried() {
        let mut t = Tracker::new(2);
        t.on_pod("a", PodState::Ready);
        t.on_joined("a");
        assert_eq!(
            t.on_pod("b", PodState::Unschedulable("Insufficient cpu".into()))
                .len(),
            1
        );
        assert_eq!(t.on_pod("b", PodState::Starting), vec![]);
        assert_eq!(
            t.on_pod("b", PodState::Ready),
            vec![Action::Connect("b".into())]
        );
        t.on_join_failed("b", "refused");
        assert_eq!(t.on_pod("b", PodState::Ready), vec![]);
    }

    #[test]
    fn all_unschedulable_stops_the_task() {
        let mut t = Tracker::new(2);
        t.on_pod("a", PodState::Unschedulable("Insufficient cpu".into()));
        assert_eq!(t.fatal(), None, "b may still come");
        t.on_pod("b", PodState::Unschedulable("Insufficient cpu".into()));
        assert_eq!(
            t.fatal().unwrap(),
            "no node can run a pod: Insufficient cpu"
        );
        let mut t = Tracker::new(1).with_request("2 cpu, 1Gi memory".into());
        t.on_pod(
            "a",
            PodState::Unschedulable("0/1 nodes are available: 1 Insufficient cpu.".into()),
        );
        assert_eq!(
            t.fatal().unwrap(),
            "no node can run a pod asking for 2 cpu, 1Gi memory: 0/1 nodes are available: 1 Insufficient cpu."
        );
    }

    #[test]
    fn a_joined_pod_that_ends_is_left_to_its_connection() {
        let mut t = Tracker::new(1);
        t.on_pod("a", PodState::Ready);
        t.on_joined("a");
        assert_eq!(
            t.on_pod("a", PodState::Failed("exited with 143".into())),
            vec![]
        );
        assert_eq!(t.fatal(), None);
    }

    #[test]
    fn failed_agents_count_towards_the_end() {
        let mut t = Tracker::new(1);
        t.on_pod("a", PodState::Ready);
        let action = t.on_join_failed("a", "handshake failed");
        assert!(matches!(action, Action::Report { .. }));
        assert!(t.fatal().unwrap().contains("handshake failed"));
    }
}
