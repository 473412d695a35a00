//! Repetitions and their summary: median, min and max of the timed runs.

use std::time::Duration;

/// The timings of one measured cell, sorted.
#[derive(Debug, Clone)]
pub(crate) struct Samples {
    times: Vec<Duration>,
}

impl Samples {
    /// The summary of `times` (at least one).
    pub(crate) fn new(mut times: Vec<Duration>) -> Samples {
        assert!(!times.is_empty(), "a cell has at least one timed run");
        times.sort();
        Samples { times }
    }

    /// How many timed runs.
    pub(crate) fn len(&self) -> usize {
        self.times.len()
    }

    /// The median time.
    pub(crate) fn median(&self) -> Duration {
        let n = self.times.len();
        if n % 2 == 1 {
            self.times[n / 2]
        } else {
            (self.times[n / 2 - 1] + self.times[n / 2]) / 2
        }
    }

    /// The fastest run.
    pub(crate) fn min(&self) -> Duration {
        self.times[0]
    }

    /// The slowest run.
    pub(crate) fn max(&self) -> Duration {
        self.times[self.times.len() - 1]
    }
}

/// How many timed runs to make after a warm-up that took `warmup`: `reps`, unless that
/// would take more than `budget`, and then as many as fit, but at least one.
pub(crate) fn reps_for(warmup: Duration, reps: usize, budget: Duration) -> usize {
    let reps = reps.max(1);
    if warmup.is_zero() {
        return reps;
    }
    let fit = (budget.as_secs_f64() / warmup.as_secs_f64()) as usize;
    fit.clamp(1, reps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let s = Samples::new([9, 1, 2].map(Duration::from_millis).to_vec());
        assert_eq!(s.median(), Duration::from_millis(2));
        assert_eq!(
            (s.min(), s.max()),
            (Duration::from_millis(1), Duration::from_millis(9))
        );
        let s = Samples::new([3, 1].map(Duration::from_millis).to_vec());
        assert_eq!(s.median(), Duration::from_millis(2));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn slow_cells_get_fewer_runs_but_at_least_one() {
        let s = Duration::from_secs;
        assert_eq!(reps_for(Duration::from_millis(10), 5, s(8)), 5);
        assert_eq!(reps_for(s(2), 5, s(8)), 4);
        assert_eq!(reps_for(s(3), 5, s(8)), 2);
        assert_eq!(reps_for(s(5), 5, s(8)), 1);
        assert_eq!(reps_for(s(5), 1, s(8)), 1);
        assert_eq!(reps_for(Duration::ZERO, 7, s(8)), 7);
    }
}
