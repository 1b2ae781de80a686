//! `--halt`: when a run stops early, and the exit status it then has (GNU parallel's rules, checked against
//! GNU parallel 20221122).

use std::str::FromStr;

use crate::output::report::Notice;

/// When to stop once the condition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Kill running jobs and stop at once.
    Now,
    /// Start no new jobs; let running ones finish.
    Soon,
}

/// Which jobs count towards the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Failed jobs.
    Fail,
    /// Jobs that succeeded.
    Success,
    /// All finished jobs.
    Done,
}

/// How many jobs must meet the condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// At least this many.
    Count(u64),
    /// At least this percentage of all jobs (the input is read to its end first to know the total).
    Percent(f64),
}

/// A parsed `--halt` value; `None` in [`HaltSpec::parse`] means never.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Halt {
    /// Now or soon.
    pub when: When,
    /// Fail, success or done.
    pub why: Why,
    /// The threshold.
    pub threshold: Threshold,
}

/// A `--halt` value that does not parse.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid --halt value `{0}`: expected `now|soon,fail|success|done=N|N%`, or 0, 1, 2, -1, -2, or 1-99%"
)]
pub struct ParseHaltError(String);

/// Parses `--halt`; `Ok(None)` is GNU's `never` / `0`.
pub fn parse(value: &str) -> Result<Option<Halt>, ParseHaltError> {
    let bad = || ParseHaltError(value.to_string());
    let short = |when, why, n| {
        Ok(Some(Halt {
            when,
            why,
            threshold: Threshold::Count(n),
        }))
    };
    match value {
        "never" | "0" => return Ok(None),
        "1" => return short(When::Soon, Why::Fail, 1),
        "2" => return short(When::Now, Why::Fail, 1),
        "-1" => return short(When::Soon, Why::Success, 1),
        "-2" => return short(When::Now, Why::Success, 1),
        _ => {}
    }
    if let Some(pct) = value.strip_suffix('%')
        && !value.contains(',')
    {
        let p = f64::from_str(pct).map_err(|_| bad())?;
        return Ok(Some(Halt {
            when: When::Soon,
            why: Why::Fail,
            threshold: Threshold::Percent(p),
        }));
    }
    let (when, rest) = value.split_once(',').ok_or_else(bad)?;
    let when = match when {
        "now" => When::Now,
        "soon" => When::Soon,
        _ => return Err(bad()),
    };
    let (why, n) = rest.split_once('=').ok_or_else(bad)?;
    let why = match why {
        "fail" => Why::Fail,
        "success" => Why::Success,
        "done" => Why::Done,
        _ => return Err(bad()),
    };
    let threshold = match n.strip_suffix('%') {
        Some(p) => Threshold::Percent(f64::from_str(p).map_err(|_| bad())?),
        None => Threshold::Count(u64::from_str(n).map_err(|_| bad())?),
    };
    Ok(Some(Halt {
        when,
        why,
        threshold,
    }))
}

/// Counts of finished jobs, for the halt condition and the exit status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Jobs whose last attempt exited 0.
    pub succeeded: u64,
    /// Jobs whose last attempt failed.
    pub failed: u64,
}

impl Halt {
    /// True when `--halt` needs the total number of jobs (a percentage).
    pub fn needs_total(&self) -> bool {
        matches!(self.threshold, Threshold::Percent(_))
    }

    /// Whether the run must halt after `tally`, given the total number of jobs when known.
    pub fn triggered(&self, tally: Tally, total: Option<u64>) -> bool {
        let n = match self.why {
            Why::Fail => tally.failed,
            Why::Success => tally.succeeded,
            Why::Done => tally.failed + tally.succeeded,
        };
        match self.threshold {
            Threshold::Count(want) => n >= want.max(1),
            Threshold::Percent(p) => match total {
                Some(total) if total > 0 => (n as f64) * 100.0 >= p * total as f64,
                _ => false,
            },
        }
    }

    /// The notice GNU parallel prints after each job that counts towards the condition (`This job failed:`).
    pub fn notice(&self, failed: bool) -> Option<Notice> {
        match (self.why, failed) {
            (Why::Fail, true) => Some(Notice::Failed),
            (Why::Success, false) => Some(Notice::Succeeded),
            (Why::Done, _) => Some(Notice::Finished),
            _ => None,
        }
    }

    /// The exit status of a run halted by the job whose own status (128+signal when killed) is `job_status`,
    /// with GNU parallel's rules, quirks included: with a count other than 1 and no failed job, GNU's
    /// `min(undef, 101)` gives 101.
    pub fn exit_status(&self, job_status: i32, tally: Tally, total: u64) -> u8 {
        match (self.why, self.threshold) {
            (Why::Success, _) => 0,
            (_, Threshold::Percent(_)) => percent_failed(tally.failed, total),
            (_, Threshold::Count(1)) => job_status.clamp(0, 255) as u8,
            (_, Threshold::Count(_)) if tally.failed == 0 => 101,
            (_, Threshold::Count(_)) => tally.failed.min(101) as u8,
        }
    }

    /// The exit status of a run that ran to its end without halting: the percentage of failed jobs (rounded up)
    /// with a percentage, else the number of failed jobs.
    pub fn exit_status_not_halted(&self, tally: Tally) -> u8 {
        match self.threshold {
            Threshold::Percent(_) => percent_failed(tally.failed, tally.failed + tally.succeeded),
            Threshold::Count(_) => tally.failed.min(101) as u8,
        }
    }
}

fn percent_failed(failed: u64, total: u64) -> u8 {
    if total == 0 {
        return 0;
    }
    (failed * 100).div_ceil(total).min(255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_long_and_short_forms() {
        let h = parse("now,fail=1").unwrap().unwrap();
        assert_eq!(
            (h.when, h.why, h.threshold),
            (When::Now, Why::Fail, Threshold::Count(1))
        );
        let h = parse("soon,success=20%").unwrap().unwrap();
        assert_eq!(
            (h.when, h.why, h.threshold),
            (When::Soon, Why::Success, Threshold::Percent(20.0))
        );
        assert_eq!(parse("2").unwrap().unwrap().when, When::Now);
        assert_eq!(parse("-1").unwrap().unwrap().why, Why::Success);
        assert!(parse("0").unwrap().is_none());
        assert_eq!(
            parse("30%").unwrap().unwrap().threshold,
            Threshold::Percent(30.0)
        );
        assert!(parse("later,fail=1").is_err());
        assert!(parse("now,fail=x").is_err());
    }

    #[test]
    fn triggers_on_counts_and_percentages() {
        let h = parse("soon,fail=2").unwrap().unwrap();
        assert!(!h.triggered(
            Tally {
                succeeded: 5,
                failed: 1
            },
            None
        ));
        assert!(h.triggered(
            Tally {
                succeeded: 0,
                failed: 2
            },
            None
        ));
        let h = parse("now,done=50%").unwrap().unwrap();
        assert!(!h.triggered(
            Tally {
                succeeded: 1,
                failed: 0
            },
            Some(4)
        ));
        assert!(h.triggered(
            Tally {
                succeeded: 1,
                failed: 1
            },
            Some(4)
        ));
    }

    #[test]
    fn exit_status_follows_gnu() {
        let t = Tally {
            succeeded: 3,
            failed: 1,
        };
        assert_eq!(
            parse("now,fail=1").unwrap().unwrap().exit_status(3, t, 4),
            3
        );
        assert_eq!(
            parse("soon,fail=20%")
                .unwrap()
                .unwrap()
                .exit_status(3, t, 4),
            25
        );
        assert_eq!(
            parse("now,success=1")
                .unwrap()
                .unwrap()
                .exit_status(0, t, 4),
            0
        );
        let none_failed = Tally {
            succeeded: 2,
            failed: 0,
        };
        assert_eq!(
            parse("now,done=2")
                .unwrap()
                .unwrap()
                .exit_status(0, none_failed, 4),
            101,
            "GNU's quirk"
        );
        let two_of_six = Tally {
            succeeded: 4,
            failed: 2,
        };
        assert_eq!(
            parse("soon,fail=50%")
                .unwrap()
                .unwrap()
                .exit_status_not_halted(two_of_six),
            34
        );
        assert_eq!(
            parse("now,success=1")
                .unwrap()
                .unwrap()
                .exit_status_not_halted(two_of_six),
            2
        );
    }
}
