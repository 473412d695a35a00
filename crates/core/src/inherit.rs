//! [`Inherited`]: the tutorial's "module-level data, created before the Pool", made safe.
//!
//! A task is a plain `fn`, so it reaches shared data through a `static`. `Inherited<T>` is
//! that static: set it once, before creating the pool, and every task can read it —
//! on the threads backend because threads share memory, on the fork backend because forked
//! workers inherit a copy-on-write snapshot of the parent (zero copies until someone writes).
//! Setting it *after* the workers were forked is exactly the tutorial's mistake; then the
//! workers' snapshot has no value, and [`get`](Inherited::get) says so instead of returning
//! garbage.

use std::sync::OnceLock;

use crate::error::{Error, Result};

/// Read-only data that workers inherit: set once, read from tasks.
///
/// ```
/// use multiproc_core::Inherited;
///
/// static DATA: Inherited<Vec<f64>> = Inherited::new("DATA");
///
/// fn process_chunk(offset: usize) -> f64 {
///     let data = DATA.get().expect("DATA is set before the pool is created");
///     data[offset..offset + 2].iter().sum()
/// }
///
/// DATA.set(vec![1.0, 2.0, 3.0, 4.0])?;
/// // ... create the pool here, after the data ...
/// assert_eq!(process_chunk(2), 7.0);
/// # Ok::<(), multiproc_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Inherited<T> {
    name: &'static str,
    cell: OnceLock<T>,
}

impl<T> Inherited<T> {
    /// An empty slot; `name` appears in error messages.
    pub const fn new(name: &'static str) -> Self {
        Inherited {
            name,
            cell: OnceLock::new(),
        }
    }

    /// Stores the data. Do it before creating the pool whose workers read it. Setting it twice
    /// is [`Error::InvalidArgument`] (the workers may already hold the first value).
    pub fn set(&self, value: T) -> Result<()> {
        self.cell.set(value).map_err(|_| {
            Error::invalid(
                self.name,
                "this Inherited value was already set; it can be set only once",
            )
        })
    }

    /// The data. In a worker, an error means it was set after the worker was created (or
    /// never): create the data before the pool, as the tutorial says — or, on the spawn
    /// backend, use a shared array.
    pub fn get(&self) -> Result<&T> {
        self.cell.get().ok_or_else(|| {
            Error::invalid(
                self.name,
                "not set in this process: inherited data must be set before the pool is \
                 created (workers see the memory of their parent at the moment they started)",
            )
        })
    }

    /// Whether it has been set in this process.
    pub fn is_set(&self) -> bool {
        self.cell.get().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_and_double_set_are_clear_errors() {
        static SLOT: Inherited<u32> = Inherited::new("SLOT");
        let e = SLOT.get().unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { name: "SLOT", .. }));
        assert!(e.to_string().contains("before the pool is created"));
        SLOT.set(1).unwrap();
        assert_eq!(*SLOT.get().unwrap(), 1);
        assert!(matches!(
            SLOT.set(2),
            Err(Error::InvalidArgument { name: "SLOT", .. })
        ));
        assert_eq!(*SLOT.get().unwrap(), 1);
    }
}
