//! Named errors of a process pool that only a custom launcher can provoke: a pool that loses
//! its last worker and cannot start another fails its queued work with `Error::NoWorkers`.

use std::io::Read;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use multiproc_core::{Error, Executor, ExitCause, Result};
use multiproc_fork::ForkLauncher;
use multiproc_process::{Launcher, ProcessPool, Worker};

/// Forks the first worker, then fails every later launch, as a system out of processes
/// would.
struct OnlyOnce {
    launches: AtomicUsize,
}

impl Launcher for OnlyOnce {
    fn launch(&self) -> Result<Worker> {
        if self.launches.fetch_add(1, Ordering::SeqCst) == 0 {
            ForkLauncher.launch()
        } else {
            Err(Error::Io(std::io::Error::other("no more processes today")))
        }
    }
}

/// The read end of the gate the first task waits on, inherited by the forked worker.
static GATE: AtomicI32 = AtomicI32::new(-1);

/// Waits until the test has queued the second task, then ends the worker.
fn wait_then_exit(_: ()) -> u8 {
    // SAFETY: GATE holds the read end of a socket pair made before the pool forked this
    // worker; only this task, run once in this process, takes ownership of it.
    let mut gate = unsafe { UnixStream::from_raw_fd(GATE.load(Ordering::SeqCst)) };
    let mut byte = [0u8];
    gate.read_exact(&mut byte).expect("the gate opens");
    std::process::exit(3);
}

fn identity(x: u8) -> u8 {
    x
}

#[test]
fn a_pool_that_cannot_replace_its_last_worker_fails_queued_work_with_no_workers() {
    let (mut open, gate) = UnixStream::pair().unwrap();
    GATE.store(gate.into_raw_fd(), Ordering::SeqCst);
    let pool = ProcessPool::new(
        1,
        OnlyOnce {
            launches: AtomicUsize::new(0),
        },
    )
    .unwrap();
    let dying = pool.apply_async(wait_then_exit, ()).unwrap();
    let queued = pool.apply_async(identity, 7).unwrap();
    std::io::Write::write_all(&mut open, b"x").unwrap();
    match dying.get() {
        Err(Error::WorkerDied {
            cause: ExitCause::Code(3),
            ..
        }) => {}
        other => panic!("the task that ended its worker gave {other:?}"),
    }
    match queued.get() {
        Err(Error::NoWorkers { cause }) => {
            assert!(
                cause.to_string().contains("no more processes today"),
                "{cause}"
            );
            assert!(matches!(*cause, Error::Io(_)), "{cause:?}");
        }
        other => panic!("the queued task gave {other:?}"),
    }
    pool.terminate().unwrap();
    // SAFETY: this process's copy of the gate's read end, owned by nothing else here.
    drop(unsafe { OwnedFd::from_raw_fd(GATE.load(Ordering::SeqCst)) });
}
