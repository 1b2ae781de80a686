//! What goes wrong in a run: lost workers (a cut-off job re-run once elsewhere, a job that never started put
//! back), workers that never join, a stopped task, interrupts, a closed stdout, `--timeout`.

use std::time::Duration;

use super::{Sim, cut_off, not_started, rules};
use crate::model::{JobExit, JobSignal};
use crate::output::report::Event;
use crate::sched::Error;
use crate::sched::action::Rules;
use crate::sched::state::ABANDON_AFTER;
use crate::worker::WorkerEvent;

#[test]
fn a_job_cut_off_by_a_lost_worker_is_logged_and_re_run_once_elsewhere() {
    let mut sim = Sim::new(rules());
    sim.join("a", 1);
    sim.join("b", 1);
    sim.records(2);
    sim.end_input();
    sim.end(1, cut_off(), true);
    assert_eq!(
        sim.events,
        [Event::WorkerLost {
            worker: "a".into(),
            reason: "lost the connection to `w` while the job ran: connection reset".into()
        }]
    );
    assert_eq!(sim.log[0].exitval, -1, "the cut-off attempt is logged");
    sim.exit(2, 0);
    assert_eq!(sim.starts.last(), Some(&(1, 1, 1)), "re-run on `b`");
    sim.exit(1, 0);
    assert_eq!(
        sim.core.outcome().unwrap(),
        0,
        "the cut-off is not a failure"
    );
}

#[test]
fn a_cut_off_is_not_an_attempt_for_retries() {
    let mut sim = Sim::new(Rules {
        retries: 2,
        ..rules()
    });
    sim.join("a", 1);
    sim.join("b", 1);
    sim.records(1);
    sim.end_input();
    sim.end(1, cut_off(), true);
    sim.exit(1, 1);
    assert_eq!(
        sim.starts.len(),
        3,
        "the failure after a cut-off is the first of two attempts"
    );
    sim.exit(1, 0);
    assert!(sim.core.finished());
    assert_eq!(sim.core.outcome().unwrap(), 0);
}

#[test]
fn a_job_cut_off_twice_fails() {
    let mut sim = Sim::new(rules());
    sim.join("a", 1);
    sim.join("b", 1);
    sim.records(1);
    sim.end_input();
    sim.end(1, cut_off(), true);
    sim.end(1, cut_off(), true);
    assert_eq!(sim.log.len(), 2);
    assert!(sim.core.finished());
    assert_eq!(sim.core.outcome().unwrap(), 1);
}

#[test]
fn a_job_that_never_started_goes_back_to_the_queue_without_counting() {
    let mut sim = Sim::new(Rules {
        retries: 1,
        ..rules()
    });
    sim.join("a", 2);
    sim.records(1);
    sim.end_input();
    sim.end(1, not_started(), false);
    assert_eq!(
        sim.events,
        [Event::SlotRefused {
            worker: "a".into(),
            slots: 1,
            reason: "job did not start on `w`: channel refused".into()
        }]
    );
    assert_eq!(sim.starts.len(), 2, "started again at once");
    assert!(sim.log.is_empty());
    sim.exit(1, 0);
    assert_eq!(sim.core.outcome().unwrap(), 0);
}

#[test]
fn a_refused_job_on_a_closed_connection_loses_the_worker() {
    let mut sim = Sim::new(rules());
    sim.join("a", 2);
    sim.records(1);
    sim.end_input();
    sim.end(1, not_started(), true);
    assert!(matches!(&sim.events[..], [Event::WorkerLost { worker, .. }] if worker == "a"));
    assert!(sim.running.is_empty());
    assert!(!sim.core.finished());
    assert!(
        sim.core.stranded().is_none(),
        "its source may still send workers"
    );
    sim.join("b", 1);
    assert_eq!(
        sim.starts.last(),
        Some(&(1, 1, 1)),
        "on `b`, in the lowest free slot"
    );
}

#[test]
fn a_worker_that_never_joins_strands_the_run() {
    let mut sim = Sim::new(rules());
    sim.records(1);
    sim.worker_event(Some(WorkerEvent::Failed {
        name: "h1".into(),
        reason: "connection refused".into(),
    }));
    assert_eq!(
        sim.events,
        [Event::WorkerUnusable {
            worker: "h1".into(),
            reason: "connection refused".into()
        }]
    );
    assert!(sim.core.stranded().is_none(), "the source is still open");
    sim.worker_event(Some(WorkerEvent::Done));
    let Some(Error::NoWorkers { reasons }) = sim.core.stranded() else {
        panic!("not stranded");
    };
    assert_eq!(reasons, ["h1: connection refused"]);
}

#[test]
fn losing_every_worker_strands_the_run() {
    let mut sim = Sim::new(rules());
    sim.join("a", 1);
    sim.worker_event(None);
    sim.records(2);
    sim.end(1, cut_off(), true);
    assert!(sim.running.is_empty());
    assert!(
        matches!(sim.core.stranded(), Some(Error::NoWorkers { reasons }) if reasons.len() == 1)
    );
}

#[test]
fn a_stopped_run_kills_its_jobs_and_counts_what_did_not_finish() {
    let mut sim = Sim::new(rules());
    sim.join("w", 2);
    sim.records(3);
    sim.exit(1, 0);
    sim.worker_event(Some(WorkerEvent::Stopped {
        reason: "the task reached its --max-runtime".into(),
        hint: "give a longer --max-runtime".into(),
    }));
    assert_eq!(
        sim.events,
        [Event::Stopped {
            reason: "the task reached its --max-runtime".into(),
            running: 2
        }]
    );
    assert_eq!(sim.signals, [(2, JobSignal::Kill), (3, JobSignal::Kill)]);
    assert!(!sim.core.wants_input());
    sim.exit(2, 0);
    sim.end(3, Ok(JobExit::Signal(9)), false);
    assert_eq!(sim.log.last().map(|e| e.exitval), Some(-1));
    assert!(sim.core.finished());
    let Err(Error::Stopped {
        done,
        unfinished,
        input_left,
        ..
    }) = sim.core.outcome()
    else {
        panic!("not stopped");
    };
    assert_eq!((done, unfinished, input_left), (2, 1, true));
}

#[test]
fn first_interrupt_sends_sigterm_then_sigkill_after_the_grace_period() {
    let mut sim = Sim::new(rules());
    sim.join("w", 2);
    sim.records(2);
    sim.interrupt();
    assert_eq!(sim.events, [Event::Interrupted { running: 2 }]);
    assert_eq!(sim.signals, [(1, JobSignal::Term), (2, JobSignal::Term)]);
    assert!(!sim.core.wants_input());
    sim.exit(1, 143);
    assert_eq!(sim.starts.len(), 2, "nothing more started");
    sim.advance(Duration::from_secs(9));
    assert_eq!(sim.signals.len(), 2, "still in the grace period");
    sim.advance(Duration::from_secs(1));
    assert_eq!(sim.signals.last(), Some(&(2, JobSignal::Kill)));
    assert_eq!(sim.core.next_deadline(), Some(sim.now.mono + ABANDON_AFTER));
    sim.exit(2, 137);
    assert!(sim.core.finished());
    assert_eq!(sim.core.outcome().unwrap(), 130);
}

#[test]
fn second_interrupt_kills_at_once_and_unconfirmed_jobs_are_abandoned() {
    let mut sim = Sim::new(rules());
    sim.join("w", 1);
    sim.records(1);
    sim.interrupt();
    sim.interrupt();
    assert_eq!(sim.signals, [(1, JobSignal::Term), (1, JobSignal::Kill)]);
    sim.advance(ABANDON_AFTER);
    assert_eq!(
        sim.events.last(),
        Some(&Event::Unconfirmed {
            seq: 1,
            worker: "w".into()
        })
    );
    assert!(sim.running.is_empty() && sim.core.finished());
    assert_eq!(sim.core.outcome().unwrap(), 130);
}

#[test]
fn a_broken_pipe_stops_quietly_with_status_0() {
    let mut sim = Sim::new(rules());
    sim.join("w", 2);
    sim.records(3);
    sim.exit(1, 1);
    let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
    let actions = sim.core.on_output_error(&pipe, sim.now);
    sim.apply(actions);
    assert!(sim.events.is_empty(), "nothing said");
    assert_eq!(sim.signals, [(2, JobSignal::Kill), (3, JobSignal::Kill)]);
    sim.output(2, "unread\n");
    sim.exit(2, 1);
    sim.exit(3, 1);
    assert!(sim.core.finished());
    assert_eq!(sim.core.outcome().unwrap(), 0);
    assert_eq!(sim.stdout(), "", "nothing printed after the pipe closed");
}

#[test]
fn other_output_errors_are_warnings() {
    let mut sim = Sim::new(rules());
    let full = std::io::Error::other("disk full");
    let actions = sim.core.on_output_error(&full, sim.now);
    sim.apply(actions);
    assert_eq!(
        sim.events,
        [Event::OutputFailed {
            cause: "disk full".into()
        }]
    );
}

#[test]
fn timeout_sends_sigterm_twice_then_sigkill_and_the_job_is_logged_with_exitval_minus_1() {
    let mut sim = Sim::new(Rules {
        timeout: Some(crate::sched::timeout::Timeout::After(Duration::from_secs(
            1,
        ))),
        ..rules()
    });
    sim.join("w", 2);
    sim.records(2);
    let start = sim.now.mono;
    sim.exit(2, 0);
    assert_eq!(
        sim.core.next_deadline(),
        Some(start + Duration::from_secs(1))
    );
    sim.advance(Duration::from_millis(999));
    assert!(sim.signals.is_empty());
    sim.advance(Duration::from_millis(1));
    assert_eq!(sim.signals, [(1, JobSignal::Term)]);
    sim.advance(Duration::from_millis(200));
    sim.advance(Duration::from_millis(100));
    assert_eq!(
        sim.signals,
        [
            (1, JobSignal::Term),
            (1, JobSignal::Term),
            (1, JobSignal::Kill)
        ]
    );
    assert_eq!(sim.core.next_deadline(), None, "no step after SIGKILL");
    sim.advance(Duration::from_millis(200));
    sim.end(1, Ok(JobExit::Signal(9)), false);
    assert_eq!(
        sim.events,
        [Event::TimedOut {
            command: "echo 1".into()
        }]
    );
    let entry = sim.log.iter().find(|e| e.seq == 1).unwrap();
    assert_eq!((entry.exitval, entry.signal), (-1, 9));
    assert_eq!(entry.runtime, 1.5);
    assert_eq!(entry.start, 1_700_000_000.0);
    assert_eq!(sim.core.outcome().unwrap(), 1);
}

#[test]
fn a_job_that_ends_before_its_timeout_is_not_signalled() {
    let mut sim = Sim::new(Rules {
        timeout: Some(crate::sched::timeout::Timeout::After(Duration::from_secs(
            1,
        ))),
        ..rules()
    });
    sim.join("w", 1);
    sim.records(1);
    sim.advance(Duration::from_millis(500));
    sim.exit(1, 0);
    assert_eq!(sim.core.next_deadline(), None);
    sim.advance(Duration::from_secs(2));
    assert!(sim.signals.is_empty() && sim.events.is_empty());
    assert_eq!(sim.log[0].exitval, 0);
}

#[test]
fn a_percent_timeout_follows_the_median_of_the_jobs_that_succeeded() {
    let mut sim = Sim::new(Rules {
        timeout: Some(crate::sched::timeout::Timeout::OfMedian(2.0)),
        ..rules()
    });
    sim.join("w", 2);
    sim.records(3);
    let start = sim.now.mono;
    assert_eq!(sim.core.next_deadline(), None, "no limit before a median");
    sim.advance(Duration::from_secs(1));
    sim.exit(2, 0);
    // Median 1 s, limit 2 s: job 1 (started at 0) is due at 2 s, job 3 (started at 1 s) at 3 s.
    assert_eq!(
        sim.core.next_deadline(),
        Some(start + Duration::from_secs(2))
    );
    sim.advance(Duration::from_millis(999));
    assert!(sim.signals.is_empty());
    sim.advance(Duration::from_millis(1));
    assert_eq!(sim.signals, [(1, JobSignal::Term)]);
}

#[test]
fn hangup_starts_no_more_jobs_and_lets_the_running_ones_finish() {
    let mut sim = Sim::new(rules());
    sim.join("w", 2);
    sim.records(4);
    let actions = sim.core.on_hangup();
    sim.apply(actions);
    assert!(
        matches!(sim.events.last(), Some(Event::HungUp { running }) if running.len() == 2),
        "{:?}",
        sim.events
    );
    assert!(sim.signals.is_empty(), "the running jobs are left alone");
    assert!(!sim.core.wants_input());
    sim.exit(1, 0);
    sim.exit(2, 1);
    assert_eq!(sim.starts.len(), 2, "nothing more started");
    assert!(sim.core.finished());
    assert_eq!(
        sim.core.outcome().unwrap(),
        1,
        "the failed job counts, the ones never started do not"
    );
    // A second SIGHUP says nothing more.
    let before = sim.events.len();
    let actions = sim.core.on_hangup();
    sim.apply(actions);
    assert_eq!(sim.events.len(), before);
}
