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

/// The timed runs a cell gets at least (if `reps` asks for that many) while the runs so far
/// took less than this many budgets: the median of three outvotes one run that a hiccup of
/// the host stretched (a page-fault stall, a descheduled virtual CPU), where the median of
/// one or two is that run.
pub(crate) const MIN_RUNS: usize = 3;

/// Whether to make another timed run after `times`: while there are fewer than `reps` (at
/// least one), and either fewer than [`MIN_RUNS`] that took less than `MIN_RUNS` budgets,
/// or the runs so far plus one more of their mean length fit in `budget`.
///
/// The runs themselves say how long the next will take, not the warm-up: a warm pool's
/// first map, or a workload's first fork, can take several times as long as the runs (a
/// warm row whose warm-up took 0.6 s and whose runs take 0.25 s gets four runs, not one).
pub(crate) fn one_more_run(times: &[Duration], reps: usize, budget: Duration) -> bool {
    if times.len() >= reps.max(1) {
        return false;
    }
    if times.is_empty() {
        return true;
    }
    let spent: Duration = times.iter().sum();
    if times.len() < MIN_RUNS {
        return spent < budget * MIN_RUNS as u32;
    }
    spent + spent / times.len() as u32 <= budget
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

    /// How many runs of `each` the rule makes.
    fn runs(each: Duration, reps: usize, budget: Duration) -> usize {
        let mut times = Vec::new();
        while one_more_run(&times, reps, budget) {
            times.push(each);
        }
        times.len()
    }

    #[test]
    fn slow_cells_get_fewer_runs_but_three_while_three_fit_in_three_budgets() {
        let s = Duration::from_secs;
        assert_eq!(runs(Duration::from_millis(10), 5, s(8)), 5);
        assert_eq!(runs(s(2), 5, s(8)), 4);
        assert_eq!(
            runs(s(3), 5, s(8)),
            3,
            "past the budget, but three fit in three"
        );
        assert_eq!(runs(s(5), 5, s(8)), 3);
        assert_eq!(
            runs(s(9), 5, s(8)),
            3,
            "27 s: the third starts at 18 s, within 24"
        );
        assert_eq!(runs(s(13), 5, s(8)), 2, "the third would start at 26 s");
        assert_eq!(runs(s(30), 5, s(8)), 1, "one run longer than three budgets");
        assert_eq!(runs(s(5), 1, s(8)), 1, "never more than asked");
        assert_eq!(runs(s(5), 2, s(8)), 2);
        assert_eq!(runs(Duration::ZERO, 7, s(8)), 7);
        assert_eq!(runs(s(1), 0, s(8)), 1, "at least one");
        // A first run that a hiccup of the host made as long as the budget is outvoted: the
        // cell still gets three.
        let spiked = [s(8), s(1)];
        assert!(one_more_run(&spiked[..1], 5, s(8)));
        assert!(one_more_run(&spiked, 5, s(8)));
        // From the third run on, the mean of those so far predicts the next.
        let uneven = [s(1), s(5), s(1)];
        assert!(
            !one_more_run(&uneven, 5, s(8)),
            "7 s so far and a mean of 2.3 s: past 8 s"
        );
        assert!(one_more_run(&[s(1), s(1), s(1)], 5, s(8)));
    }
}
