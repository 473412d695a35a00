//! Thread-level synchronisation primitives: Python's `threading.Lock`, `RLock`, `Event`,
//! `Condition`, `Semaphore`, `BoundedSemaphore` and `Barrier`.
//!
//! Each type has inherent methods with Python's names (so no trait import is needed) and
//! implements the matching `multiproc_core::sync` trait; [`ThreadSync`] names the whole set
//! for generic code and the conformance suite. All are built on `std::sync::{Mutex, Condvar}`
//! (the `Condvar` wrapped so that a release nobody waits for makes no system call) and are
//! `const`-constructible where Python code would use a module-level object, so they can be
//! `static`s.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, ThreadId};
use std::time::Duration;

use multiproc_core::{Error, LockGuard, Result, SyncFamily, SyncPrimitive};

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below is a handful of field assignments that cannot panic
    // half-way, so a poisoned mutex still holds consistent state.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A condition variable that skips the wake-up system call when nobody waits: std's
/// `Condvar::notify_*` always makes one (a futex wake), which made an uncontended
/// `Lock` acquire + release cost ~10× a `Mutex` lock + unlock.
///
/// `waiters` is changed only by [`wait_while`], under the mutex the waiter waits with. A
/// notifier changes the shared state under that same mutex before it notifies, so a waiter
/// counted after the notifier's critical section saw the new state and did not wait, and a
/// waiter counted before it is visible to the notifier (the mutex orders the two).
#[derive(Debug, Default)]
struct Cond {
    cv: Condvar,
    waiters: AtomicUsize,
}

impl Cond {
    const fn new() -> Self {
        Cond {
            cv: Condvar::new(),
            waiters: AtomicUsize::new(0),
        }
    }

    fn notify_one(&self) {
        if self.waiters.load(Ordering::Relaxed) > 0 {
            self.cv.notify_one();
        }
    }

    fn notify_all(&self) {
        if self.waiters.load(Ordering::Relaxed) > 0 {
            self.cv.notify_all();
        }
    }
}

/// Waits on `cv` while `blocked` holds, for at most `timeout`; returns the guard and whether
/// the condition was met (false: timed out).
fn wait_while<'a, T>(
    cv: &Cond,
    g: MutexGuard<'a, T>,
    timeout: Option<Duration>,
    mut blocked: impl FnMut(&mut T) -> bool,
) -> (MutexGuard<'a, T>, bool) {
    let mut g = g;
    if !blocked(&mut g) {
        return (g, true);
    }
    // Counted under the mutex, before it is released by the wait (see `Cond`).
    cv.waiters.fetch_add(1, Ordering::Relaxed);
    let (g, met) = match timeout {
        None => (
            cv.cv
                .wait_while(g, blocked)
                .unwrap_or_else(PoisonError::into_inner),
            true,
        ),
        Some(t) => {
            let (mut g, _) = cv
                .cv
                .wait_timeout_while(g, t, &mut blocked)
                .unwrap_or_else(PoisonError::into_inner);
            let met = !blocked(&mut g);
            (g, met)
        }
    };
    cv.waiters.fetch_sub(1, Ordering::Relaxed);
    (g, met)
}

/// A mutual-exclusion lock (Python's `threading.Lock`).
///
/// Not tied to a thread: like Python's, it may be released by a thread other than the one
/// that acquired it. Use [`lock`](Lock::lock) for a guard that releases on drop (`with lock:`).
///
/// ```
/// use multiproc_threads::Lock;
/// static LOCK: Lock = Lock::new();
/// {
///     let _held = LOCK.lock();
///     assert!(LOCK.locked());
/// }
/// assert!(!LOCK.locked());
/// ```
#[derive(Debug, Default)]
pub struct Lock {
    held: Mutex<bool>,
    freed: Cond,
}

impl Lock {
    /// A new, unlocked lock.
    pub const fn new() -> Self {
        Lock {
            held: Mutex::new(false),
            freed: Cond::new(),
        }
    }

    fn acquire_for(&self, timeout: Option<Duration>) -> bool {
        let (mut held, ok) = wait_while(&self.freed, guard(&self.held), timeout, |h| *h);
        if ok {
            *held = true;
        }
        ok
    }

    /// Blocks until the lock is acquired.
    pub fn acquire(&self) {
        self.acquire_for(None);
    }

    /// Tries for at most `timeout`; returns whether the lock was acquired.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.acquire_for(Some(timeout))
    }

    /// Acquires only if the lock is free now (Python's `acquire(blocking=False)`).
    pub fn try_acquire(&self) -> bool {
        self.acquire_for(Some(Duration::ZERO))
    }

    /// Releases the lock; [`Error::NotHeld`] if it is not locked.
    pub fn release(&self) -> Result<()> {
        let mut held = guard(&self.held);
        if !*held {
            return Err(Error::NotHeld("release of an unlocked Lock"));
        }
        *held = false;
        drop(held);
        self.freed.notify_one();
        Ok(())
    }

    /// Whether the lock is held by anyone.
    pub fn locked(&self) -> bool {
        *guard(&self.held)
    }

    /// Acquires and returns a guard that releases on drop.
    pub fn lock(&self) -> LockGuard<'_, Self> {
        infallible(multiproc_core::Lock::lock(self))
    }
}

/// Thread primitives cannot fail to acquire; this turns their trait `Result` back into the
/// plain value the inherent API returns.
fn infallible<T, E: std::fmt::Display>(r: std::result::Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => unreachable!("a thread-level acquire cannot fail: {e}"),
    }
}

impl SyncPrimitive for Lock {
    fn kind(&self) -> &'static str {
        "Lock"
    }
}

impl multiproc_core::Lock for Lock {
    fn acquire(&self) -> Result<()> {
        Lock::acquire(self);
        Ok(())
    }
    fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(Lock::acquire_timeout(self, timeout))
    }
    fn release(&self) -> Result<()> {
        Lock::release(self)
    }
    fn locked(&self) -> bool {
        Lock::locked(self)
    }
}

#[derive(Debug, Default)]
struct Owner {
    thread: Option<ThreadId>,
    depth: usize,
}

/// A re-entrant lock (Python's `threading.RLock`): its owner may acquire it again and must
/// release it as many times; only the owner may release it.
#[derive(Debug, Default)]
pub struct RLock {
    owner: Mutex<Owner>,
    freed: Cond,
}

impl RLock {
    /// A new, unowned re-entrant lock.
    pub const fn new() -> Self {
        RLock {
            owner: Mutex::new(Owner {
                thread: None,
                depth: 0,
            }),
            freed: Cond::new(),
        }
    }

    fn acquire_depth(&self, timeout: Option<Duration>, depth: usize) -> bool {
        let me = thread::current().id();
        let mut owner = guard(&self.owner);
        if owner.thread == Some(me) {
            owner.depth += depth;
            return true;
        }
        let (mut owner, ok) = wait_while(&self.freed, owner, timeout, |o| o.thread.is_some());
        if ok {
            owner.thread = Some(me);
            owner.depth = depth;
        }
        ok
    }

    /// Blocks until the calling thread owns the lock (immediately if it already does).
    pub fn acquire(&self) {
        self.acquire_depth(None, 1);
    }

    /// Tries for at most `timeout`; returns whether the calling thread now owns the lock.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.acquire_depth(Some(timeout), 1)
    }

    /// Acquires only if that needs no waiting.
    pub fn try_acquire(&self) -> bool {
        self.acquire_depth(Some(Duration::ZERO), 1)
    }

    /// Releases one level; [`Error::NotHeld`] if the calling thread does not own it.
    pub fn release(&self) -> Result<()> {
        let mut owner = guard(&self.owner);
        if owner.thread != Some(thread::current().id()) {
            return Err(Error::NotHeld(
                "release of an RLock not owned by this thread",
            ));
        }
        owner.depth -= 1;
        if owner.depth == 0 {
            owner.thread = None;
            drop(owner);
            self.freed.notify_one();
        }
        Ok(())
    }

    /// Releases every level at once, returning how many there were (for `Condition::wait`).
    fn release_all(&self) -> Result<usize> {
        let mut owner = guard(&self.owner);
        if owner.thread != Some(thread::current().id()) {
            return Err(Error::NotHeld("the Condition's lock is not held"));
        }
        let depth = std::mem::take(&mut owner.depth);
        owner.thread = None;
        drop(owner);
        self.freed.notify_one();
        Ok(depth)
    }

    /// Whether any thread owns it.
    pub fn locked(&self) -> bool {
        guard(&self.owner).thread.is_some()
    }

    /// Whether the calling thread owns it.
    pub fn is_owned(&self) -> bool {
        guard(&self.owner).thread == Some(thread::current().id())
    }

    /// How many times the calling thread holds it (0 if it does not own it).
    pub fn recursion_depth(&self) -> usize {
        let owner = guard(&self.owner);
        if owner.thread == Some(thread::current().id()) {
            owner.depth
        } else {
            0
        }
    }

    /// Acquires and returns a guard that releases one level on drop.
    pub fn lock(&self) -> LockGuard<'_, Self> {
        infallible(multiproc_core::Lock::lock(self))
    }
}

impl SyncPrimitive for RLock {
    fn kind(&self) -> &'static str {
        "RLock"
    }
}

impl multiproc_core::Lock for RLock {
    fn acquire(&self) -> Result<()> {
        RLock::acquire(self);
        Ok(())
    }
    fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(RLock::acquire_timeout(self, timeout))
    }
    fn release(&self) -> Result<()> {
        RLock::release(self)
    }
    fn locked(&self) -> bool {
        RLock::locked(self)
    }
}

impl multiproc_core::RLock for RLock {
    fn recursion_depth(&self) -> usize {
        RLock::recursion_depth(self)
    }
    fn is_owned(&self) -> bool {
        RLock::is_owned(self)
    }
}

/// A flag threads can wait on (Python's `threading.Event`).
///
/// ```
/// use std::sync::Arc;
/// use multiproc_threads::Event;
/// let done = Arc::new(Event::new());
/// let d = done.clone();
/// std::thread::spawn(move || d.set());
/// done.wait();
/// assert!(done.is_set());
/// ```
#[derive(Debug, Default)]
pub struct Event {
    flag: Mutex<bool>,
    changed: Cond,
}

impl Event {
    /// A new event, not set.
    pub const fn new() -> Self {
        Event {
            flag: Mutex::new(false),
            changed: Cond::new(),
        }
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        *guard(&self.flag) = true;
        self.changed.notify_all();
    }

    /// Clears the flag.
    pub fn clear(&self) {
        *guard(&self.flag) = false;
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        *guard(&self.flag)
    }

    /// Blocks until the flag is set.
    pub fn wait(&self) {
        let _ = wait_while(&self.changed, guard(&self.flag), None, |f| !*f);
    }

    /// Blocks until the flag is set or `timeout` passes; returns the flag.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        wait_while(&self.changed, guard(&self.flag), Some(timeout), |f| !*f).1
    }
}

impl SyncPrimitive for Event {
    fn kind(&self) -> &'static str {
        "Event"
    }
}

impl multiproc_core::Event for Event {
    fn set(&self) -> Result<()> {
        Event::set(self);
        Ok(())
    }
    fn clear(&self) -> Result<()> {
        Event::clear(self);
        Ok(())
    }
    fn is_set(&self) -> bool {
        Event::is_set(self)
    }
    fn wait(&self) -> Result<()> {
        Event::wait(self);
        Ok(())
    }
    fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(Event::wait_timeout(self, timeout))
    }
}

#[derive(Debug, Default)]
struct Waiter {
    notified: Mutex<bool>,
    wake: Cond,
}

/// A condition variable with its own re-entrant lock (Python's `threading.Condition`).
///
/// Python's algorithm: each waiter parks on its own flag, queued in arrival order, and
/// `notify(n)` hands the flag to the first `n`. So `notify(1)` wakes exactly one waiter and
/// there are no spurious wake-ups.
#[derive(Debug, Default)]
pub struct Condition {
    lock: RLock,
    waiters: Mutex<VecDeque<Arc<Waiter>>>,
}

impl Condition {
    /// A new condition with its own re-entrant lock.
    pub const fn new() -> Self {
        Condition {
            lock: RLock::new(),
            waiters: Mutex::new(VecDeque::new()),
        }
    }

    /// Acquires the condition's lock.
    pub fn acquire(&self) {
        self.lock.acquire()
    }

    /// Releases the condition's lock; [`Error::NotHeld`] if the calling thread does not own it.
    pub fn release(&self) -> Result<()> {
        self.lock.release()
    }

    /// Acquires the lock and returns a guard that releases it on drop (`with cond:`).
    pub fn lock(&self) -> LockGuard<'_, Self> {
        infallible(multiproc_core::Lock::lock(self))
    }

    fn wait_for_notify(&self, timeout: Option<Duration>) -> Result<bool> {
        if !self.lock.is_owned() {
            return Err(Error::NotHeld("wait on a Condition whose lock is not held"));
        }
        let me = Arc::new(Waiter::default());
        guard(&self.waiters).push_back(me.clone());
        let depth = self.lock.release_all()?;
        let (notified, mut ok) = wait_while(&me.wake, guard(&me.notified), timeout, |n| !*n);
        drop(notified);
        if !ok {
            // Timed out, unless a notify picked us between the timeout and now.
            let mut waiters = guard(&self.waiters);
            match waiters.iter().position(|w| Arc::ptr_eq(w, &me)) {
                Some(i) => {
                    waiters.remove(i);
                }
                None => ok = true,
            }
        }
        self.lock.acquire_depth(None, depth);
        Ok(ok)
    }

    /// Releases the lock, waits for a notification, re-acquires the lock (at its previous
    /// recursion depth). [`Error::NotHeld`] if the calling thread does not own the lock.
    pub fn wait(&self) -> Result<()> {
        self.wait_for_notify(None).map(drop)
    }

    /// Like [`wait`](Self::wait) for at most `timeout`; `Ok(false)` on timeout.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_for_notify(Some(timeout))
    }

    /// Waits until `predicate()` holds or `timeout` passes; returns the predicate's last value.
    pub fn wait_for(&self, predicate: impl FnMut() -> bool, timeout: Duration) -> Result<bool> {
        multiproc_core::Condition::wait_for(self, predicate, timeout)
    }

    /// Wakes up to `n` waiters, longest-waiting first. The lock must be held.
    pub fn notify(&self, n: usize) -> Result<()> {
        if !self.lock.is_owned() {
            return Err(Error::NotHeld(
                "notify on a Condition whose lock is not held",
            ));
        }
        let mut waiters = guard(&self.waiters);
        for _ in 0..n {
            let Some(w) = waiters.pop_front() else { break };
            *guard(&w.notified) = true;
            w.wake.notify_one();
        }
        Ok(())
    }

    /// Wakes every waiter. The lock must be held.
    pub fn notify_all(&self) -> Result<()> {
        self.notify(usize::MAX)
    }
}

impl SyncPrimitive for Condition {
    fn kind(&self) -> &'static str {
        "Condition"
    }
}

impl multiproc_core::Lock for Condition {
    fn acquire(&self) -> Result<()> {
        Condition::acquire(self);
        Ok(())
    }
    fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(self.lock.acquire_timeout(timeout))
    }
    fn release(&self) -> Result<()> {
        Condition::release(self)
    }
    fn locked(&self) -> bool {
        self.lock.locked()
    }
}

impl multiproc_core::Condition for Condition {
    fn wait(&self) -> Result<()> {
        Condition::wait(self)
    }
    fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        Condition::wait_timeout(self, timeout)
    }
    fn notify(&self, n: usize) -> Result<()> {
        Condition::notify(self, n)
    }
    fn notify_all(&self) -> Result<()> {
        Condition::notify_all(self)
    }
}

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

    /// Increments the counter by `n`. A bounded semaphore refuses (and changes nothing) if
    /// that would exceed its initial value: [`Error::InvalidArgument`] on `n`.
    pub fn release(&self, n: usize) -> Result<()> {
        let mut v = guard(&self.value);
        let new = v
            .checked_add(n)
            .ok_or_else(|| Error::invalid("n", "the semaphore's counter would overflow"))?;
        if let Some(bound) = self.bound {
            if new > bound {
                return Err(Error::invalid(
                    "n",
                    format!(
                        "releasing {n} would take the BoundedSemaphore to {new}, above its \
                         bound of {bound}"
                    ),
                ));
            }
        }
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

#[derive(Debug)]
struct BarrierState {
    waiting: usize,
    generation: u64,
    epoch: u64,
    broken: bool,
}

/// A barrier for a fixed number of threads (Python's `threading.Barrier`). Cyclic: once
/// all parties pass, it is ready for the next round.
#[derive(Debug)]
pub struct Barrier {
    parties: usize,
    state: Mutex<BarrierState>,
    changed: Cond,
}

impl Barrier {
    /// A barrier for `parties` threads; 0 is [`Error::InvalidArgument`] on `parties`.
    pub fn new(parties: usize) -> Result<Self> {
        if parties == 0 {
            return Err(Error::invalid(
                "parties",
                "a Barrier needs at least 1 party",
            ));
        }
        Ok(Barrier {
            parties,
            state: Mutex::new(BarrierState {
                waiting: 0,
                generation: 0,
                epoch: 0,
                broken: false,
            }),
            changed: Cond::new(),
        })
    }

    fn wait_for(&self, timeout: Option<Duration>) -> Result<usize> {
        let mut s = guard(&self.state);
        if s.broken {
            return Err(Error::BrokenBarrier);
        }
        let index = s.waiting;
        s.waiting += 1;
        if s.waiting == self.parties {
            s.waiting = 0;
            s.generation += 1;
            drop(s);
            self.changed.notify_all();
            return Ok(index);
        }
        let (generation, epoch) = (s.generation, s.epoch);
        let (mut s, passed) = wait_while(&self.changed, s, timeout, |s| {
            s.generation == generation && s.epoch == epoch && !s.broken
        });
        if s.epoch != epoch {
            return Err(Error::BrokenBarrier); // reset while we waited
        }
        if s.generation != generation {
            return Ok(index);
        }
        s.waiting -= 1;
        if passed {
            return Err(Error::BrokenBarrier); // aborted or broken by another's timeout
        }
        s.broken = true;
        drop(s);
        self.changed.notify_all();
        Err(Error::Timeout(timeout.unwrap_or_default()))
    }

    /// Waits until all parties wait, then releases them; returns a distinct index in
    /// `0..parties`. [`Error::BrokenBarrier`] if broken.
    pub fn wait(&self) -> Result<usize> {
        self.wait_for(None)
    }

    /// Like [`wait`](Self::wait), but a timeout breaks the barrier and returns
    /// [`Error::Timeout`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        self.wait_for(Some(timeout))
    }

    /// Breaks the barrier; waiters get [`Error::BrokenBarrier`].
    pub fn abort(&self) {
        guard(&self.state).broken = true;
        self.changed.notify_all();
    }

    /// Returns the barrier to its empty, unbroken state; current waiters get
    /// [`Error::BrokenBarrier`].
    pub fn reset(&self) {
        let mut s = guard(&self.state);
        s.epoch += 1;
        s.waiting = 0;
        s.broken = false;
        drop(s);
        self.changed.notify_all();
    }

    /// The number of parties needed to pass.
    pub fn parties(&self) -> usize {
        self.parties
    }

    /// How many threads are waiting now.
    pub fn n_waiting(&self) -> usize {
        guard(&self.state).waiting
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        guard(&self.state).broken
    }
}

impl SyncPrimitive for Barrier {
    fn kind(&self) -> &'static str {
        "Barrier"
    }
}

impl multiproc_core::Barrier for Barrier {
    fn wait(&self) -> Result<usize> {
        Barrier::wait(self)
    }
    fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        Barrier::wait_timeout(self, timeout)
    }
    fn abort(&self) {
        Barrier::abort(self)
    }
    fn reset(&self) {
        Barrier::reset(self)
    }
    fn parties(&self) -> usize {
        Barrier::parties(self)
    }
    fn n_waiting(&self) -> usize {
        Barrier::n_waiting(self)
    }
    fn broken(&self) -> bool {
        Barrier::broken(self)
    }
}

/// The threads backend's [`SyncFamily`]: every primitive above.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadSync;

impl SyncFamily for ThreadSync {
    const NAME: &'static str = "threads";
    type Lock = Lock;
    type RLock = RLock;
    type Event = Event;
    type Condition = Condition;
    type Semaphore = Semaphore;
    type Barrier = Barrier;

    fn lock() -> Result<Lock> {
        Ok(Lock::new())
    }
    fn rlock() -> Result<RLock> {
        Ok(RLock::new())
    }
    fn event() -> Result<Event> {
        Ok(Event::new())
    }
    fn condition() -> Result<Condition> {
        Ok(Condition::new())
    }
    fn semaphore(value: usize) -> Result<Semaphore> {
        Ok(Semaphore::new(value))
    }
    fn bounded_semaphore(value: usize) -> Result<Semaphore> {
        Ok(Semaphore::bounded(value))
    }
    fn barrier(parties: usize) -> Result<Barrier> {
        Barrier::new(parties)
    }
}
