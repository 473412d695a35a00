//! The pool's wake-ups, with workers that are threads of this test serving the real worker
//! loop (each paired with a `cat` child as the pid the pool reaps).

use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use multiproc_core::{Executor, Result};
use nix::unistd::Pid;

use super::{Launcher, ProcessPool, Worker};

/// Launches workers that are threads running [`crate::worker::serve`]; the pid of each is a
/// `cat` that exits when its worker thread ends (its stdin closes).
struct ThreadWorkers;

// SAFETY: `launch` hands over the `cat` child it just started, which nothing else waits
// for or signals.
unsafe impl Launcher for ThreadWorkers {
    fn launch(&self) -> Result<Worker> {
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        let stdin = child.stdin.take();
        let (ours, theirs) = UnixStream::pair()?;
        std::thread::spawn(move || {
            // SAFETY: the other end is a pool of this process, which sends offsets made by
            // `offset_of` in this process and keeps to the bulk protocol.
            unsafe { crate::worker::serve(theirs) };
            drop(stdin);
        });
        Ok(Worker {
            pid: Pid::from_raw(child.id() as i32),
            stream: ours,
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
