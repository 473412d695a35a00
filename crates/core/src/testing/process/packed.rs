//! Large [`Packed`] arguments read where they arrived: a worker reads them in the pool's
//! shared-memory buffer ([`crate::packed::lend`]); one that outlives its task keeps its values
//! while the pool goes on with other arguments; a child forked by a task can read one.

use std::sync::Mutex;

use super::*;
use crate::packed::LEND_MIN;

/// Values enough for a body in shared memory (4 MiB), told apart by `seed`.
fn values(seed: u64) -> Packed<u64> {
    (0..(4u64 << 17)).map(|i| seed << 32 | i).collect()
}

/// Whether `p` holds what [`values`]`(seed)` made.
fn holds(p: &[u64], seed: u64) -> bool {
    p.len() == 4 << 17
        && p.iter()
            .enumerate()
            .all(|(i, &v)| v == seed << 32 | i as u64)
}

/// A task: whether its argument was lent, and whether it holds what `seed` made.
pub fn lent_and_intact((p, seed): (Packed<u64>, u64)) -> (bool, bool) {
    (p.is_lent(), holds(&p, seed))
}

/// Arguments kept by [`keep`] in the worker.
static KEPT: Mutex<Vec<(Packed<u64>, u64)>> = Mutex::new(Vec::new());

/// A task: keeps its argument after it returns (in a static of the worker); whether it was
/// lent.
pub fn keep((p, seed): (Packed<u64>, u64)) -> bool {
    let lent = p.is_lent();
    KEPT.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((p, seed));
    lent
}

/// A task: whether every argument [`keep`] kept still holds its values.
pub fn kept_intact(_: ()) -> bool {
    let kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    !kept.is_empty() && kept.iter().all(|(p, seed)| holds(p, *seed))
}

/// Forks a child that runs `check` and leaves with 0 if it holds, 1 if not; returns the
/// child's exit code (-1 for a signal: memory the check read was not mapped in the child).
/// `check` must only read memory (the child of a possibly multithreaded process takes no
/// lock).
fn in_a_child(check: impl FnOnce() -> bool) -> i32 {
    // SAFETY: the child only runs `check`, which reads memory, and leaves with `_exit`.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => exit_now(if check() { 0 } else { 1 }),
        ForkResult::Parent { child } => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => code,
            _ => -1,
        },
    }
}

/// A task: forks a child that checks its argument holds what `seed` made; returns the
/// child's exit code (0 if it does, 1 if not, -1 for a signal: the memory was not mapped in
/// the child).
pub fn fork_and_check((p, seed): (Packed<u64>, u64)) -> i32 {
    in_a_child(|| holds(&p, seed))
}

/// A large `Packed` argument is read where it arrived (lent), and holds its values; a small
/// one is copied.
pub fn a_large_packed_argument_is_read_where_it_arrived<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 1);
    for seed in 0..3 {
        assert_eq!(
            p.apply(lent_and_intact, (values(seed), seed)).unwrap(),
            (true, true),
            "argument {seed}"
        );
    }
    let small: Packed<u64> = (0..(LEND_MIN as u64 / 8 / 2)).collect();
    let (lent, _) = p.apply(lent_and_intact, (small, 0)).unwrap();
    assert!(!lent, "a small block is copied");
}

/// Arguments a task keeps after it returns hold their values while the pool sends the next
/// arguments, of the same size (which would reuse the buffer of a body read and done with).
pub fn a_kept_packed_argument_keeps_its_values<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 1);
    for seed in 1..=3 {
        assert!(p.apply(keep, (values(seed), seed)).unwrap(), "lent");
        assert_eq!(
            p.apply(lent_and_intact, (values(seed + 10), seed + 10))
                .unwrap(),
            (true, true)
        );
    }
    assert!(p.apply(kept_intact, ()).unwrap(), "a kept argument changed");
}

/// A child forked by a task reads the task's lent argument (the memory is mapped there too),
/// and the pool goes on with other arguments.
pub fn a_child_forked_by_a_task_reads_its_packed_argument<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 1);
    assert_eq!(p.apply(fork_and_check, (values(5), 5)).unwrap(), 0);
    assert_eq!(
        p.apply(lent_and_intact, (values(6), 6)).unwrap(),
        (true, true)
    );
}

/// A task: a large `Packed` result made from `seed`.
pub fn make_values(seed: u64) -> Packed<u64> {
    values(seed)
}

/// A large `Packed` result is read where it arrived (lent) and holds its values, and a
/// result dropped before the next one gives its buffer back: the worker does not pile them
/// up. (Whether it writes the next result in the same buffer depends on forks elsewhere in
/// this process while the result was lent — other tests' pools fork — so it is not checked.)
pub fn a_large_packed_result_is_read_where_it_arrived<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 1);
    for seed in 0..12 {
        let r = p.apply(make_values, seed).unwrap();
        assert!(r.is_lent(), "result {seed} copied");
        assert!(holds(&r, seed), "result {seed}");
    }
    worker_holds_at_most(&p, 4, "after 12 results were dropped");
}

/// Results the caller keeps hold their values while the worker makes more of the same size.
pub fn a_kept_packed_result_keeps_its_values<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 1);
    let kept: Vec<(Packed<u64>, u64)> = (1..=4)
        .map(|seed| (p.apply(make_values, seed).unwrap(), seed))
        .collect();
    for (r, seed) in &kept {
        assert!(r.is_lent() && holds(r, *seed), "kept result {seed} changed");
    }
    drop(kept);
    let r = p.apply(make_values, 9).unwrap();
    assert!(r.is_lent() && holds(&r, 9));
}

/// A child the caller forks while it holds a lent result reads the result there.
pub fn a_child_forked_by_the_caller_reads_a_packed_result<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 1);
    let r = p.apply(make_values, 5).unwrap();
    assert!(r.is_lent());
    assert_eq!(
        in_a_child(|| holds(&r, 5)),
        0,
        "the child could not read it"
    );
    drop(r);
    let again = p.apply(make_values, 6).unwrap();
    assert!(again.is_lent() && holds(&again, 6));
}

/// A task: a `Packed` result of `bytes` bytes, all `7`.
pub fn make_bytes(bytes: usize) -> Packed<u8> {
    Packed::new(vec![7; bytes])
}

/// Checks that the worker of `p` (a pool of one) holds at most `most` shared-memory buffers
/// open, `when` (said in the failure).
fn worker_holds_at_most<E: Executor>(p: &E, most: usize, when: &str) {
    let open = p.apply(bulk_buffers, ()).unwrap();
    assert!(open <= most, "the worker holds {open} buffers {when}");
}

/// A task: how many of the pool's shared-memory buffers its worker holds open.
pub fn bulk_buffers(_: ()) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("the worker's own /proc/self/fd")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().contains("multiproc-bulk"))
        .count()
}

/// Results the caller keeps are lent only up to a bound: past it they are copied, so a
/// caller that keeps many large results does not make the worker hold a buffer (and a
/// descriptor) for each.
pub fn kept_results_hold_a_bounded_number_of_worker_buffers<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 1);
    let kept: Vec<Packed<u8>> = (0..48)
        .map(|_| p.apply(make_bytes, 3 << 19).unwrap())
        .collect();
    assert!(kept
        .iter()
        .all(|r| r.len() == 3 << 19 && r.iter().all(|&b| b == 7)));
    assert!(kept[0].is_lent(), "the first results are lent");
    worker_holds_at_most(&p, 24, "for 48 kept results");
}

/// A result lent while the caller forks stays lent for good (a child may read it), but the
/// worker does not keep that buffer for it: dropped results give back what they held.
pub fn results_lent_across_a_fork_do_not_pile_up_in_the_worker<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 1);
    for _ in 0..20 {
        let r = p.apply(make_bytes, 3 << 19).unwrap();
        assert!(r.is_lent());
        assert_eq!(in_a_child(|| true), 0);
        drop(r);
    }
    worker_holds_at_most(&p, 4, "after 20 results it was told of");
}
