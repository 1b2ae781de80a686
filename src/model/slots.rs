//! `-j`/`-P`/`--jobs`: job slots as GNU parallel reads them (`N`, `0`, `N%`, `+N`, `-N`), resolved against the
//! CPU count of the machine that runs the jobs.

/// `-j 0` ("as many as possible"). GNU parallel runs every job at once, limited only by its file handles; kb
/// uses this many slots per worker, which is more than any one machine runs usefully.
pub const UNLIMITED_SLOTS: usize = 1024;

/// A `-j` value, before the CPU count is known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JobSlots {
    /// `-j N` (N >= 1).
    Count(usize),
    /// `-j 0`: as many as possible ([`UNLIMITED_SLOTS`]).
    Unlimited,
    /// `-j N%`: that percentage of the CPUs, rounded up.
    Percent(f64),
    /// `-j +N`: the CPUs plus N.
    Plus(usize),
    /// `-j -N`: the CPUs minus N.
    Minus(usize),
}

/// A `-j` value GNU parallel would refuse.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid job slots `{0}`: give N, 0 (as many as possible), N% (of the CPUs), +N or -N (CPUs plus or minus N)"
)]
pub struct SlotsError(pub String);

impl JobSlots {
    /// Parses a `-j` value as GNU parallel does (`^\+\d+$`, `^-\d+$`, `^\d+(\.\d+)?%$`, `^\d+$`).
    pub fn parse(value: &str) -> Result<JobSlots, SlotsError> {
        let bad = || SlotsError(value.to_string());
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let count = |s: &str| {
            if digits(s) {
                s.parse::<usize>().map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        // GNU's `$` also matches before a final newline (a value read from a file).
        let value_trimmed = value.strip_suffix('\n').unwrap_or(value);
        if let Some(n) = value_trimmed.strip_prefix('+') {
            return count(n).map(JobSlots::Plus);
        }
        if let Some(n) = value_trimmed.strip_prefix('-') {
            return count(n).map(JobSlots::Minus);
        }
        if let Some(p) = value_trimmed.strip_suffix('%') {
            let (int, frac) = p.split_once('.').unwrap_or((p, "0"));
            if !digits(int) || !digits(frac) {
                return Err(bad());
            }
            return p.parse::<f64>().map(JobSlots::Percent).map_err(|_| bad());
        }
        match count(value_trimmed)? {
            0 => Ok(JobSlots::Unlimited),
            n => Ok(JobSlots::Count(n)),
        }
    }

    /// The slots on a machine with `cpus` CPUs, rounded up as GNU does. Only `-N` can give none (GNU parallel
    /// then says "Cannot run any jobs" and exits 255).
    pub fn resolve(self, cpus: usize) -> usize {
        let slots = match self {
            JobSlots::Count(n) => n,
            JobSlots::Unlimited => UNLIMITED_SLOTS,
            JobSlots::Percent(p) => {
                (cpus as f64 * p / 100.0).ceil().min(UNLIMITED_SLOTS as f64) as usize
            }
            JobSlots::Plus(n) => cpus.saturating_add(n),
            JobSlots::Minus(n) => return cpus.saturating_sub(n),
        };
        slots.max(1)
    }
}

impl std::str::FromStr for JobSlots {
    type Err = SlotsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobSlots::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gnu_forms_resolve_against_the_cpus() {
        let on8 = |v: &str| JobSlots::parse(v).unwrap().resolve(8);
        assert_eq!(on8("4"), 4);
        assert_eq!(on8("0"), UNLIMITED_SLOTS);
        assert_eq!(on8("50%"), 4);
        assert_eq!(on8("10%"), 1);
        assert_eq!(on8("12.5%"), 1);
        assert_eq!(on8("30%"), 3);
        assert_eq!(on8("200%"), 16);
        assert_eq!(on8("+2"), 10);
        assert_eq!(on8("-2"), 6);
        assert_eq!(on8("-20"), 0);
        assert_eq!(on8("-7"), 1);
        assert_eq!(on8("0%"), 1);
        assert_eq!(on8("3\n"), 3);
    }

    #[test]
    fn what_gnu_refuses_is_refused() {
        for bad in [
            "", "x", "1.5", "+", "-", "%", "+-1", "1e3", ".5%", "5.%", " 4", "4 ",
        ] {
            assert!(JobSlots::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            JobSlots::parse("abc").unwrap_err().to_string(),
            "invalid job slots `abc`: give N, 0 (as many as possible), N% (of the CPUs), +N or -N (CPUs plus or \
             minus N)"
        );
    }
}
