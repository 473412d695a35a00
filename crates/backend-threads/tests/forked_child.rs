//! A thread pool reached from a forked child (a `static`, a value a forked closure captured)
//! has none of its threads there: every call fails at once with `ForeignProcess`, and its
//! drop does nothing — no hang, and the parent's pool carries on.

use std::time::{Duration, Instant};

use multiproc_core::Error;
use multiproc_threads::{Executor, ThreadPool};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult};

fn square(x: u64) -> u64 {
    x * x
}

/// What the forked child finds; 0 when every call refused.
fn use_the_copy(p: &ThreadPool) -> i32 {
    let foreign = |r: multiproc_core::Result<()>| matches!(r, Err(Error::ForeignProcess { .. }));
    let all = foreign(p.apply_async(square, 2).map(drop))
        && foreign(p.map(square, 0..4).map(drop))
        && foreign(p.map_fn(|x: u64| x + 1, 0..4, 1).map(drop))
        && foreign(p.apply_async_fn(|| 1).map(drop))
        && foreign(p.terminate())
        && {
            p.close();
            foreign(p.join())
        };
    // SAFETY: the child owns its copy; the parent's frame that owns `p` never runs again in
    // this process (it leaves with `_exit`), so this is the copy's only drop here.
    drop(unsafe { std::ptr::read(p) });
    if all {
        0
    } else {
        3
    }
}

#[test]
fn a_thread_pool_used_from_a_forked_child_refuses_at_once() {
    let pool = ThreadPool::new(2).unwrap();
    assert_eq!(pool.map(square, 0..4).unwrap(), vec![0, 1, 4, 9]);
    // SAFETY: the child only calls methods of its copy of the pool (which, fixed, return at
    // once), allocates, and leaves with `_exit`; a lock another thread held at the fork can
    // only hang it, and the parent kills it after the deadline below.
    let pid = match unsafe { fork() }.expect("fork failed") {
        ForkResult::Child => {
            let code =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| use_the_copy(&pool)))
                    .unwrap_or(101);
            // Runs none of the parent's destructors or exit handlers.
            multiproc_sys::exit::exit_now(code)
        }
        ForkResult::Parent { child } => child,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)).unwrap() {
            WaitStatus::StillAlive => {}
            status => break status,
        }
        if Instant::now() > deadline {
            // Signalling and reaping our own unreaped child.
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            panic!("the forked child hung using the pool's copy");
        }
        // A watchdog's poll: the child's end is what we wait for.
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(
        status,
        WaitStatus::Exited(pid, 0),
        "the copy did not refuse every call"
    );
    assert_eq!(pool.map(square, 0..4).unwrap(), vec![0, 1, 4, 9]);
}
