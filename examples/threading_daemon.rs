//! Run with: `cargo run --release --features threads --example threading_daemon`
//!
//! Tutorial: "Daemon threads" — the program exits without waiting for a daemon thread,
//! but waits for a non-daemon one, exactly as in Python.

use std::time::{Duration, Instant};

use multiproc::Thread;

fn long_running_task(name: &'static str) {
    for i in 0.. {
        println!("{name}: {}", if i % 2 == 0 { "Tick" } else { "Tock" });
        std::thread::sleep(Duration::from_millis(500));
        if name == "worker" && i == 3 {
            println!("{name}: done");
            return;
        }
    }
}

fn main() -> multiproc::Result<()> {
    let start = Instant::now();
    // t.daemon = True: this one would tick forever; the program will not wait for it.
    Thread::with_args(long_running_task, "daemon")
        .daemon(true)
        .start()?;
    // A normal (non-daemon) thread: the program waits for it even though main returns first.
    Thread::with_args(long_running_task, "worker").start()?;
    println!(
        "main returns after {:.1} s; the program ends when the non-daemon thread does",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
