//! Run with: `cargo run --release --features threads --example threading_subclass`
//!
//! Tutorial: "Subclassing Thread" — in Rust, implement the `Run` trait.

use std::time::Duration;

use multiproc::{Run, Thread};

struct LongRunningThread {
    niters: u32,
}

impl Run for LongRunningThread {
    type Output = ();

    fn run(self) {
        for i in 0..self.niters {
            println!("{}", if i % 2 == 0 { "Tick" } else { "Tock" });
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn main() -> multiproc::Result<()> {
    let t = Thread::from_run(LongRunningThread { niters: 6 }).start()?;
    t.join()?;
    println!("Done");
    Ok(())
}
