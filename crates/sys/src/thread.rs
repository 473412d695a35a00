//! The kernel's view of threads.

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

#[cfg(test)]
mod tests {
    #[test]
    fn the_main_thread_has_the_pid_and_others_do_not() {
        let main = std::thread::spawn(super::gettid).join().unwrap();
        assert_ne!(main, std::process::id() as i32);
        assert!(main > 0);
    }
}
