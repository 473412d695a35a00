//! The supervisor's unit tests: its pipeline share, and a dead worker that cannot be
//! replaced.

use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use multiproc_core::{Error, Executor, ExitCause, Result};
use nix::unistd::Pid;

use super::super::{Launcher, ProcessPool, Worker};

/// Every worker reaped by a supervisor, and whether it was still listed then.
pub(super) static REAPED: Mutex<Vec<(Pid, bool)>> = Mutex::new(Vec::new());

/// Launches one stand-in worker (a `sleep` process, and a socket whose far end the test
/// holds), then fails with `EAGAIN`.
struct OneSleeper {
    far_end: Mutex<Option<UnixStream>>,
    launched: Mutex<bool>,
}

// SAFETY: `launch` returns the `sleep` child it just started, and hands it over.
unsafe impl Launcher for OneSleeper {
    fn launch(&self) -> Result<Worker> {
        let mut launched = self.launched.lock().unwrap();
        if *launched {
            return Err(Error::Io(std::io::Error::from_raw_os_error(libc::EAGAIN)));
        }
        *launched = true;
        let child = Command::new("sleep").arg("600").spawn()?;
        let (ours, theirs) = UnixStream::pair()?;
        *self.far_end.lock().unwrap() = Some(theirs);
        Ok(Worker {
            pid: Pid::from_raw(child.id() as i32),
            stream: ours,
        })
    }
}

fn never_runs(x: u8) -> u8 {
    x
}

/// A supervisor filling its pipeline from `queued` jobs, alone: how many it takes.
fn fill(queued: usize, workers: usize) -> usize {
    let mut taken = 0;
    while taken < queued && super::session::takes_another(taken, queued - taken, workers) {
        taken += 1;
    }
    taken
}

/// The pipeline is deep for a long batch, never more than a fair share of the queue, and
/// one task at a time near the tail; an idle worker always gets a task.
#[test]
fn a_supervisor_takes_its_share_of_the_queue_and_no_more() {
    use super::super::PIPELINE_DEPTH;
    assert_eq!(fill(20_000, 2), PIPELINE_DEPTH);
    assert_eq!(fill(1, 2), 1);
    assert_eq!(
        fill(3, 2),
        1,
        "a tail of under two tasks per worker goes one by one"
    );
    for workers in [1, 2, 4, 16] {
        for queued in 1..200 {
            let taken = fill(queued, workers);
            assert!(taken >= 1, "an idle worker gets a task");
            assert!(
                taken == 1 || taken <= queued.div_ceil(workers),
                "{taken} of {queued} taken by one of {workers} workers"
            );
        }
    }
}

/// The death of a worker that cannot be replaced: the worker is unlisted before it is
/// reaped (so `terminate` cannot signal its pid once it may be reused), its task fails
/// with its death, and the pool breaks with the launch error.
#[test]
fn a_dead_worker_is_unlisted_before_it_is_reaped() {
    let pool = ProcessPool::new(
        1,
        OneSleeper {
            far_end: Mutex::new(None),
            launched: Mutex::new(false),
        },
    )
    .unwrap();
    let pid = pool.pids()[0].expect("listed");
    let mut r = pool.apply_async(never_runs, 1).unwrap();
    let mut queued = pool.apply_async(never_runs, 2).unwrap();
    // The task is at the worker (the supervisor publishes its head once it wrote it): its
    // worker dies running it. (A worker that dies before a task reaches it does not make
    // that task fail: it goes to the replacement.)
    let since = std::time::Instant::now();
    while pool.shared.running[0].load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "the task never went out"
        );
        std::thread::yield_now();
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    drop(pool.shared.launcher.far_end.lock().unwrap().take());
    match r.get_timeout(Duration::from_secs(30)) {
        Err(Error::WorkerDied { pid: died, cause }) => {
            assert_eq!(died, pid.as_raw() as u32);
            assert_eq!(cause, ExitCause::Signal(libc::SIGKILL));
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    let broken = |e: &Error| matches!(e, Error::NoWorkers { cause } if cause.to_string().contains("os error 11"));
    match queued.get_timeout(Duration::from_secs(30)) {
        Err(e) => assert!(broken(&e), "the queued task got {e}"),
        Ok(v) => panic!("a task ran without a worker: {v}"),
    }
    assert!(matches!(pool.apply_async(never_runs, 3), Err(e) if broken(&e)));
    pool.close();
    assert!(matches!(pool.join(), Err(e) if broken(&e)));
    let reaped: Vec<bool> = REAPED
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| *p == pid)
        .map(|(_, listed)| *listed)
        .collect();
    assert_eq!(reaped, vec![false], "reaped while listed");
    assert!(pool.pids().iter().all(Option::is_none));
}
