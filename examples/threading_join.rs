//! Run with: `cargo run --release --features threads --example threading_join`
//!
//! Tutorial: `join` a thread — block until it has finished.

use std::time::Duration;

use multiproc::Thread;

fn long_running_task(niters: u32) {
    for i in 0..niters {
        println!("{}", if i % 2 == 0 { "Tick" } else { "Tock" });
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn main() -> multiproc::Result<()> {
    let t = Thread::with_args(long_running_task, 6).start()?;

    println!("Joining thread ...");
    t.join()?;
    println!("Finished!");
    Ok(())
}
