//! The threads that supervise workers, kept between pools: [`hire`] runs a supervisor's
//! session on a thread a closed pool left idle, or on a new one, and [`Finished`] says when
//! it is over.
//!
//! Starting a thread and joining it cost this project's 2-core VM about 90 µs before the
//! thread runs and 190–270 µs in all, where waking a thread that waits costs about 30 µs; a
//! pool of two workers has two supervisors. So a thread whose session ended waits for the
//! next one for [`LINGER`], then ends. No crate fits: general thread pools cap their threads (a
//! session lasts as long as its pool, so a cap would make the next pool wait for ever) or
//! hand back futures.
//!
//! The idle threads are per process ([`PerProcess`]): a forked child has none of them,
//! and never touches its parent's list (whose lock another thread may have held at the fork).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::lock;
use crate::per_process::PerProcess;

/// A session: what one thread runs for one pool.
type Job = Box<dyn FnOnce() + Send>;

/// How long a thread whose session ended waits for another before it ends.
const LINGER: Duration = Duration::from_secs(1);

/// This process's idle threads, the most recently idle last.
static IDLE: PerProcess<Mutex<Vec<Arc<Member>>>> = PerProcess::new();

/// One thread of the crew: where its next session is handed over.
#[derive(Default)]
struct Member {
    next: Mutex<Option<Job>>,
    handed: Condvar,
}

/// The end of a session (its closure returned, or unwound, and was dropped).
#[derive(Debug, Clone, Default)]
pub(super) struct Finished(Arc<(Mutex<bool>, Condvar)>);

impl Finished {
    /// Waits until the session has ended.
    pub(super) fn wait(&self) {
        let (over, ended) = &*self.0;
        let mut over = lock(over);
        while !*over {
            over = ended
                .wait(over)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn set(&self) {
        let (over, ended) = &*self.0;
        *lock(over) = true;
        ended.notify_all();
    }
}

/// Sets its [`Finished`] when dropped: after the session's closure, and everything it
/// captured, is gone — also when it unwinds.
struct SetOnDrop(Finished);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// Runs `session` on an idle thread of this process, or on a new one named `name`. The
/// returned [`Finished`] is set once `session` has returned (or unwound) and been dropped.
/// Fails only when no thread was idle and none could be started; `session` is dropped then.
pub(super) fn hire(
    name: &str,
    session: impl FnOnce() + Send + 'static,
) -> std::io::Result<Finished> {
    let finished = Finished::default();
    let done = SetOnDrop(finished.clone());
    let job: Job = Box::new(move || {
        let _done = done;
        session();
    });
    let idle = IDLE.get_or_try_init(|| Ok::<_, std::io::Error>(Mutex::default()))?;
    let taken = lock(idle).pop();
    match taken {
        Some(member) => {
            // Off the list, it waits for exactly this hand-over (see `serve`).
            *lock(&member.next) = Some(job);
            member.handed.notify_one();
        }
        None => {
            let member = Arc::new(Member::default());
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || serve(idle, &member, job))?;
        }
    }
    Ok(finished)
}

/// A crew thread's life: its first session, then each one handed to it while idle, until it
/// has waited [`LINGER`] for one in vain.
fn serve(idle: &Mutex<Vec<Arc<Member>>>, me: &Arc<Member>, first: Job) {
    let mut job = first;
    loop {
        // A panic that escapes a session has failed that session's pool already (the
        // pool's supervisors catch their own); the thread stays fit for the next one.
        let _ = catch_unwind(AssertUnwindSafe(job));
        lock(idle).push(me.clone());
        match wait_for_next(idle, me) {
            Some(next) => job = next,
            None => return,
        }
    }
}

/// Waits for a session handed to `me`, which is on the idle list. `None` after [`LINGER`]
/// without one: `me` has taken itself off the list then, and the thread ends. A thread
/// already taken off the list by [`hire`] waits for that hand-over, which comes at once.
fn wait_for_next(idle: &Mutex<Vec<Arc<Member>>>, me: &Arc<Member>) -> Option<Job> {
    let deadline = Instant::now() + LINGER;
    let mut next = lock(&me.next);
    loop {
        if let Some(job) = next.take() {
            return Some(job);
        }
        let now = Instant::now();
        if now >= deadline {
            drop(next);
            let mut list = lock(idle);
            if let Some(at) = list.iter().position(|m| Arc::ptr_eq(m, me)) {
                list.swap_remove(at);
                return None;
            }
            drop(list);
            // Taken by `hire`, which hands the session over right after.
            next = lock(&me.next);
            while next.is_none() {
                next = me
                    .handed
                    .wait(next)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            continue;
        }
        next = me
            .handed
            .wait_timeout(next, deadline - now)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_session_runs_and_its_end_is_seen_after_its_captures_are_dropped() {
        let (tx, rx) = mpsc::channel();
        let captured = Arc::new(());
        let held = captured.clone();
        let finished = hire("crew-test", move || {
            let _held = held;
            tx.send(std::thread::current().id()).unwrap();
        })
        .unwrap();
        finished.wait();
        assert!(rx.recv().is_ok());
        assert_eq!(
            Arc::strong_count(&captured),
            1,
            "the session's captures are dropped"
        );
    }

    #[test]
    fn a_session_that_panics_still_finishes_and_its_thread_serves_on() {
        let finished = hire("crew-test", || panic!("a session panics")).unwrap();
        finished.wait();
        let (tx, rx) = mpsc::channel();
        hire("crew-test", move || tx.send(7).unwrap())
            .unwrap()
            .wait();
        assert_eq!(rx.recv().unwrap(), 7);
    }
}
