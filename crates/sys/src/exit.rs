//! Process exit: a handler that runs at `exit` (`atexit`), and leaving without any (`_exit`).

use std::io;

/// An exit handler: a C function without arguments.
pub type Handler = extern "C" fn();

/// Registers `handler` to run at a normal exit (`exit`, returning from `main`), after the
/// handlers registered later (`atexit` runs them in reverse order of registration).
///
/// # Safety
///
/// The handler must not unwind (a panic escaping an `extern "C"` function is undefined
/// behaviour on the Rust versions this crate supports), and it runs while the program exits:
/// other threads may still run, thread-locals of the exiting thread may be gone, and
/// `std`'s own handles may be flushed and closed. It must touch only what lives for the whole
/// program (statics).
pub unsafe fn at_exit(handler: Handler) -> io::Result<()> {
    // SAFETY: `atexit` only records the function pointer; what the handler does when `exit`
    // runs it is the caller's promise above.
    let rc = unsafe { libc::atexit(handler) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::OutOfMemory,
            "atexit: no room for another handler",
        ))
    }
}

/// The C library's `exit(code)`: runs the `atexit` handlers (last registered first) and
/// flushes and closes the C library's streams, but not `std`'s runtime cleanup, which
/// `std::process::exit` adds and which takes `std`-internal locks — in the child of a fork of a
/// multithreaded process one of those may have been held at the fork by a thread that does
/// not exist there, and `std::process::exit` would hang on it.
///
/// # Safety
///
/// No other thread may call `exit` at the same time (the C library's `exit` is not
/// thread-safe; in a forked child only the forking thread exists), and every registered
/// `atexit` handler must be fine to run now, in this process.
pub unsafe fn exit_with_handlers(code: i32) -> ! {
    // SAFETY: `exit` takes an integer and never returns; that no other thread exits at the
    // same time and that the handlers may run is the caller's promise above.
    unsafe { libc::exit(code) }
}

/// `_exit(code)`: ends the process at once, running no destructors, no `atexit` handlers and
/// no flush of `std`'s buffers (flush stdout first if it matters). Async-signal-safe, so the
/// way out of a forked child.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions and is async-signal-safe; it never returns.
    unsafe { libc::_exit(code) }
}
