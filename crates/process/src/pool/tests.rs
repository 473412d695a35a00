//! The pool's wake-ups and its reply journal, with workers that are threads of this test
//! serving the real worker loop or a script (each paired with a `cat` child as the pid the
//! pool reaps).

use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use multiproc_core::{Executor, Result};
use nix::unistd::Pid;

use super::{Launcher, ProcessPool, Worker};

/// Launches workers that are threads running [`crate::worker::serve`] ([`thread_worker`]).
struct ThreadWorkers;

/// A worker that is a thread of this test running `run` on its end of the stream; its pid is
/// a `cat` child that exits when the thread ends (its stdin closes).
fn thread_worker(run: impl FnOnce(UnixStream) + Send + 'static) -> Result<Worker> {
    let mut child = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let stdin = child.stdin.take();
    let (ours, theirs) = UnixStream::pair()?;
    std::thread::spawn(move || {
        run(theirs);
        drop(stdin);
    });
    Ok(Worker {
        pid: Pid::from_raw(child.id() as i32),
        stream: ours,
    })
}

// SAFETY: `launch` hands over the `cat` child it just started, which nothing else waits
// for or signals.
unsafe impl Launcher for ThreadWorkers {
    fn launch(&self) -> Result<Worker> {
        thread_worker(|theirs| {
            // SAFETY: the other end is a pool of this process, which sends offsets made by
            // `offset_of` in this process and keeps to the bulk protocol.
            unsafe { crate::worker::serve(theirs) };
        })
    }
}

fn inc(x: u64) -> u64 {
    x + 1
}

/// `apply` after `apply` on a pool of two: the supervisor that delivered a result takes the
/// caller's next task itself, so the other supervisor sleeps through them all (waking it
/// only for it to find the queue empty costs a wake-up that, on two cores, competes with
/// the worker).
#[test]
fn one_task_after_another_wakes_no_idle_supervisor_for_nothing() {
    let pool = ProcessPool::new(2, ThreadWorkers).unwrap();
    for i in 0..300 {
        assert_eq!(pool.apply(inc, i).unwrap(), i + 1);
    }
    let idle = pool.shared.idle_wakeups.load(Ordering::Relaxed);
    pool.close();
    pool.join().unwrap();
    // A condition variable may wake spuriously now and then; the old behaviour woke the
    // other supervisor for most of the 300 tasks.
    assert!(idle <= 10, "{idle} wake-ups found no job in 300 tasks");
}

/// A job whose submission was cancelled before a supervisor took it (the flag is set before
/// the canceller removes queued jobs; here, before the job is even queued) is finished by
/// that supervisor before it sleeps: held across the sleep, its ticket would keep `join`
/// waiting for ever.
#[test]
fn a_job_cancelled_before_a_supervisor_takes_it_does_not_keep_join_waiting() {
    use multiproc_core::{Batch, ChunkSink, Error};
    use std::num::NonZeroUsize;
    use std::sync::mpsc;
    use std::time::Duration;

    let pool = std::sync::Arc::new(ProcessPool::new(1, ThreadWorkers).unwrap());
    // The supervisor is idle after this: it will sleep once it finds the queue empty.
    assert_eq!(pool.apply(inc, 1).unwrap(), 2);
    let (sink, result) = ChunkSink::<u64>::single();
    assert!(result.cancel());
    let one = NonZeroUsize::new(1).unwrap();
    pool.submit(inc, Batch::new(vec![7u64], one), sink).unwrap();
    pool.close();
    let (done, joined) = mpsc::channel();
    let joiner = pool.clone();
    std::thread::spawn(move || done.send(joiner.join()));
    // A generous deadline: `join` has nothing to wait for but one cancelled job.
    let outcome = joined.recv_timeout(Duration::from_secs(20));
    assert!(
        matches!(outcome, Ok(Ok(()))),
        "join did not return: {outcome:?}"
    );
    assert!(matches!(result.get(), Err(Error::Cancelled)));
}

/// A `map` of trivial tasks: the worker's replies reach the pool in batches (through its
/// reply journal), not in one socket frame each — a frame per reply was a `send` and a
/// supervisor wake-up per task, most of the cost of such a map.
#[test]
fn replies_of_many_small_tasks_arrive_in_batches() {
    let pool = ProcessPool::new(1, ThreadWorkers).unwrap();
    let n = 2000u64;
    let out = pool.map_chunked(inc, 0..n, 1).unwrap();
    assert_eq!(out, (1..=n).collect::<Vec<_>>());
    let frames = pool.shared.socket_frames.load(Ordering::Relaxed);
    pool.close();
    pool.join().unwrap();
    assert!(
        frames < n as usize / 4,
        "{frames} socket frames for {n} replies"
    );
}

/// The gate a [`wait_for_gate`] task waits at, opened by the test.
static GATE: (std::sync::Mutex<bool>, std::sync::Condvar) =
    (std::sync::Mutex::new(false), std::sync::Condvar::new());

/// Returns `x + 1`; for `x == 1`, only once the test opens [`GATE`].
fn wait_for_gate(x: u64) -> u64 {
    if x == 1 {
        let (open, opened) = &GATE;
        let mut open = open.lock().unwrap();
        while !*open {
            open = opened.wait(open).unwrap();
        }
    }
    x + 1
}

/// A fast task's result reaches the caller while the next task, already at the worker, still
/// runs: a reply the worker kept back for a batch is not held up by a long task after it.
#[test]
fn a_result_is_not_held_back_by_the_long_task_after_it() {
    use std::time::Duration;

    let pool = ProcessPool::new(1, ThreadWorkers).unwrap();
    // The supervisor sends tasks 0 and 1 together (its share of a queue of four).
    let mut results = pool.imap(wait_for_gate, 0..4u64).unwrap();
    // Task 1 cannot finish before the gate opens, which happens only after this.
    let first = results.next_timeout(Duration::from_secs(20));
    {
        let (open, opened) = &GATE;
        *open.lock().unwrap() = true;
        opened.notify_all();
    }
    assert_eq!(first.map(|r| r.unwrap()), Some(1));
    let rest: Vec<u64> = results.map(|r| r.unwrap()).collect();
    assert_eq!(rest, [2, 3, 4]);
    pool.close();
    pool.join().unwrap();
}

/// Opened by the task of a [`Large`] argument's first chunk.
static FIRST_RAN: (std::sync::Mutex<bool>, std::sync::Condvar) =
    (std::sync::Mutex::new(false), std::sync::Condvar::new());

/// An argument of `.1` bytes; unless it is the first (`.0`), encoding it waits (up to 20 s)
/// until the first one's task has run.
#[derive(serde::Deserialize)]
struct Large(bool, Vec<u8>);

impl serde::Serialize for Large {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if !self.0 {
            let (ran, signal) = &FIRST_RAN;
            let ran = ran.lock().unwrap();
            let (ran, _) = signal
                .wait_timeout_while(ran, std::time::Duration::from_secs(20), |ran| !*ran)
                .unwrap();
            if !*ran {
                return Err(serde::ser::Error::custom(
                    "still encoding the second chunk: the first never ran",
                ));
            }
        }
        (self.0, &self.1).serialize(s)
    }
}

/// The size of a [`Large`], noting that a task ran.
fn note_ran(arg: Large) -> usize {
    let (ran, signal) = &FIRST_RAN;
    *ran.lock().unwrap() = true;
    signal.notify_all();
    arg.1.len()
}

/// A map of large arguments: a chunk is on its way to a worker as soon as it is encoded, not
/// once the whole batch is (encoding 400 MB of index lists took the caller 0.4 s, while the
/// workers waited).
#[test]
fn a_large_chunk_starts_while_the_next_is_encoded() {
    let pool = ProcessPool::new(1, ThreadWorkers).unwrap();
    let args = vec![Large(true, vec![1; 2 << 20]), Large(false, vec![2; 16])];
    let sizes = pool.map_chunked(note_ran, args, 1);
    pool.close();
    pool.join().unwrap();
    assert_eq!(sizes.unwrap(), [2 << 20, 16]);
}

/// Returns `x + 1`; for every third `x`, after about a millisecond of work (0.8–1.4 ms).
fn fast_or_about_a_ms(x: u64) -> u64 {
    if x % 3 == 1 {
        let t = std::time::Instant::now();
        let us = 800 + (x * 7919 % 600);
        while t.elapsed() < std::time::Duration::from_micros(us) {}
    }
    x + 1
}

/// Fast and slower tasks mixed, so that the supervisor's looks at the journal's tail (while
/// it waits with tasks out) meet replies arriving at every moment: none is ever missed — a
/// frame that arrived between a wait's end and a look was once buffered and never read.
#[test]
fn replies_arriving_while_the_supervisor_looks_at_the_journal_are_all_read() {
    use std::time::Duration;

    let pool = ProcessPool::new(1, ThreadWorkers).unwrap();
    for round in 0..500u64 {
        let base = round * 3;
        let mut results = pool.imap(fast_or_about_a_ms, base..base + 3).unwrap();
        for i in 0..3 {
            let r = results.next_timeout(Duration::from_secs(10));
            if !matches!(r, Some(Ok(v)) if v == base + i + 1) {
                // Left behind: dropping a pool whose supervisor is stuck would wait for it.
                std::mem::forget(results);
                std::mem::forget(pool);
                panic!("round {round}, result {i}: {r:?}");
            }
        }
    }
    pool.close();
    pool.join().unwrap();
}

mod scripted;
