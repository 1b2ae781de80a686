//! `--timeout`: a fixed limit, or GNU parallel's `N%` of the median runtime of the jobs that succeeded so far.

use std::time::Duration;

/// How long an attempt may run before it is stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Timeout {
    /// `--timeout 30`, `--timeout 5m`.
    After(Duration),
    /// `--timeout N%`: N percent (here as a fraction) of the median runtime of the jobs that exited 0. Until one
    /// has, no job times out (GNU parallel starts with a limit of 1,000,000 seconds). Running jobs are measured
    /// against the newest median, as GNU does.
    OfMedian(f64),
}

/// GNU parallel's running median of runtimes: the remedian of Rousseeuw and Bassett (three levels of 999), which
/// is the exact (lower) median of the first 999 values.
#[derive(Debug, Default, Clone)]
pub struct Remedian {
    count: usize,
    levels: [Vec<f64>; 3],
    median: Option<f64>,
}

const BASE: usize = 999;

impl Remedian {
    /// Adds a runtime in seconds.
    pub fn push(&mut self, value: f64) {
        let i = self.count;
        self.count += 1;
        let indices = [i % BASE, i / BASE % BASE, i / BASE / BASE % BASE];
        let mut carry = value;
        for (level, &index) in indices.iter().enumerate() {
            let values = &mut self.levels[level];
            if index < values.len() {
                values[index] = carry;
            } else {
                values.push(carry);
            }
            carry = lower_median(values);
        }
        self.median = Some(carry);
    }

    /// The median so far (`None` before the first value).
    pub fn median(&self) -> Option<f64> {
        self.median
    }
}

fn lower_median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[(sorted.len() - 1) / 2]
}

impl Timeout {
    /// The limit now, given the median of successful runtimes (`None`: no limit yet).
    pub fn limit(self, median: Option<f64>) -> Option<Duration> {
        match self {
            Timeout::After(d) => Some(d),
            Timeout::OfMedian(fraction) => {
                median.and_then(|m| Duration::try_from_secs_f64(m * fraction).ok())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_remedian_is_the_lower_median_of_the_first_values() {
        let mut r = Remedian::default();
        assert_eq!(r.median(), None);
        r.push(3.0);
        assert_eq!(r.median(), Some(3.0));
        r.push(1.0);
        assert_eq!(r.median(), Some(1.0));
        r.push(2.0);
        assert_eq!(r.median(), Some(2.0));
        r.push(10.0);
        assert_eq!(r.median(), Some(2.0));
        r.push(10.0);
        assert_eq!(r.median(), Some(3.0));
    }

    #[test]
    fn past_999_values_the_levels_carry() {
        let mut r = Remedian::default();
        for i in 0..2000 {
            r.push(f64::from(i % 7));
        }
        assert_eq!(r.median(), Some(3.0));
        assert_eq!(r.levels[0].len(), 999);
        assert_eq!(r.levels[1].len(), 3);
    }

    #[test]
    fn a_percent_limit_waits_for_a_median() {
        let t = Timeout::OfMedian(2.0);
        assert_eq!(t.limit(None), None);
        assert_eq!(t.limit(Some(0.5)), Some(Duration::from_secs(1)));
        let fixed = Timeout::After(Duration::from_secs(3));
        assert_eq!(fixed.limit(None), Some(Duration::from_secs(3)));
    }
}
