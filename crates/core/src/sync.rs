//! The behaviours of Python's synchronisation primitives, as traits.
//!
//! Each primitive is a trait so that a thread implementation (in `multiproc-threads`) and a
//! process-shared one living in shared memory (in `multiproc-shared-array`) are used the same
//! way and pass the same conformance suite ([`SyncFamily`] names one complete set).
//!
//! Every method that can fail returns [`Result`]: a process-shared lock whose owner died
//! reports [`Error::OwnerDied`](crate::Error::OwnerDied), releasing a lock you do not hold is
//! [`Error::NotHeld`](crate::Error::NotHeld). Every blocking call has a `_timeout` form.
//! Like Python's objects, primitives are shared by reference: put them in an `Arc` (or a
//! `static`) and hand clones of the `Arc` to threads or forked processes.

use std::time::Duration;

use crate::error::Result;

/// Marker for every synchronisation primitive: shareable between threads, with a name for
/// diagnostics.
pub trait SyncPrimitive: Send + Sync {
    /// A short name for messages and test output, such as `"Lock"`.
    fn kind(&self) -> &'static str;
}

/// A mutual-exclusion lock (Python's `Lock`).
///
/// `acquire`/`release` are the Python calls; [`lock`](Lock::lock) returns an RAII guard
/// that releases on drop, the Rust form of `with lock:`.
pub trait Lock: SyncPrimitive {
    /// Blocks until the lock is acquired.
    fn acquire(&self) -> Result<()>;
    /// Tries for at most `timeout`; returns whether the lock was acquired.
    fn acquire_timeout(&self, timeout: Duration) -> Result<bool>;
    /// Acquires only if the lock is free right now (Python's `acquire(blocking=False)`).
    fn try_acquire(&self) -> Result<bool> {
        self.acquire_timeout(Duration::ZERO)
    }
    /// Releases the lock. Releasing a lock that is not held is [`Error::NotHeld`](crate::Error::NotHeld).
    fn release(&self) -> Result<()>;
    /// Whether the lock is held by anyone right now.
    fn locked(&self) -> bool;
    /// Acquires and returns a guard that releases on drop (`with lock:`).
    ///
    /// A process-shared lock whose holder died gives [`LockError::OwnerDied`] *with the
    /// guard*: the caller holds the lock through it, and dropping it (also by turning the
    /// error into [`Error::OwnerDied`](crate::Error::OwnerDied) with `?`) releases the lock.
    fn lock(&self) -> LockResult<LockGuard<'_, Self>>
    where
        Self: Sized,
    {
        match self.acquire() {
            Ok(()) => Ok(LockGuard::new(self)),
            Err(crate::Error::OwnerDied) => Err(LockError::OwnerDied(LockGuard::new(self))),
            Err(e) => Err(LockError::Other(e)),
        }
    }
    /// [`lock`](Lock::lock) with a timeout: `Ok(None)` if it could not be acquired in time.
    fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<Option<LockGuard<'_, Self>>, LockError<LockGuard<'_, Self>>>
    where
        Self: Sized,
    {
        match self.acquire_timeout(timeout) {
            // `then`, not `then_some`: a guard built for a lock we did not get would release it.
            Ok(got) => Ok(got.then(|| LockGuard::new(self))),
            Err(crate::Error::OwnerDied) => Err(LockError::OwnerDied(LockGuard::new(self))),
            Err(e) => Err(LockError::Other(e)),
        }
    }
}

/// What the guard-returning lock calls return: [`Lock::lock`], and the shared arrays' `lock`.
pub type LockResult<G> = std::result::Result<G, LockError<G>>;

/// Why a guard-returning lock call did not simply succeed.
///
/// As std's `PoisonError` does, the owner-died case hands the guard over: the caller holds
/// the lock *through the guard*, so the lock is released when the caller is done with it,
/// whatever the caller does — recover with [`into_guard`](Self::into_guard) /
/// [`recover`](Self::recover), or propagate with `?` (the conversion into
/// [`Error::OwnerDied`](crate::Error::OwnerDied) drops the guard, which releases the lock).
#[non_exhaustive]
pub enum LockError<G> {
    /// The process that held the lock died while holding it. The caller holds the lock now,
    /// through this guard; the data the lock protects may be inconsistent.
    OwnerDied(G),
    /// Any other failure; the caller holds nothing.
    Other(crate::Error),
}

impl<G> LockError<G> {
    /// The guard of an owner-died lock (the caller holds the lock through it); `None` for
    /// other errors.
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            LockError::Other(_) => None,
        }
    }

    /// Accepts an owner-died lock: `Ok(guard)`; any other error stays an error.
    pub fn recover(self) -> Result<G> {
        match self {
            LockError::OwnerDied(g) => Ok(g),
            LockError::Other(e) => Err(e),
        }
    }

    /// Whether a process died holding the lock.
    pub fn is_owner_died(&self) -> bool {
        matches!(self, LockError::OwnerDied(_))
    }
}

impl<G> std::fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::Other(e) => f.debug_tuple("Other").field(e).finish(),
        }
    }
}

impl<G> std::fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::OwnerDied(_) => std::fmt::Display::fmt(&crate::Error::OwnerDied, f),
            LockError::Other(e) => std::fmt::Display::fmt(e, f),
        }
    }
}

impl<G> std::error::Error for LockError<G> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LockError::OwnerDied(_) => None,
            LockError::Other(e) => e.source(),
        }
    }
}

/// `?` on a [`LockError`]: the guard (if any) is dropped, which releases the lock, and the
/// error becomes [`Error::OwnerDied`](crate::Error::OwnerDied) or the other error.
impl<G> From<LockError<G>> for crate::Error {
    fn from(e: LockError<G>) -> Self {
        match e {
            LockError::OwnerDied(_) => crate::Error::OwnerDied,
            LockError::Other(e) => e,
        }
    }
}

/// A re-entrant lock (Python's `RLock`): the owner may acquire it again, and must release it
/// as many times. Only the owner may release it.
pub trait RLock: Lock {
    /// How many times the current owner holds it (0 if the caller does not own it).
    fn recursion_depth(&self) -> usize;
    /// Whether the calling thread (or process) owns it.
    fn is_owned(&self) -> bool;
}

/// The guard returned by [`Lock::lock`]: the lock is held until the guard is dropped.
///
/// Not `Send`: an `RLock` or a `Condition` is owned by the thread that took it, and a guard
/// dropped on another thread could not release it (the lock would stay held).
///
/// ```compile_fail,E0277
/// fn needs_send<T: Send>(_: T) {}
/// fn check<L: multiproc_core::sync::Lock>(lock: &L) {
///     needs_send(lock.lock());
/// }
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a, L: Lock + ?Sized> {
    lock: &'a L,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl<'a, L: Lock + ?Sized> LockGuard<'a, L> {
    fn new(lock: &'a L) -> Self {
        LockGuard {
            lock,
            _not_send: std::marker::PhantomData,
        }
    }
}

impl<L: Lock + ?Sized> std::fmt::Debug for LockGuard<'_, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("kind", &self.lock.kind())
            .finish()
    }
}

impl<L: Lock + ?Sized> Drop for LockGuard<'_, L> {
    fn drop(&mut self) {
        // The guard holds the lock, so release cannot report NotHeld unless user code
        // released it behind the guard's back; there is nothing useful to do with that here.
        let _ = self.lock.release();
    }
}

/// A boolean flag that threads can wait on (Python's `Event`).
pub trait Event: SyncPrimitive {
    /// Sets the flag and wakes every waiter.
    fn set(&self) -> Result<()>;
    /// Clears the flag.
    fn clear(&self) -> Result<()>;
    /// Whether the flag is set.
    fn is_set(&self) -> bool;
    /// Blocks until the flag is set.
    fn wait(&self) -> Result<()>;
    /// Blocks until the flag is set or `timeout` passes; returns the flag.
    fn wait_timeout(&self, timeout: Duration) -> Result<bool>;
}

/// A condition variable with its own re-entrant lock (Python's `Condition`).
///
/// Acquire it (it is a [`Lock`]), check your predicate, and [`wait`](Condition::wait): the lock
/// is released while waiting and re-acquired before returning. `notify(n)` wakes at most `n`
/// waiters, and there are no spurious wake-ups.
pub trait Condition: Lock {
    /// Releases the lock, waits for a notification, re-acquires. The lock must be held
    /// ([`Error::NotHeld`](crate::Error::NotHeld) otherwise).
    fn wait(&self) -> Result<()>;
    /// Like [`wait`](Condition::wait) for at most `timeout`; returns `false` on timeout.
    fn wait_timeout(&self, timeout: Duration) -> Result<bool>;
    /// Wakes up to `n` waiters. The lock must be held.
    fn notify(&self, n: usize) -> Result<()>;
    /// Wakes every waiter. The lock must be held.
    fn notify_all(&self) -> Result<()>;
    /// Waits until `predicate()` is true or `timeout` passes (Python's `wait_for`); returns
    /// the predicate's last value. The lock must be held.
    fn wait_for(&self, mut predicate: impl FnMut() -> bool, timeout: Duration) -> Result<bool>
    where
        Self: Sized,
    {
        let deadline = std::time::Instant::now().checked_add(timeout);
        loop {
            if predicate() {
                return Ok(true);
            }
            match deadline {
                None => self.wait()?,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Ok(predicate());
                    }
                    self.wait_timeout(left)?;
                }
            }
        }
    }
}

/// A counting semaphore (Python's `Semaphore`; and `BoundedSemaphore`, see
/// [`is_bounded`](Semaphore::is_bounded)).
pub trait Semaphore: SyncPrimitive {
    /// Blocks until the counter is positive, then decrements it.
    fn acquire(&self) -> Result<()>;
    /// Like [`acquire`](Semaphore::acquire) for at most `timeout`; returns whether it acquired.
    fn acquire_timeout(&self, timeout: Duration) -> Result<bool>;
    /// Acquires only if the counter is positive right now.
    fn try_acquire(&self) -> Result<bool> {
        self.acquire_timeout(Duration::ZERO)
    }
    /// Increments the counter by `n`, waking up to `n` waiters. A bounded semaphore refuses
    /// to go above its initial value ([`Error::InvalidArgument`](crate::Error::InvalidArgument),
    /// Python's `ValueError`), and then changes nothing.
    fn release(&self, n: usize) -> Result<()>;
    /// The current counter value.
    fn value(&self) -> usize;
    /// Whether releases above the initial value are refused.
    fn is_bounded(&self) -> bool;
}

/// The counter that [`Semaphore::release`]`(n)` leads to from `value`, checked as every
/// implementation checks it, so that both families refuse the same releases in the same words.
/// Each of these is an [`Error::InvalidArgument`](crate::Error::InvalidArgument) naming `n`, after which the caller changes
/// nothing:
///
/// - `n == 0` (Python: `ValueError('n must be one or more')`);
/// - a counter above `limit`, the implementation's largest;
/// - with a `bound` (a bounded semaphore), a counter above it.
///
/// ```
/// use multiproc_core::sync::checked_release;
///
/// assert_eq!(checked_release(1, 2, usize::MAX, None)?, 3);
/// assert!(checked_release(1, 0, usize::MAX, None).is_err()); // n of 0
/// assert!(checked_release(1, 1, usize::MAX, Some(1)).is_err()); // above the bound
/// assert!(checked_release(u32::MAX as usize, 1, u32::MAX as usize, None).is_err()); // limit
/// # Ok::<(), multiproc_core::Error>(())
/// ```
pub fn checked_release(
    value: usize,
    n: usize,
    limit: usize,
    bound: Option<usize>,
) -> Result<usize> {
    if n == 0 {
        return Err(crate::Error::invalid("n", "must be at least 1"));
    }
    let new = value
        .checked_add(n)
        .filter(|&new| new <= limit)
        .ok_or_else(|| crate::Error::invalid("n", format!("the counter would exceed {limit}")))?;
    match bound {
        Some(bound) if new > bound => Err(crate::Error::invalid(
            "n",
            format!(
                "releasing {n} would take the bounded semaphore to {new}, above its bound of \
                 {bound}"
            ),
        )),
        _ => Ok(new),
    }
}

/// A barrier for a fixed number of parties (Python's `Barrier`).
pub trait Barrier: SyncPrimitive {
    /// Waits until `parties` callers are waiting, then releases them all. Returns a distinct
    /// index in `0..parties` for each. [`Error::BrokenBarrier`](crate::Error::BrokenBarrier) if
    /// the barrier is or becomes broken.
    fn wait(&self) -> Result<usize>;
    /// Like [`wait`](Barrier::wait), but a wait that times out breaks the barrier (as in
    /// Python) and returns [`Error::Timeout`](crate::Error::Timeout); other waiters get
    /// `BrokenBarrier`.
    fn wait_timeout(&self, timeout: Duration) -> Result<usize>;
    /// Breaks the barrier: current and future waiters get `BrokenBarrier` until `reset`.
    fn abort(&self);
    /// Returns the barrier to its empty, unbroken state; current waiters get `BrokenBarrier`.
    fn reset(&self);
    /// The number of parties needed to pass.
    fn parties(&self) -> usize;
    /// How many are waiting now.
    fn n_waiting(&self) -> usize;
    /// Whether the barrier is broken.
    fn broken(&self) -> bool;
}

/// One complete set of primitives, as a backend provides it. The SyncPrimitive conformance
/// suite ([`testing::sync`](crate::testing) with the `testing` feature) is generic over this.
pub trait SyncFamily: 'static {
    /// The family's name in test output, such as `"threads"`.
    const NAME: &'static str;
    /// Its [`Lock`].
    type Lock: Lock + 'static;
    /// Its [`RLock`].
    type RLock: RLock + 'static;
    /// Its [`Event`].
    type Event: Event + 'static;
    /// Its [`Condition`].
    type Condition: Condition + 'static;
    /// Its [`Semaphore`], used both bounded and unbounded.
    type Semaphore: Semaphore + 'static;
    /// Its [`Barrier`].
    type Barrier: Barrier + 'static;

    /// A new, unlocked lock.
    fn lock() -> Result<Self::Lock>;
    /// A new, unowned re-entrant lock.
    fn rlock() -> Result<Self::RLock>;
    /// A new, clear event.
    fn event() -> Result<Self::Event>;
    /// A new condition with its own re-entrant lock.
    fn condition() -> Result<Self::Condition>;
    /// A semaphore starting at `value`.
    fn semaphore(value: usize) -> Result<Self::Semaphore>;
    /// A semaphore starting at `value` that refuses to be released above it.
    fn bounded_semaphore(value: usize) -> Result<Self::Semaphore>;
    /// A barrier for `parties` parties; 0 parties is
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument).
    fn barrier(parties: usize) -> Result<Self::Barrier>;
}
