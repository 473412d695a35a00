//! Run with: `cargo run --release --features threads --example threading_mutex_decorator`
//!
//! Tutorial: the `mutex` decorator — two methods that share one lock, so no call of either
//! overlaps another. Set `NO_MUTEX=1` to see what happens without it.

use std::sync::Arc;
use std::time::Duration;

use multiproc::{mutex, Lock, Thread};

struct MyClass {
    safe_func1: Box<dyn Fn(()) + Send + Sync>,
    safe_func2: Box<dyn Fn(()) + Send + Sync>,
}

fn safe_func1(_: ()) {
    std::thread::sleep(Duration::from_millis(100));
    println!("safeFunc1 start");
    std::thread::sleep(Duration::from_millis(200));
    println!("safeFunc1 end");
}

fn safe_func2(_: ()) {
    std::thread::sleep(Duration::from_millis(100));
    println!("safeFunc2 start");
    std::thread::sleep(Duration::from_millis(200));
    println!("safeFunc2 end");
}

impl MyClass {
    fn new() -> Self {
        if std::env::var_os("NO_MUTEX").is_some() {
            return MyClass {
                safe_func1: Box::new(safe_func1),
                safe_func2: Box::new(safe_func2),
            };
        }
        // self.safeFunc1 = mutex(self.safeFunc1, lock), and the same lock for safeFunc2
        let lock = Arc::new(Lock::new());
        MyClass {
            safe_func1: Box::new(mutex(safe_func1, lock.clone())),
            safe_func2: Box::new(mutex(safe_func2, lock)),
        }
    }
}

fn main() -> multiproc::Result<()> {
    let mc = Arc::new(MyClass::new());
    let mut threads = Vec::new();
    for f in [1, 2] {
        for _ in 0..4 {
            let mc = mc.clone();
            threads.push(
                Thread::new(move || {
                    if f == 1 {
                        (mc.safe_func1)(())
                    } else {
                        (mc.safe_func2)(())
                    }
                })
                .start()?,
            );
        }
    }
    for t in threads {
        t.join()?;
    }
    Ok(())
}
