//! # multiproc-spawn
//!
//! The spawn backend of multiproc: Python's `multiprocessing` with the "spawn" start method.
//! Workers are fresh processes of this same program, started with nothing inherited.
//!
//! | Python | here |
//! |---|---|
//! | `if __name__ == "__main__":` guard | [`init()`] first in `main` |
//! | `get_context("spawn").Pool` | [`SpawnPool`] (an [`Executor`]) |
//! | `Pool(initializer=f, initargs=(data,))` | [`SpawnPool::with_initializer`] |
//! | `get_context("spawn").Process` | [`Process`] → [`ProcessHandle`] |
//! | pickling the arguments | serde (the one codec, `multiproc_process::codec`); shared arrays, locks, queues travel as file descriptors |
//!
//! ## Why spawn
//!
//! A forked worker shares its parent's memory as it was at the fork — free read-only
//! sharing, but also every lock another thread held then. A spawned worker starts clean: it
//! is safe to create from a program running tokio, rayon or anything else, and it shows what
//! moving data really costs. Data reaches it by copy (arguments, once per task; an
//! initializer, once per worker) or by shared memory passed as a descriptor (a
//! `multiproc-shared-array` `RawArray` argument), which costs the same whatever its size.
//!
//! ## The one rule: `init()` first
//!
//! A worker is this program executed again. [`init`] recognises a worker (by an environment
//! variable the parent sets and a per-launch secret the parent queued on the worker's stdin
//! socket), runs it and never returns; in any other process it returns at once.
//! **Everything `main` does before `init()` runs again in every worker**, so call it first:
//!
//! ```
//! use multiproc_spawn::{Executor, SpawnPool};
//!
//! fn square(x: u64) -> u64 { x * x }
//!
//! fn main() -> multiproc_spawn::Result<()> {
//!     multiproc_spawn::init();
//!     let pool = SpawnPool::new(2)?;
//!     assert_eq!(pool.map(square, 0..5)?, vec![0, 1, 4, 9, 16]);
//!     Ok(())
//! }
//! ```
//!
//! A program that forgets `init()` gets [`Error::InitNotCalled`] when it creates a pool, not a
//! hang and not a runaway: a worker that runs `main` again and reaches pool or process
//! creation is refused (it starts nothing) and tells its parent, whose pool creation fails at
//! once; a worker whose `main` ends without creating one fails it as soon as it exits. Task
//! functions are found in the worker by their offset in the binary, so the worker must be
//! the same executable: it is started from `/proc/self/exe`, which stays the running file
//! even if a rebuild replaced it on disk.
//!
//! ## In tests
//!
//! `cargo test` binaries have libtest's `main`, not yours. Put [`test_worker!`] once at the
//! root of each test crate (each `tests/*.rs` file, or the library's test module tree root)
//! that creates spawn pools or processes: it defines a hook test that the spawned copy of the
//! test binary runs, which calls [`init`]. In the parent it is an empty test.
//!
//! ```
//! // tests/my_spawn_tests.rs: the tests below it may create SpawnPools and Processes.
//! multiproc_spawn::test_worker!();
//! # fn main() {}
//! ```
//!
//! ## Failures
//!
//! Dispatch, supervision and shutdown are `multiproc-process`'s, shared with the fork
//! backend: a task's panic is that task's [`Error::TaskPanicked`]; a worker killed mid-task
//! fails that task with [`Error::WorkerDied`] and is replaced; a worker that dies before it
//! is ready fails pool creation with the reason. Workers get `SIGKILL` when the parent
//! process dies.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod child;
#[doc(hidden)]
pub mod launch;
mod pool;
mod process;

pub use child::{check_init, init};
pub use multiproc_core::{cpu_count, PoolOptions};
pub use multiproc_core::{AsyncResult, Error, Executor, Result};
pub use multiproc_process::{Builder, FromOptions, Initializer, IpcStats, ProcessHandle};
#[doc(hidden)]
pub use pool::SpawnLauncher;
pub use pool::{SpawnPool, READY_TIMEOUT};
pub use process::Process;

/// The backend's pool under the name every backend uses (`multiproc::spawn::Pool`).
pub type Pool = SpawnPool;

/// Defines the hook test that lets a test binary act as a spawned worker: put
/// `multiproc_spawn::test_worker!();` once at the root of a test crate that uses the spawn
/// backend. The spawned copy of the test binary runs only this test (by its name,
/// [`launch::TEST_HOOK`]), which calls [`init`] and never returns; in the parent it passes
/// at once.
///
/// It also registers a startup function (an `.init_array` entry, run before libtest's
/// `main`) that marks the executable as a test binary: only then do spawned children get the
/// arguments [`launch::TEST_ARGS`] that select the hook test; other programs' children get
/// none.
#[macro_export]
macro_rules! test_worker {
    () => {
        #[test]
        fn __multiproc_spawn_worker() {
            $crate::init();
        }

        #[used]
        #[link_section = ".init_array"]
        static __MULTIPROC_SPAWN_TEST_BINARY: extern "C" fn() = {
            extern "C" fn __multiproc_spawn_mark_test_binary() {
                $crate::launch::mark_test_binary();
            }
            __multiproc_spawn_mark_test_binary
        };
    };
}
