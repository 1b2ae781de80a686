//! `--halt` in every form: now and soon; fail, success and done; a count and a percentage; and the exit status
//! each gives, GNU parallel's quirks included.

use super::{Sim, halt, rules};
use crate::model::{JobExit, JobSignal};
use crate::output::report::{Event, Notice};
use crate::sched::action::Rules;

/// Runs 6 jobs on 3 slots with `--halt value`; job `trigger` ends with `code` while 1..=3 run, then the others
/// end with 0 when still running. Returns the fake and the jobs that were started.
fn halted(value: &str, trigger: u64, code: i32) -> Sim {
    let mut sim = Sim::new(Rules {
        halt: halt(value),
        ..rules()
    });
    sim.join("w", 3);
    sim.records(6);
    sim.end_input();
    sim.exit(trigger, code);
    sim
}

#[test]
fn halt_now_kills_the_running_jobs_and_prints_nothing_more() {
    let mut sim = halted("now,fail=1", 2, 3);
    assert_eq!(
        sim.events,
        [Event::Counted {
            notice: Notice::Failed,
            command: "echo 2".into()
        }]
    );
    assert_eq!(
        sim.signals,
        [
            (1, JobSignal::Term),
            (1, JobSignal::Kill),
            (3, JobSignal::Term),
            (3, JobSignal::Kill)
        ]
    );
    sim.output(1, "late\n");
    sim.end(1, Ok(JobExit::Signal(15)), false);
    sim.end(3, Ok(JobExit::Signal(9)), false);
    assert_eq!(sim.starts.len(), 3, "nothing more started");
    assert_eq!(sim.log.len(), 1, "the killed jobs are not logged");
    assert!(sim.core.finished());
    assert_eq!(sim.core.outcome().unwrap(), 3, "the failed job's status");
    assert_eq!(sim.stdout(), "");
}

#[test]
fn halt_soon_lets_the_running_jobs_finish() {
    let mut sim = halted("soon,fail=1", 1, 4);
    assert_eq!(sim.events[1], Event::HaltWaiting { running: 2 });
    assert!(sim.signals.is_empty());
    assert!(!sim.core.wants_input());
    sim.output(2, "two\n");
    sim.exit(2, 0);
    sim.exit(3, 1);
    assert_eq!(sim.starts.len(), 3);
    assert_eq!(sim.log.len(), 3);
    assert!(sim.core.finished());
    assert_eq!(sim.core.outcome().unwrap(), 4);
    assert_eq!(sim.stdout(), "two\n");
}

#[test]
fn halt_on_success_exits_0() {
    let mut sim = halted("now,success=1", 1, 0);
    assert_eq!(
        sim.events[0],
        Event::Counted {
            notice: Notice::Succeeded,
            command: "echo 1".into()
        }
    );
    sim.exit(2, 1);
    sim.exit(3, 1);
    assert_eq!(sim.core.outcome().unwrap(), 0);
}

#[test]
fn halt_on_done_count_without_failure_is_gnus_101() {
    let mut sim = halted("soon,done=2", 1, 0);
    assert!(sim.events.iter().all(|e| matches!(
        e,
        Event::Counted {
            notice: Notice::Finished,
            ..
        }
    )));
    sim.exit(2, 0);
    assert_eq!(sim.events.last(), Some(&Event::HaltWaiting { running: 2 }));
    sim.exit(3, 0);
    sim.exit(4, 0);
    assert_eq!(
        sim.starts.len(),
        4,
        "job 4 started before the second job ended"
    );
    assert_eq!(sim.core.outcome().unwrap(), 101);
}

#[test]
fn halt_on_a_count_of_failures_exits_with_the_count() {
    let mut sim = halted("soon,fail=2", 1, 5);
    sim.exit(2, 6);
    sim.exit(3, 0);
    assert_eq!(
        sim.starts.len(),
        3 + 1,
        "one job started after the first failure"
    );
    sim.exit(4, 0);
    assert_eq!(sim.core.outcome().unwrap(), 2);
}

#[test]
fn halt_on_a_percentage_reads_all_input_and_exits_with_the_percentage() {
    let mut sim = Sim::new(Rules {
        halt: halt("soon,fail=50%"),
        ..rules()
    });
    assert!(sim.core.needs_all_input());
    sim.records(4);
    sim.end_input();
    sim.join("w", 1);
    sim.exit(1, 1);
    sim.exit(2, 0);
    sim.exit(3, 1);
    assert!(sim.core.finished(), "2 of 4 failed");
    assert_eq!(sim.core.outcome().unwrap(), 50);
}

#[test]
fn a_percentage_that_never_triggers_still_sets_the_exit_status() {
    let mut sim = Sim::new(Rules {
        halt: halt("now,fail=90%"),
        ..rules()
    });
    sim.records(3);
    sim.end_input();
    sim.join("w", 1);
    for seq in 1..=3 {
        sim.exit(seq, i32::from(seq == 1));
    }
    assert_eq!(sim.core.outcome().unwrap(), 34, "1 of 3 failed, rounded up");
}
