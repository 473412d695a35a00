//! The tutorial's `mutex` decorator, in Rust form.
//!
//! Python has no construct for "these several functions exclude each other", so the tutorial
//! writes a decorator that wraps each function in `with lock:`. In Rust the decorator is a
//! function that takes a function and a shared [`Lock`] and returns a new function that holds
//! the lock for every call.

use std::sync::Arc;

use crate::sync::Lock;

/// Wraps `f` so that every call holds `lock` (the tutorial's `mutex(func, lock)`).
///
/// Wrap several functions with clones of the same `Arc<Lock>` and no two of their calls
/// overlap, whichever thread makes them.
///
/// ```
/// use std::sync::Arc;
/// use multiproc_threads::{mutex, Lock};
///
/// let lock = Arc::new(Lock::new());
/// let safe_func1 = mutex(|name: &str| format!("{name} ran alone"), lock.clone());
/// let safe_func2 = mutex(|n: u32| n * 2, lock.clone());
/// assert_eq!(safe_func1("safeFunc1"), "safeFunc1 ran alone");
/// assert_eq!(safe_func2(21), 42);
/// assert!(!lock.locked());
/// ```
pub fn mutex<A, R>(f: impl Fn(A) -> R, lock: Arc<Lock>) -> impl Fn(A) -> R {
    move |args| {
        let _held = lock.lock();
        f(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn wrapped_functions_exclude_each_other() {
        let lock = Arc::new(Lock::new());
        let inside = Arc::new(AtomicUsize::new(0));
        let body = {
            let inside = inside.clone();
            move |_: ()| {
                assert_eq!(
                    inside.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two calls overlapped"
                );
                std::thread::sleep(Duration::from_millis(2));
                inside.fetch_sub(1, Ordering::SeqCst);
            }
        };
        let f1 = Arc::new(mutex(body.clone(), lock.clone()));
        let f2 = Arc::new(mutex(body, lock.clone()));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let f = if i % 2 == 0 { f1.clone() } else { f2.clone() };
                std::thread::spawn(move || (0..5).for_each(|_| f(())))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(!lock.locked());
    }
}
