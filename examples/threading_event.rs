//! Run with: `cargo run --release --features threads --example threading_event`
//!
//! Tutorial: `Event` — a worker processes random data, prints its mean and signals.

use std::sync::Arc;
use std::time::Duration;

use multiproc::{Event, Thread};
use rand::Rng;

fn main() -> multiproc::Result<()> {
    let processing_finished = Arc::new(Event::new());

    // data = np.random.randint(1, 100, 100)
    let mut rng = rand::thread_rng();
    let data: Vec<u32> = (0..100).map(|_| rng.gen_range(1..100)).collect();

    let finished = processing_finished.clone();
    let process_data = move |data: Vec<u32>| {
        println!("Processing data ...");
        std::thread::sleep(Duration::from_secs(2));
        let mean = data.iter().sum::<u32>() as f64 / data.len() as f64;
        println!("Result: {mean}");
        finished.set();
    };

    let t = Thread::with_args(process_data, data).start()?;

    processing_finished.wait();
    println!("Processing finished!");
    t.join()?;
    Ok(())
}
