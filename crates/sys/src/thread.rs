//! The kernel's view of threads.

/// The kernel's id of the calling thread (`gettid`): unique among the threads of all
/// processes while the thread lives, equal to the pid for a process's first thread, and the
/// name of `/proc/<tid>/stat`. Cannot fail.
pub fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
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
