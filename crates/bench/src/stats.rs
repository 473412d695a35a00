//! Repetitions and their summary: a warm-up, then median, min and max.

use std::time::{Duration, Instant};

/// The timings of one measured cell.
#[derive(Debug, Clone)]
pub struct Samples {
    times: Vec<Duration>,
}

impl Samples {
    /// Runs `f` once to warm up, then `reps` times, timing each run. `f` returns a value that
    /// is checked by the caller; the last one is returned with the samples.
    pub fn measure<T>(reps: usize, mut f: impl FnMut() -> T) -> (Samples, T) {
        let mut last = f();
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps.max(1) {
            let start = Instant::now();
            last = std::hint::black_box(f());
            times.push(start.elapsed());
        }
        times.sort();
        (Samples { times }, last)
    }

    /// The median time.
    pub fn median(&self) -> Duration {
        let n = self.times.len();
        if n % 2 == 1 {
            self.times[n / 2]
        } else {
            (self.times[n / 2 - 1] + self.times[n / 2]) / 2
        }
    }

    /// The fastest run.
    pub fn min(&self) -> Duration {
        self.times[0]
    }

    /// The slowest run.
    pub fn max(&self) -> Duration {
        self.times[self.times.len() - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let s = Samples {
            times: [1, 2, 9].map(Duration::from_millis).to_vec(),
        };
        assert_eq!(s.median(), Duration::from_millis(2));
        assert_eq!(
            (s.min(), s.max()),
            (Duration::from_millis(1), Duration::from_millis(9))
        );
        let s = Samples {
            times: [1, 3].map(Duration::from_millis).to_vec(),
        };
        assert_eq!(s.median(), Duration::from_millis(2));
    }

    #[test]
    fn measure_warms_up_and_repeats() {
        let mut calls = 0;
        let (s, last) = Samples::measure(3, || {
            calls += 1;
            calls
        });
        assert_eq!(calls, 4);
        assert_eq!(last, 4);
        assert_eq!(s.times.len(), 3);
    }
}
