//! [`Semaphore`] and [`BoundedSemaphore`]: Python's `threading.Semaphore` and
//! `threading.BoundedSemaphore`.

use std::sync::Mutex;
use std::time::Duration;

use multiproc_core::{Result, SyncPrimitive};

use super::condvar::{guard, wait_while, Cond};

/// A counting semaphore (Python's `threading.Semaphore`; see [`BoundedSemaphore`]).
#[derive(Debug)]
pub struct Semaphore {
    value: Mutex<usize>,
    bound: Option<usize>,
    available: Cond,
}

/// Python's `threading.BoundedSemaphore`: a semaphore that refuses to be released above its
/// initial value (an [`Error::InvalidArgument`] naming `n` whose message gives the bound; the
/// counter is left unchanged).
///
/// ```
/// use multiproc_threads::BoundedSemaphore;
///
/// let s = BoundedSemaphore::new(1);
/// assert!(s.release(1).is_err()); // would make it 2: above its bound of 1
/// assert_eq!(s.value(), 1);
/// ```
///
/// It derefs to the [`Semaphore`] it wraps ([`Semaphore::bounded`] makes the same thing).
///
/// [`Error::InvalidArgument`]: multiproc_core::Error::InvalidArgument
#[derive(Debug)]
pub struct BoundedSemaphore(Semaphore);

impl BoundedSemaphore {
    /// A bounded semaphore whose counter starts, and is capped, at `value`.
    pub const fn new(value: usize) -> Self {
        BoundedSemaphore(Semaphore::bounded(value))
    }

    /// The semaphore it wraps (always bounded).
    pub fn as_semaphore(&self) -> &Semaphore {
        &self.0
    }
}

impl std::ops::Deref for BoundedSemaphore {
    type Target = Semaphore;
    fn deref(&self) -> &Semaphore {
        &self.0
    }
}

impl From<BoundedSemaphore> for Semaphore {
    fn from(b: BoundedSemaphore) -> Semaphore {
        b.0
    }
}

impl SyncPrimitive for BoundedSemaphore {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }
}

impl multiproc_core::Semaphore for BoundedSemaphore {
    fn acquire(&self) -> Result<()> {
        multiproc_core::Semaphore::acquire(&self.0)
    }
    fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        multiproc_core::Semaphore::acquire_timeout(&self.0, timeout)
    }
    fn release(&self, n: usize) -> Result<()> {
        self.0.release(n)
    }
    fn value(&self) -> usize {
        self.0.value()
    }
    fn is_bounded(&self) -> bool {
        true
    }
}

impl Semaphore {
    /// A semaphore whose counter starts at `value`.
    pub const fn new(value: usize) -> Self {
        Semaphore {
            value: Mutex::new(value),
            bound: None,
            available: Cond::new(),
        }
    }

    /// A bounded semaphore: releasing above `value` is an error.
    pub const fn bounded(value: usize) -> Self {
        Semaphore {
            value: Mutex::new(value),
            bound: Some(value),
            available: Cond::new(),
        }
    }

    fn acquire_for(&self, timeout: Option<Duration>) -> bool {
        let (mut v, ok) = wait_while(&self.available, guard(&self.value), timeout, |v| *v == 0);
        if ok {
            *v -= 1;
        }
        ok
    }

    /// Blocks until the counter is positive, then decrements it.
    pub fn acquire(&self) {
        self.acquire_for(None);
    }

    /// Like [`acquire`](Self::acquire) for at most `timeout`; returns whether it acquired.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.acquire_for(Some(timeout))
    }

    /// Acquires only if the counter is positive now.
    pub fn try_acquire(&self) -> bool {
        self.acquire_for(Some(Duration::ZERO))
    }

    /// Increments the counter by `n`. [`Error::InvalidArgument`] on `n`, changing nothing, if
    /// `n` is 0 or a bounded semaphore would exceed its initial value (the checks of
    /// [`checked_release`](multiproc_core::sync::checked_release), shared by both families).
    ///
    /// [`Error::InvalidArgument`]: multiproc_core::Error::InvalidArgument
    pub fn release(&self, n: usize) -> Result<()> {
        let mut v = guard(&self.value);
        let new = multiproc_core::sync::checked_release(*v, n, usize::MAX, self.bound)?;
        *v = new;
        drop(v);
        for _ in 0..n.min(usize::from(u16::MAX)) {
            self.available.notify_one();
        }
        if n > usize::from(u16::MAX) {
            self.available.notify_all();
        }
        Ok(())
    }

    /// The current counter value.
    pub fn value(&self) -> usize {
        *guard(&self.value)
    }

    /// Whether it is bounded.
    pub fn is_bounded(&self) -> bool {
        self.bound.is_some()
    }
}

impl SyncPrimitive for Semaphore {
    fn kind(&self) -> &'static str {
        if self.bound.is_some() {
            "BoundedSemaphore"
        } else {
            "Semaphore"
        }
    }
}

impl multiproc_core::Semaphore for Semaphore {
    fn acquire(&self) -> Result<()> {
        Semaphore::acquire(self);
        Ok(())
    }
    fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(Semaphore::acquire_timeout(self, timeout))
    }
    fn release(&self, n: usize) -> Result<()> {
        Semaphore::release(self, n)
    }
    fn value(&self) -> usize {
        Semaphore::value(self)
    }
    fn is_bounded(&self) -> bool {
        Semaphore::is_bounded(self)
    }
}
