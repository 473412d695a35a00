//! The kernel's view of threads.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The kernel's id of the calling thread (`gettid`): unique among the threads of all
/// processes while the thread lives, equal to the pid for a process's first thread, and the
/// name of `/proc/<tid>/stat`. Cannot fail.
pub fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// Sets the calling thread's timer slack (`PR_SET_TIMERSLACK`) to `ns` nanoseconds: how much
/// later than asked the kernel may end its sleeps (50 µs by default, which makes short naps
/// long). Best effort: an error leaves the default.
pub fn set_timer_slack_ns(ns: u64) {
    let _ = nix::sys::prctl::set_timerslack(ns);
}

/// How many CPUs this process may run on now (`available_parallelism`: the affinity mask and
/// the cgroup quota). At least 1.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// [`cpus`], asked once per process and remembered: for decisions made on hot paths (whether
/// to spin, how many threads to copy on), where reading the cgroup files every time would
/// cost more than the decision saves.
///
/// Remembered in a plain atomic, not a `OnceLock`: a fork while another thread is filling a
/// `OnceLock` leaves it "being filled" in the child for ever, and the child's first call
/// then waits for good. That hung forked pool workers (decoding a chunk, they ask this) in
/// one run of the fork backend's `nested` tests out of twenty. Threads that ask at the same
/// time each compute the same answer; a forked child sees it or computes its own.
pub fn cpus_once() -> usize {
    static CPUS: AtomicUsize = AtomicUsize::new(0);
    match CPUS.load(Ordering::Relaxed) {
        0 => {
            let n = cpus();
            CPUS.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_main_thread_has_the_pid_and_others_do_not() {
        let main = std::thread::spawn(super::gettid).join().unwrap();
        assert_ne!(main, std::process::id() as i32);
        assert!(main > 0);
    }
}
