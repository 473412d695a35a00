//! The tutorial's workloads. Each module measures one workload on every backend and data
//! strategy that makes sense for it, and records the pairings that do not as n/a with the
//! reason.
//!
//! Every timed run of a pool backend is what the tutorial's code does unless the workload
//! says otherwise: create the pool, run the tasks, close and join it (`with mp.Pool(...)`).

pub(crate) mod cow;
pub(crate) mod crunch;
pub(crate) mod limits;
pub(crate) mod overhead;
pub(crate) mod payload;
pub(crate) mod startup;
pub(crate) mod sum;
pub(crate) mod voxels;

/// Sums `values` with eight independent accumulators, so that the adds vectorise and the loop
/// runs at memory speed, as numpy's SIMD sum does (a plain `iter().sum()` is one dependency
/// chain, about 1 ns per element here). Every strategy sums through [`Lanes`], so results
/// are bit-identical across backends.
pub(crate) fn chunk_sum(values: &[f64]) -> f64 {
    let mut lanes = Lanes::default();
    lanes.add(values);
    lanes.total()
}

/// The accumulators of [`chunk_sum`], for sums fed block by block: blocks whose length is a
/// multiple of 8 (all but the last) give exactly the result of one [`chunk_sum`] over their
/// concatenation.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Lanes {
    lanes: [f64; 8],
    rest: f64,
}

impl Lanes {
    /// Adds a block.
    pub(crate) fn add(&mut self, block: &[f64]) {
        let mut exact = block.chunks_exact(8);
        for group in &mut exact {
            for (lane, v) in self.lanes.iter_mut().zip(group) {
                *lane += v;
            }
        }
        self.rest += exact.remainder().iter().sum::<f64>();
    }

    /// The sum.
    pub(crate) fn total(&self) -> f64 {
        self.lanes.iter().sum::<f64>() + self.rest
    }
}

/// Elements per block when a task streams a shared array through a local buffer.
pub(crate) const BLOCK: usize = 64 * 1024;

/// An empty vector with room for `len` values whose memory is advised to use transparent
/// huge pages, as numpy does for large arrays (a first touch of fresh memory is slow here, and
/// 2 MiB pages take 512 times fewer faults). It matters for fork: the kernel copies one
/// page-table entry per page into each child, 128 000 of them for 500 MB of 4 KiB pages
/// (about 5 ms per fork here) against 250 for 2 MiB pages.
pub(crate) fn with_hugepages<T>(len: usize) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(len);
    // A failure (no whole huge page inside, THP unavailable) changes nothing.
    let _ = multiproc_sys::memory::advise_hugepages(&mut v.spare_capacity_mut()[..len]);
    v
}

/// A copy of `values` in huge-page memory: numpy's `a[i:j].copy()`.
pub(crate) fn copy_of(values: &[f64]) -> Vec<f64> {
    let mut v = with_hugepages(values.len());
    v.extend_from_slice(values);
    v
}

/// `len` pseudo-random values in [0, 1), the same for the same seed, in huge-page memory.
pub(crate) fn random_f64s(len: usize, seed: u64) -> Vec<f64> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = with_hugepages(len);
    v.extend((0..len).map(|_| rng.gen::<f64>()));
    v
}

/// Why inheritance makes no sense on spawn.
pub(crate) const SPAWN_INHERITS_NOTHING: &str =
    "a spawned worker is a fresh process: it inherits nothing from the parent";

/// Compares two f64 results bit for bit (every strategy runs the same arithmetic in the same
/// order).
pub(crate) fn same_f64(what: &str, got: f64, expected: f64) -> crate::Res<()> {
    if got.to_bits() == expected.to_bits() {
        Ok(())
    } else {
        Err(format!("{what}: got {got}, serial computed {expected}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blockwise_lanes_equal_one_chunk_sum() {
        let v = random_f64s(100_003, 1);
        let whole = chunk_sum(&v);
        let mut lanes = Lanes::default();
        for block in v.chunks(8 * 1000) {
            lanes.add(block);
        }
        assert_eq!(lanes.total().to_bits(), whole.to_bits());
        assert!((whole - v.iter().sum::<f64>()).abs() < 1e-6);
    }
}
