//! Handlers around `fork` (`pthread_atfork`).

use std::io;

/// A fork handler: a C function without arguments.
pub type Handler = unsafe extern "C" fn();

/// Registers `prepare` (run in the parent before each `fork`), `parent` (in the parent after
/// it) and `child` (in the child after it); handlers cannot be unregistered. Fails only when
/// out of memory (`ENOMEM`).
///
/// # Safety
///
/// The handlers run inside every later `fork` of this process, by whichever thread forks,
/// possibly while other threads hold locks. `child` runs in a copy of a possibly multithreaded
/// process in which only the forking thread exists, so it must only do what is
/// async-signal-safe (store to atomics, make raw system calls; no allocation, no locks that
/// another thread could have held at the fork). No handler may unwind, and each must stay
/// valid (not be unloaded) for the rest of the program.
pub unsafe fn register(
    prepare: Option<Handler>,
    parent: Option<Handler>,
    child: Option<Handler>,
) -> io::Result<()> {
    // SAFETY: `pthread_atfork` only records the three function pointers; what they do when a
    // fork runs them is the caller's promise above.
    let rc = unsafe { libc::pthread_atfork(prepare, parent, child) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}
