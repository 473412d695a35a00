//! Run with: `cargo run --release --features threads --example threading_woozle`
//!
//! Tutorial: `Lock` — five threads printing "Woozle ... Wuzzle" interleave; under a lock
//! every line comes out whole. Then the same with explicit `acquire`/`release`.

use std::io::Write;
use std::time::Duration;

use multiproc::{Lock, Thread};

fn task() {
    for i in 0..5 {
        print!("{i} Woozle ");
        std::io::stdout().flush().ok();
        std::thread::sleep(Duration::from_millis(100));
        println!("Wuzzle");
    }
}

static LOCK: Lock = Lock::new();

fn task_with_lock() {
    for i in 0..5 {
        let _held = LOCK.lock(); // `with lock:`
        print!("{i} Woozle ");
        std::io::stdout().flush().ok();
        std::thread::sleep(Duration::from_millis(100));
        println!("Wuzzle");
    }
}

fn task_acquire_release() {
    for i in 0..5 {
        LOCK.acquire();
        print!("{i} Woozle ");
        std::io::stdout().flush().ok();
        std::thread::sleep(Duration::from_millis(100));
        println!("Wuzzle");
        LOCK.release().expect("this thread acquired the lock above");
    }
}

fn run_five(task: fn()) -> multiproc::Result<()> {
    let threads = (0..5)
        .map(|_| Thread::new(task).start())
        .collect::<multiproc::Result<Vec<_>>>()?;
    for t in threads {
        t.join()?;
    }
    Ok(())
}

fn main() -> multiproc::Result<()> {
    println!("== without a lock: the output is intertwined ==");
    run_five(task)?;
    println!("== with a Lock: every line is whole ==");
    run_five(task_with_lock)?;
    println!("== with acquire/release: every line is whole ==");
    run_five(task_acquire_release)?;
    Ok(())
}
