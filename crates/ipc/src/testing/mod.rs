//! The conformance suite of `Queue`, `JoinableQueue` and `Pipe` (feature `testing`): the
//! same checks with workers that are threads, forked processes or spawned processes.
//!
//! A check is a function `check(&harness)` that panics on failure. Its workers are `fn`
//! items taking their queues and connections as one serde argument, so that a [`Harness`]
//! can start them in a thread, a forked child, or a spawned process (which receives the
//! handles through [`multiproc_core::handoff`]). A worker reports failure by panicking,
//! which the harness turns into an error on join.
//!
//! [`ipc_conformance!`](crate::ipc_conformance) turns the whole list into `#[test]`s:
//!
//! ```
//! # fn main() {}
//! # mod demo {
//! multiproc_ipc::ipc_conformance!(multiproc_ipc::testing::ThreadHarness);
//! # }
//! ```
//!
//! Process harnesses add the checks that kill a worker while it holds a queue's lock:
//! `ipc_conformance!(MyForkHarness, processes);`.

use std::time::Duration;

use multiproc_core::{Payload, Task};

use crate::Queue;

mod harness;
mod joinable;
mod killed;
mod pipe;
mod queue;

pub use harness::{Harness, ThreadHarness, ThreadWorker, Worker};
pub use joinable::joinable_join_waits_for_task_done;
pub use killed::{
    killed_lock_holder_does_not_hang_the_others, killed_mid_stream_leaves_the_queue_consistent,
};
pub use pipe::{
    pipe_carries_a_connection, pipe_carries_a_queue, pipe_carries_a_shared_array_and_a_lock,
    pipe_duplex_both_ways, pipe_eof_after_peer_dropped, pipe_poll_with_timeout,
};
pub use queue::{
    close_semantics, fifo_one_producer, get_timeout_on_empty_times_out,
    many_producers_many_consumers, put_on_full_blocks_then_times_out,
};

/// How long any single wait of a check may take before the check fails: generous, because
/// the machines that run the suite are small and busy. A correct implementation answers in
/// microseconds to milliseconds.
pub const LONG: Duration = Duration::from_secs(30);

fn start<H: Harness, A: Payload>(h: &H, f: Task<A, ()>, args: A) -> H::Worker {
    h.start(f, args)
        .unwrap_or_else(|e| panic!("starting a worker failed: {e}"))
}

fn join<W: Worker>(w: &W) {
    if let Err(e) = w.join_timeout(LONG) {
        panic!("worker failed: {e}");
    }
}

fn queue<T>(maxsize: usize, ring_bytes: usize) -> Queue<T> {
    Queue::with_capacity(maxsize, ring_bytes).expect("creating a queue")
}

/// Generates one `#[test]` per check of [`testing`](crate::testing) for a harness; add
/// `processes` for a harness whose workers are processes (adds the kill checks).
#[macro_export]
macro_rules! ipc_conformance {
    ($harness:expr) => {
        $crate::ipc_conformance!(@tests $harness;
            fifo_one_producer,
            many_producers_many_consumers,
            get_timeout_on_empty_times_out,
            put_on_full_blocks_then_times_out,
            close_semantics,
            joinable_join_waits_for_task_done,
            pipe_duplex_both_ways,
            pipe_poll_with_timeout,
            pipe_eof_after_peer_dropped,
            pipe_carries_a_connection,
            pipe_carries_a_queue,
            pipe_carries_a_shared_array_and_a_lock,
        );
    };
    ($harness:expr, processes) => {
        $crate::ipc_conformance!($harness);
        $crate::ipc_conformance!(@tests $harness;
            killed_lock_holder_does_not_hang_the_others,
            killed_mid_stream_leaves_the_queue_consistent,
        );
    };
    (@tests $harness:expr; $($check:ident,)+) => {
        $(
            #[test]
            fn $check() {
                $crate::testing::$check(&$harness);
            }
        )+
    };
}
