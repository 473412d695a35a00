//! Run with: `cargo run --release --features threads --example threading_tick_tock`
//!
//! Tutorial: "Running a task in a separate thread" — start a thread, poll `is_alive`.

use std::time::Duration;

use multiproc::Thread;

fn long_running_task(niters: u32) {
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
    let t = Thread::with_args(long_running_task, 8).start()?;

    while t.is_alive() {
        std::thread::sleep(Duration::from_millis(400));
        println!("Waiting for thread to finish...");
    }
    println!("Finished!");
    Ok(())
}
