//! Run with: `cargo run --release --features fork --example fork_process_tick_tock`
//!
//! Tutorial: "`threading`-equivalent API" — replace `threading.Thread` with
//! `multiprocessing.Process`: the tick/tock task runs in a forked child process, and the
//! parent polls `is_alive` exactly as it polled the thread in `threading_tick_tock`.
//!
//! `Process::new(target, args)` has the same shape on every backend: for a spawned child,
//! change the `use` to `multiproc::spawn::Process` (feature `spawn`, and `multiproc::init()`
//! first in `main`), or to `multiproc::Process` to follow the start method.

use std::time::Duration;

use multiproc::fork::Process;

fn long_running_task(niters: u32) {
    println!("Child process {} started", std::process::id());
    for i in 0..niters {
        if i % 2 == 0 {
            println!("Tick");
        } else {
            println!("Tock");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn main() -> multiproc::Result<()> {
    println!("Parent process {}", std::process::id());
    let p = Process::new(long_running_task, 8).start()?;

    while p.is_alive() {
        std::thread::sleep(Duration::from_millis(400));
        println!("Waiting for process to finish...");
    }
    p.join()?;
    println!("Finished! (exit code {:?})", p.exitcode());
    Ok(())
}
