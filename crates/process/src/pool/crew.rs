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
//! The idle threads are per process ([`ProcessLocal`]): a forked child has none of them,
//! and never touches its parent's list (whose lock another thread may have held at the fork).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::lock;
use crate::process_local::ProcessLocal;

/// A session: what one thread runs for one pool.
type Session = Box<dyn FnOnce() + Send>;

/// How long a thread whose session ended waits for another before it ends.
const LINGER: Duration = Duration::from_secs(1);

/// This process's crew, for every pool's supervisors.
static CREW: Crew = Crew::new(LINGER);

/// Threads that serve sessions, and keep serving while sessions come within `linger` of
/// each other. One per process serves the pools ([`CREW`]); tests make their own.
struct Crew {
    /// This process's idle threads, the most recently idle last.
    idle: ProcessLocal<Mutex<Vec<Arc<Member>>>>,
    /// How long an idle thread waits for a session before it ends.
    linger: Duration,
}

/// A session handed to a thread, and what tells of its end.
struct Shift {
    session: Session,
    /// Dropped once the thread is done with the session: idle again, or ending.
    done: SetOnDrop,
}

/// One thread of the crew: where its next shift is handed over.
#[derive(Default)]
struct Member {
    next: Mutex<Option<Shift>>,
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

    /// Whether the session has ended, without waiting.
    #[cfg(test)]
    fn is_over(&self) -> bool {
        *lock(&self.0 .0)
    }

    fn set(&self) {
        let (over, ended) = &*self.0;
        *lock(over) = true;
        ended.notify_all();
    }
}

/// Sets its [`Finished`] when dropped — also when a shift is dropped unserved (no thread
/// could be started for it).
struct SetOnDrop(Finished);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// Runs `session` on an idle thread of this process, or on a new one named `name`. The
/// returned [`Finished`] is set once `session` has returned (or unwound) and been dropped,
/// and its thread is idle again: a pool made once the last one's supervisors are waited for
/// finds their threads. Fails only when no thread was idle and none could be started;
/// `session` is dropped then.
pub(super) fn hire(
    name: &str,
    session: impl FnOnce() + Send + 'static,
) -> std::io::Result<Finished> {
    CREW.hire(name, session)
}

impl Crew {
    const fn new(linger: Duration) -> Crew {
        Crew {
            idle: ProcessLocal::new(),
            linger,
        }
    }

    /// [`hire`] on this crew.
    fn hire(
        &'static self,
        name: &str,
        session: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<Finished> {
        let finished = Finished::default();
        let shift = Shift {
            session: Box::new(session),
            done: SetOnDrop(finished.clone()),
        };
        let idle = self
            .idle
            .get_or_try_init(|| Ok::<_, std::io::Error>(Mutex::default()))?;
        let taken = lock(idle).pop();
        match taken {
            Some(member) => {
                // Off the list, it waits for exactly this hand-over (see `wait_for_next`).
                *lock(&member.next) = Some(shift);
                member.handed.notify_one();
            }
            None => {
                let member = Arc::new(Member::default());
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || self.serve(idle, &member, shift))?;
            }
        }
        Ok(finished)
    }

    /// A crew thread's life: its first shift, then each one handed to it while idle, until it
    /// has waited `linger` for one in vain.
    fn serve(&self, idle: &Mutex<Vec<Arc<Member>>>, me: &Arc<Member>, first: Shift) {
        let mut shift = first;
        loop {
            let Shift { session, done } = shift;
            // A panic that escapes a session has failed that session's pool already (the
            // pool's supervisors catch their own); the thread stays fit for the next one.
            // The session, and all it captured, is dropped in here.
            let _ = catch_unwind(AssertUnwindSafe(session));
            // Idle before the end is told: whoever waited for it may hire at once.
            lock(idle).push(me.clone());
            drop(done);
            match self.wait_for_next(idle, me) {
                Some(next) => shift = next,
                None => return,
            }
        }
    }

    /// Waits for a shift handed to `me`, which is on the idle list. `None` after `linger`
    /// without one: `me` has taken itself off the list then, and the thread ends. A thread
    /// already taken off the list by [`hire`](Self::hire) waits for that hand-over, which
    /// comes at once.
    fn wait_for_next(&self, idle: &Mutex<Vec<Arc<Member>>>, me: &Arc<Member>) -> Option<Shift> {
        let deadline = Instant::now() + self.linger;
        let mut next = lock(&me.next);
        loop {
            if let Some(shift) = next.take() {
                return Some(shift);
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
                // Taken by `hire`, which hands the shift over right after.
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::thread::ThreadId;

    /// Runs a session on `crew` that reports its thread; returns that thread once the
    /// session has finished.
    fn thread_of_a_session(crew: &'static Crew, then: impl FnOnce() + Send + 'static) -> ThreadId {
        let (tx, rx) = mpsc::channel();
        let finished = crew
            .hire("crew-test", move || {
                tx.send(std::thread::current().id()).unwrap();
                then();
            })
            .unwrap();
        finished.wait();
        rx.recv().unwrap()
    }

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

    /// Whoever waited for a session's end (a pool's `join`) and then hires (the next pool)
    /// finds the thread idle: its end is told only once the thread is back on the list.
    #[test]
    fn once_a_session_has_ended_the_next_one_runs_on_its_thread() {
        static CREW: Crew = Crew::new(Duration::from_secs(5));
        let mut last = thread_of_a_session(&CREW, || ());
        for round in 0..200 {
            let now = thread_of_a_session(&CREW, || ());
            assert_eq!(
                now, last,
                "round {round}: a new thread, the idle one not found"
            );
            last = now;
        }
    }

    #[test]
    fn a_session_that_panics_still_finishes_and_its_thread_serves_on() {
        static CREW: Crew = Crew::new(Duration::from_secs(5));
        let panicked = thread_of_a_session(&CREW, || panic!("a session panics"));
        assert_eq!(thread_of_a_session(&CREW, || ()), panicked);
    }

    /// A thread whose linger runs out just as `hire` takes it off the idle list serves the
    /// session handed to it: none is lost (nor told finished without having run). With no
    /// linger at all, and the end of each session polled rather than slept on, the next hire
    /// races the thread's leaving the list every round.
    #[test]
    fn a_thread_taken_as_its_linger_runs_out_serves_the_session_handed_to_it() {
        static CREW: Crew = Crew::new(Duration::ZERO);
        static RAN: AtomicUsize = AtomicUsize::new(0);
        for round in 0..2000 {
            let finished = CREW
                .hire("crew-test", || {
                    RAN.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
            while !finished.is_over() {
                std::hint::spin_loop();
            }
            assert_eq!(RAN.load(Ordering::SeqCst), round + 1, "round {round}");
        }
    }
}
