//! Large results: from 1 MiB on they come back in shared memory, intact, and a worker that
//! dies while encoding one is an error, not a hang.

use std::time::Duration;

use multiproc_core::Error;
use multiproc_fork::{Executor, ForkPool};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// `len` values that differ for every `seed`.
fn numbers((seed, len): (u64, usize)) -> Vec<u64> {
    (0..len as u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed)
        .collect()
}

#[test]
fn large_results_cross_in_shared_memory_intact() {
    let pool = ForkPool::new(2).unwrap();
    let mut shared = 0;
    // Sizes vary, so a reused buffer holds a longer stale result than the next one.
    for round in 0..3u64 {
        let args: Vec<(u64, usize)> = [400_000, 150_000, 700_000, 200_000, 10]
            .iter()
            .enumerate()
            .map(|(i, &len)| (round * 10 + i as u64, len))
            .collect();
        let got = pool.map_chunked(numbers, args.clone(), 1).unwrap();
        for (arg, result) in args.iter().zip(&got) {
            assert!(*result == numbers(*arg), "round {round}, task {arg:?}");
        }
        let stats = pool.ipc_stats();
        assert!(
            stats.bytes_received_shared >= shared + 8 * 1_450_000,
            "the large results crossed in shared memory: {stats:?}"
        );
        assert!(
            stats.bytes_received_shared < stats.bytes_received,
            "{stats:?}"
        );
        shared = stats.bytes_received_shared;
    }
}

/// A result whose encoding kills its worker after 1.5 MiB (in shared memory by then).
#[derive(Deserialize)]
struct DiesHalfway;

impl Serialize for DiesHalfway {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(2 << 20))?;
        for i in 0..(3 << 19) {
            seq.serialize_element(&(i as u8))?;
        }
        std::process::abort();
    }
}

fn die_halfway(_: ()) -> DiesHalfway {
    DiesHalfway
}

fn double(x: u64) -> u64 {
    2 * x
}

#[test]
fn a_worker_dying_mid_result_is_an_error() {
    let pool = ForkPool::new(1).unwrap();
    let mut pending = pool.apply_async(die_halfway, ()).unwrap();
    match pending.get_timeout(Duration::from_secs(60)) {
        Err(Error::WorkerDied { .. }) => {}
        Err(e) => panic!("expected WorkerDied, got {e}"),
        Ok(_) => panic!("a result arrived from a worker that died"),
    }
    // The replacement serves the next task.
    assert_eq!(pool.apply(double, 21).unwrap(), 42);
}
