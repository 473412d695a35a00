//! What runs when the process exits: [`at_exit`], the one `atexit` registration of multiproc.
//!
//! Python does two things at interpreter exit, in this order: `threading` waits for every
//! non-daemon thread, then `multiprocessing` kills its daemon children and waits for the
//! others. multiproc's backends do the same through hooks registered here, each for its
//! [`ExitStage`]; one `atexit` handler (`multiproc_sys::exit::at_exit`) runs them stage by stage, whatever order they were
//! registered in (the C library runs separate `atexit` handlers in reverse order of
//! registration, which would let the first use of a backend decide what happens first).
//!
//! The hooks run when `main` returns or `std::process::exit` is called, not on `_exit` (how a
//! forked child of the fork backend leaves) or a fatal signal. A forked child inherits the
//! registered hooks: each hook does nothing for state that belongs to its parent.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use multiproc_sys::once::PerProcess;

/// When a hook runs at exit, relative to the others: every hook of a stage runs before any
/// hook of a later one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ExitStage {
    /// Waiting for threads that keep the process alive (Python's non-daemon threads).
    Threads,
    /// Child processes: killing the daemons, waiting for the others (Python's
    /// `multiprocessing` exit function).
    Children,
    /// Last: shutting down a runtime that the earlier stages may still use (the MPI
    /// backend's `MPI_Finalize`).
    Runtime,
}

impl ExitStage {
    /// Every stage, in the order they run.
    const ALL: [ExitStage; STAGES] = [ExitStage::Threads, ExitStage::Children, ExitStage::Runtime];

    fn index(self) -> usize {
        match self {
            ExitStage::Threads => 0,
            ExitStage::Children => 1,
            ExitStage::Runtime => 2,
        }
    }
}

/// The number of stages.
const STAGES: usize = 3;

/// The most hooks per stage.
const SLOTS: usize = 8;

/// The hooks of each stage, as `fn()` addresses (0: a free slot). Lock-free, so that neither
/// registering nor exiting can wait for a lock that a thread held when this process was forked
/// (a forked child inherits the table but not the threads).
static HOOKS: [[AtomicUsize; SLOTS]; STAGES] = {
    #[allow(clippy::declare_interior_mutable_const)] // each use makes a fresh atomic
    const FREE: AtomicUsize = AtomicUsize::new(0);
    #[allow(clippy::declare_interior_mutable_const)]
    const STAGE: [AtomicUsize; SLOTS] = [FREE; SLOTS];
    [STAGE; STAGES]
};

/// Whether the C handler is registered (once per process: a forked child inherits it). Not a
/// `std::sync::Once`, which a fork during `call_once` would leave "running" for ever in the
/// child, blocking its first `at_exit` (see [`PerProcess`]).
static REGISTRATION: PerProcess = PerProcess::new();

/// Registers [`run_hooks`] with the C library once per process, never waiting. Running the
/// hooks twice (a child that took over a registration its parent was making) is harmless:
/// each hook is idempotent.
fn register_handler() {
    REGISTRATION.ensure(|| {
        // SAFETY: the handler touches only statics living for the whole program (`HOOKS` and
        // the hooks' own), and it cannot unwind: every hook runs under `catch_unwind`.
        let registered = unsafe { multiproc_sys::exit::at_exit(run_hooks) };
        debug_assert!(registered.is_ok(), "atexit registration failed");
        registered.is_ok()
    });
}

/// Runs `hook` when the process exits, in `stage` (see the [module documentation](self)).
/// Registering the same hook for the same stage again does nothing; hooks of one stage run in
/// the order they were first registered. A hook that panics is abandoned (its panic does not
/// cross into the C library) and the next one runs.
///
/// # Panics
///
/// If more than 8 hooks are registered for one stage.
pub fn at_exit(stage: ExitStage, hook: fn()) {
    let address = hook as usize;
    let slots = &HOOKS[stage.index()];
    let mut added = false;
    for slot in slots {
        match slot.compare_exchange(0, address, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                added = true;
                break;
            }
            Err(present) if present == address => {
                added = true;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(added, "more than {SLOTS} exit hooks for {stage:?}");
    register_handler();
}

extern "C" fn run_hooks() {
    for stage in ExitStage::ALL {
        for slot in &HOOKS[stage.index()] {
            let address = slot.load(Ordering::Acquire);
            if address == 0 {
                break; // slots fill in order: the rest are free
            }
            // SAFETY: every non-zero value in `HOOKS` was stored by `at_exit` from a `fn()`,
            // and functions are never unloaded from this executable.
            let hook = unsafe { std::mem::transmute::<usize, fn()>(address) };
            let _ = panic::catch_unwind(AssertUnwindSafe(hook));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    use super::*;

    static RAN: Mutex<Vec<&str>> = Mutex::new(Vec::new());

    fn children() {
        RAN.lock().unwrap().push("children");
    }
    fn threads() {
        RAN.lock().unwrap().push("threads");
    }
    static PANICKED: AtomicBool = AtomicBool::new(false);

    /// Panics the first time (in the test), not again when the test binary exits.
    fn panics() {
        if !PANICKED.swap(true, Ordering::Relaxed) {
            panic!("a hook that panics");
        }
    }

    /// The only test of this binary that registers hooks: it reads the whole table.
    #[test]
    #[cfg_attr(miri, ignore = "Miri does not emulate atexit")]
    fn hooks_run_stage_by_stage_whatever_order_they_were_registered_in() {
        at_exit(ExitStage::Children, children);
        at_exit(ExitStage::Children, panics);
        at_exit(ExitStage::Threads, threads);
        at_exit(ExitStage::Children, children);
        let registered: Vec<usize> = HOOKS[ExitStage::Children.index()]
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .filter(|&a| a != 0)
            .collect();
        assert_eq!(
            registered,
            [children as fn() as usize, panics as fn() as usize],
            "registered once"
        );
        run_hooks();
        assert_eq!(*RAN.lock().unwrap(), ["threads", "children"]);
    }
}
