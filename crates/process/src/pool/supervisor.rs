//! A worker's supervisor thread: its session loop ([`serve`], in `session.rs`: feed the worker
//! from the queue, pipelined, and deliver its replies) and what happens when the session ends
//! ([`supervise`]:
//! stop and reap the worker, or — when it died — fail its task, requeue the rest and launch a
//! replacement, breaking the pool when none can be started).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Duration;

use multiproc_core::{Error, ExitCause, Result};
use nix::unistd::Pid;

use super::queue::Job;
use super::reap::{reap_with, stop_and_reap};
use super::shared::Shared;
use super::watch::Killed;
use super::{lock, Launcher, Worker};
use session::serve;

/// How a session with one worker ended.
enum End {
    /// The pool is stopping; the worker is healthy.
    Stop,
    /// The stream broke: the worker died. These jobs were sent to it, oldest first; and
    /// whether its supervisor killed it.
    Broken(VecDeque<Job>, Option<Killed>),
    /// The worker reported that the initializer failed (and exits); these jobs were sent.
    InitFailed(String, VecDeque<Job>),
    /// The worker ran its `max_tasks_per_child` tasks and answered them all: replace it.
    Recycle,
}

/// The supervisor of worker slot `slot`: serves it, and replaces it when it dies. A worker is
/// always unlisted (its slot emptied) before it is reaped, so `terminate` never signals a
/// reaped pid.
pub(super) fn supervise<L: Launcher>(shared: &Shared<L>, slot: usize, mut worker: Worker) {
    // A task whose worker died, to run again first on the replacement (`retries`).
    let mut first: Option<Job> = None;
    loop {
        match serve(shared, slot, &worker, first.take()) {
            End::InitFailed(message, sent) => {
                shared.initializer_failed(message, sent);
                drop(worker.stream);
                if let Some(listed) = shared.unlist(slot) {
                    note_reap(shared, worker.pid);
                    // SAFETY: the launcher handed this child to the pool (`Launcher`'s
                    // contract); we emptied its slot, so only we reap it and nothing signals
                    // it; the pidfd is the slot's.
                    unsafe { reap_with(worker.pid, listed.pidfd) };
                }
                return;
            }
            End::Stop => {
                let terminated = lock(&shared.queue).terminated;
                // An empty slot: `join` took the worker, ended its stream and reaps it.
                if let Some(listed) = shared.unlist(slot) {
                    note_reap(shared, worker.pid);
                    stop_and_reap(worker, terminated, listed.pidfd);
                }
                return;
            }
            End::Recycle => {
                if let Some(listed) = shared.unlist(slot) {
                    note_reap(shared, worker.pid);
                    stop_and_reap(worker, false, listed.pidfd);
                }
            }
            End::Broken(mut sent, killed) => {
                sent.iter_mut().for_each(|job| job.lent_away = true);
                let pid = worker.pid;
                drop(worker.stream);
                // An empty slot: `join` took the worker (no job was left, so `sent` is
                // empty) and reaps it.
                let cause = match shared.unlist(slot) {
                    Some(listed) => {
                        note_reap(shared, pid);
                        // SAFETY: as above: our child, unlisted by us, reaped only here.
                        unsafe { reap_with(pid, listed.pidfd) }
                    }
                    None => ExitCause::Code(0),
                };
                let terminated = lock(&shared.queue).terminated;
                let killed_for = shared.killed_for[slot].swap(0, Ordering::SeqCst);
                if let Some(running) = sent.pop_front() {
                    if terminated {
                        drop(running); // fails with PoolClosed
                    } else if running.cancel().is_cancelled() {
                        running.finish(Err(Error::Cancelled));
                    } else if matches!(killed, Some(Killed::Innocent))
                        || (killed.is_none() && killed_for != 0)
                    {
                        // Killed for another task (its timeout, its cancel) that answered
                        // just before: this one has not failed.
                        sent.push_front(running);
                    } else {
                        let error = match killed {
                            Some(Killed::TimedOut(limit)) => Error::TaskTimedOut {
                                limit,
                                pid: pid.as_raw() as u32,
                            },
                            Some(Killed::Memory(limit, observed)) => Error::MemoryLimit {
                                limit,
                                observed,
                                pid: pid.as_raw() as u32,
                            },
                            _ => Error::WorkerDied {
                                pid: pid.as_raw() as u32,
                                cause,
                            },
                        };
                        first = retry_or_fail(shared, running, error);
                    }
                }
                {
                    let mut q = lock(&shared.queue);
                    if q.terminated {
                        drop(q);
                        drop(sent); // fail with PoolClosed
                        drop(first);
                        return;
                    }
                    if q.stopping {
                        // Stopped (an initializer failed, or the pool broke): its queue was
                        // failed already, and no supervisor takes jobs from it any more. The
                        // held ones fail as the queued ones did.
                        drop(q);
                        for job in sent.into_iter().chain(first) {
                            job.finish(Err(shared.refusal()));
                        }
                        return;
                    }
                    while let Some(job) = sent.pop_back() {
                        q.jobs.push_front(job);
                    }
                }
                shared.work.notify_all();
            }
        }
        match launch_replacement(shared) {
            Ok(w) => {
                if !shared.list_replacement(slot, &w) {
                    drop(first.take()); // fails with PoolClosed, as the queued jobs did
                }
                worker = w;
            }
            Err(None) => return, // the pool is stopping
            Err(Some(e)) => {
                if let Some(job) = first.take() {
                    // Another worker will run it, unless the pool stopped meanwhile: then
                    // it fails as the queued jobs did.
                    let mut q = lock(&shared.queue);
                    if q.stopping {
                        drop(q);
                        job.finish(Err(shared.refusal()));
                    } else {
                        q.jobs.push_front(job);
                        drop(q);
                        shared.work.notify_all();
                    }
                }
                // This slot stays empty; the pool carries on with the others. The last
                // supervisor to give up breaks it.
                if shared.supervising.fetch_sub(1, Ordering::AcqRel) == 1 {
                    shared.break_pool(e);
                }
                return;
            }
        }
    }
}

/// A task whose worker died with `error`: returned to run again on a fresh worker if it has
/// retries left (`retries`), failed otherwise (after a retry, with every attempt's cause).
fn retry_or_fail<L>(shared: &Shared<L>, mut job: Job, error: Error) -> Option<Job> {
    if (job.history.len() as u64) < u64::from(shared.options.retries) {
        job.history.push(error.to_string());
        return Some(job);
    }
    if job.history.is_empty() {
        job.finish(Err(error));
    } else {
        let mut history = std::mem::take(&mut job.history);
        history.push(error.to_string());
        job.finish(Err(Error::AttemptsExhausted {
            attempts: history.len() as u32,
            history,
            last: Box::new(error),
        }));
    }
    None
}

/// Records, in this crate's unit tests, whether a worker was still listed when it was reaped.
#[cfg(test)]
fn note_reap<L>(shared: &Shared<L>, pid: Pid) {
    let listed = lock(&shared.pids).iter().flatten().any(|w| w.pid == pid);
    lock(&tests::REAPED).push((pid, listed));
}

#[cfg(not(test))]
fn note_reap<L>(_: &Shared<L>, _: Pid) {}

/// Starts a replacement worker, retrying a few times. `Err(None)` if the pool is stopping;
/// `Err(Some(e))` with the last launch error if no worker could be started.
fn launch_replacement<L: Launcher>(shared: &Shared<L>) -> Result<Worker, Option<Error>> {
    let mut last_error = None;
    for attempt in 0..3 {
        if lock(&shared.queue).stopping {
            return Err(None);
        }
        match shared
            .launcher
            .launch()
            // SAFETY: `w` was just returned by this launcher's `launch` and is not in a pool.
            .and_then(|w| unsafe { shared.launcher.ready(&w) }.map(|()| w))
        {
            Ok(w) => return Ok(w),
            Err(e) => last_error = Some(e),
        }
        std::thread::sleep(Duration::from_millis(10 << attempt));
    }
    if lock(&shared.queue).stopping {
        return Err(None);
    }
    Err(last_error)
}

mod send;
mod session;
#[cfg(test)]
mod tests;
