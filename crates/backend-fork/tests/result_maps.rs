//! The pool keeps its mapping of a worker's result buffer for that worker's next large result
//! (the worker reuses the buffer once the pool has decoded the result), and gives it up with
//! the pool. Its own binary, with one test, so that no other test's pool maps buffers in this
//! process meanwhile.

use multiproc_fork::{Executor, ForkPool};

/// The read-only shared mappings of bulk buffers in this process: those a receiver keeps (a
/// sender's own are writable).
fn kept_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|line| line.contains("memfd:multiproc-bulk"))
        .filter(|line| line.split_whitespace().nth(1) == Some("r--s"))
        .count()
}

fn filled((len, byte): (usize, u8)) -> Vec<u8> {
    vec![byte; len]
}

#[test]
fn the_pool_keeps_its_mapping_of_a_workers_result_buffer() {
    let pool = ForkPool::new(1).unwrap();
    assert_eq!(kept_mappings(), 0);
    for round in 0..3u8 {
        // Sizes vary: a reused buffer holds a longer stale result than the next one.
        let len = [3 << 20, 2 << 20, 5 << 20][usize::from(round)];
        let got = pool.apply(filled, (len, round)).unwrap();
        assert!(
            got.len() == len && got.iter().all(|&b| b == round),
            "round {round}"
        );
        assert_eq!(kept_mappings(), 1, "round {round}");
    }
    drop(pool);
    assert_eq!(kept_mappings(), 0, "kept after the pool was dropped");
}
