//! A worker's supervisor thread: its session loop ([`serve`]: feed the worker from the queue,
//! pipelined, and deliver its replies) and what happens when the session ends ([`supervise`]:
//! stop and reap the worker, or — when it died — fail its task, requeue the rest and launch a
//! replacement, breaking the pool when none can be started).

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::Duration;

use multiproc_core::{Error, Result};
use nix::unistd::Pid;

use super::queue::Job;
use super::reap::{reap, stop_and_reap};
use super::shared::{Counters, Listed, Shared};
use super::{lock, Launcher, Worker, PIPELINE_BYTES, PIPELINE_DEPTH};
use crate::payload::{Body, SPARE_BYTES};
use crate::wire::{FrameReader, FrameWriter, Header, Kind};
use crate::worker::INIT_ID;

/// How a session with one worker ended.
enum End {
    /// The pool is stopping; the worker is healthy.
    Stop,
    /// The stream broke: the worker died. These jobs were sent to it, oldest first.
    Broken(VecDeque<Job>),
    /// The worker reported that the initializer failed (and exits); these jobs were sent.
    InitFailed(String, VecDeque<Job>),
}

/// The supervisor of worker slot `slot`: serves it, and replaces it when it dies. A worker is
/// always unlisted (its slot emptied) before it is reaped, so `terminate` never signals a
/// reaped pid.
pub(super) fn supervise<L: Launcher>(shared: &Shared<L>, slot: usize, mut worker: Worker) {
    loop {
        match serve(shared, &worker) {
            End::InitFailed(message, sent) => {
                shared.initializer_failed(message, sent);
                shared.unlist(slot);
                drop(worker.stream);
                note_reap(shared, worker.pid);
                // SAFETY: the launcher handed this child to the pool (`Launcher`'s contract);
                // only this supervisor reaps it, and it is unlisted, so nothing signals it.
                unsafe { reap(worker.pid) };
                return;
            }
            End::Stop => {
                let terminated = lock(&shared.queue).terminated;
                shared.unlist(slot);
                note_reap(shared, worker.pid);
                stop_and_reap(worker, terminated);
                return;
            }
            End::Broken(mut sent) => {
                let pid = worker.pid;
                drop(worker.stream);
                shared.unlist(slot);
                note_reap(shared, pid);
                // SAFETY: as above: our child, unlisted, reaped only here.
                let cause = unsafe { reap(pid) };
                let terminated = lock(&shared.queue).terminated;
                if let Some(running) = sent.pop_front() {
                    if !terminated {
                        (running.on_done)(Err(Error::WorkerDied {
                            pid: pid.as_raw() as u32,
                            cause,
                        }));
                    }
                }
                {
                    let mut q = lock(&shared.queue);
                    if q.terminated {
                        drop(q);
                        drop(sent); // fail with PoolClosed
                        return;
                    }
                    while let Some(job) = sent.pop_back() {
                        q.jobs.push_front(job);
                    }
                }
                shared.work.notify_all();
                match launch_replacement(shared) {
                    Ok(w) => {
                        lock(&shared.pids)[slot] = Some(Listed::new(w.pid));
                        worker = w;
                    }
                    Err(None) => return, // the pool is stopping
                    Err(Some(e)) => {
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
    }
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

/// Feeds the worker from the queue and delivers its replies until the pool stops or the
/// worker's stream breaks. A worker's session starts with the pool's initializer, if any.
fn serve<L: Launcher>(shared: &Shared<L>, worker: &Worker) -> End {
    let (Ok(read_half), Ok(write_half)) = (worker.stream.try_clone(), worker.stream.try_clone())
    else {
        return End::Broken(VecDeque::new());
    };
    let mut reader = FrameReader::new(read_half);
    let mut writer = FrameWriter::new(write_half);
    let counters = &shared.counters;
    if let Some(init) = &shared.init {
        let header = Header {
            kind: Kind::Init,
            id: INIT_ID,
            call: init.call,
        };
        if send_body(&mut writer, header, &init.payload, &init.fds, counters).is_err() {
            return End::Broken(VecDeque::new());
        }
    }
    let mut sent: VecDeque<(u64, Job)> = VecDeque::new();
    let mut next_id = 0u64;
    let mut payload = Vec::new();
    let broken =
        |sent: VecDeque<(u64, Job)>| End::Broken(sent.into_iter().map(|(_, j)| j).collect());
    // Once a write fails the worker is dying, but replies it sent before may still be in the
    // socket: read them all before blaming the oldest unanswered task for the death.
    let mut write_broken = false;
    loop {
        let mut batch = Vec::new();
        if !write_broken {
            let mut q = lock(&shared.queue);
            loop {
                let in_flight = sent.len() + batch.len();
                let plenty = q.jobs.len() >= 2 * shared.workers;
                if in_flight >= PIPELINE_DEPTH || (in_flight >= 1 && !plenty) {
                    break;
                }
                let queued_bytes: usize = sent
                    .iter()
                    .map(|(_, j)| j.socket_len())
                    .chain(batch.iter().map(Job::socket_len))
                    .sum();
                let fits =
                    |job: &Job| in_flight == 0 || queued_bytes + job.socket_len() <= PIPELINE_BYTES;
                if q.jobs.front().is_some_and(|job| !fits(job)) {
                    break;
                }
                if let Some(job) = q.jobs.pop_front() {
                    batch.push(job);
                } else if in_flight > 0 {
                    break;
                } else if q.stopping {
                    return End::Stop;
                } else {
                    q = shared.work.wait(q).unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
        for job in batch {
            if !write_broken {
                let header = Header {
                    kind: Kind::Task,
                    id: next_id,
                    call: job.call,
                };
                write_broken =
                    send_body(&mut writer, header, &job.payload, &job.fds, counters).is_err();
            }
            // The job keeps its payload and descriptors until its reply arrives: if the worker
            // dies first, the job is requeued and sent whole to another worker.
            sent.push_back((next_id, job));
            next_id += 1;
        }
        if !write_broken && writer.flush().is_err() {
            write_broken = true;
        }
        if sent.is_empty() {
            // Only after a failed write: nothing left to read a reply for.
            return broken(sent);
        }
        let (header, fds) = match reader.recv(&mut payload) {
            Ok(Some(frame)) => frame,
            _ => return broken(sent),
        };
        if header.id == INIT_ID {
            let message = String::from_utf8_lossy(&payload).into_owned();
            return End::InitFailed(message, sent.into_iter().map(|(_, j)| j).collect());
        }
        if sent.front().map_or(true, |(id, _)| *id != header.id) {
            return broken(sent);
        }
        let (_, mut job) = sent.pop_front().expect("checked above");
        // The worker has answered: it no longer reads the job's buffer.
        lock(&shared.spare).give(std::mem::replace(
            &mut job.payload,
            Body::Inline(Vec::new()),
        ));
        counters
            .received
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        let outcome = match header.kind {
            Kind::Done => Ok((&payload[..], fds)),
            Kind::Panicked => Err(Error::TaskPanicked {
                message: String::from_utf8_lossy(&payload).into_owned(),
            }),
            Kind::Failed => Err(Error::Serialization(
                String::from_utf8_lossy(&payload).into_owned(),
            )),
            Kind::Task | Kind::Shutdown | Kind::Init | Kind::Message => {
                sent.push_front((header.id, job));
                return broken(sent);
            }
        };
        (job.on_done)(outcome);
        if payload.capacity() > SPARE_BYTES {
            // Kept for the next reply, but not a huge one for the rest of the session.
            payload = Vec::new();
        }
    }
}

/// Queues one frame carrying `body` (a bulk frame for a bulk body, when the frame has room
/// for its descriptor; otherwise the bytes go through the socket) and counts what it carries.
/// The caller keeps `body` unchanged until the worker has answered the frame.
fn send_body(
    writer: &mut FrameWriter,
    header: Header,
    body: &Body,
    fds: &[OwnedFd],
    counters: &Counters,
) -> std::io::Result<()> {
    let result = match body.bulk(fds.len()) {
        Some(bulk) => {
            counters
                .shared
                .fetch_add(bulk.len() as u64, Ordering::Relaxed);
            writer.send_bulk(header, bulk, fds)
        }
        None => writer.send(header, body.as_slice(), fds),
    };
    counters
        .sent
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    counters.fds.fetch_add(fds.len() as u64, Ordering::Relaxed);
    result
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::process::Command;
    use std::sync::Mutex;
    use std::time::Duration;

    use multiproc_core::{Error, Executor, ExitCause, Result};
    use nix::unistd::Pid;

    use super::super::{Launcher, ProcessPool, Worker};

    /// Every worker reaped by a supervisor, and whether it was still listed then.
    pub(super) static REAPED: Mutex<Vec<(Pid, bool)>> = Mutex::new(Vec::new());

    /// Launches one stand-in worker (a `sleep` process, and a socket whose far end the test
    /// holds), then fails with `EAGAIN`.
    struct OneSleeper {
        far_end: Mutex<Option<UnixStream>>,
        launched: Mutex<bool>,
    }

    // SAFETY: `launch` returns the `sleep` child it just started, and hands it over.
    unsafe impl Launcher for OneSleeper {
        fn launch(&self) -> Result<Worker> {
            let mut launched = self.launched.lock().unwrap();
            if *launched {
                return Err(Error::Io(std::io::Error::from_raw_os_error(libc::EAGAIN)));
            }
            *launched = true;
            let child = Command::new("sleep").arg("600").spawn()?;
            let (ours, theirs) = UnixStream::pair()?;
            *self.far_end.lock().unwrap() = Some(theirs);
            Ok(Worker {
                pid: Pid::from_raw(child.id() as i32),
                stream: ours,
            })
        }
    }

    fn never_runs(x: u8) -> u8 {
        x
    }

    /// The death of a worker that cannot be replaced: the worker is unlisted before it is
    /// reaped (so `terminate` cannot signal its pid once it may be reused), its task fails
    /// with its death, and the pool breaks with the launch error.
    #[test]
    fn a_dead_worker_is_unlisted_before_it_is_reaped() {
        let pool = ProcessPool::new(
            1,
            OneSleeper {
                far_end: Mutex::new(None),
                launched: Mutex::new(false),
            },
        )
        .unwrap();
        let pid = pool.pids()[0].expect("listed");
        let mut r = pool.apply_async(never_runs, 1).unwrap();
        let mut queued = pool.apply_async(never_runs, 2).unwrap();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        drop(pool.shared.launcher.far_end.lock().unwrap().take());
        match r.get_timeout(Duration::from_secs(30)) {
            Err(Error::WorkerDied { pid: died, cause }) => {
                assert_eq!(died, pid.as_raw() as u32);
                assert_eq!(cause, ExitCause::Signal(libc::SIGKILL));
            }
            other => panic!("expected WorkerDied, got {other:?}"),
        }
        let broken = |e: &Error| matches!(e, Error::NoWorkers { cause } if cause.to_string().contains("os error 11"));
        match queued.get_timeout(Duration::from_secs(30)) {
            Err(e) => assert!(broken(&e), "the queued task got {e}"),
            Ok(v) => panic!("a task ran without a worker: {v}"),
        }
        assert!(matches!(pool.apply_async(never_runs, 3), Err(e) if broken(&e)));
        pool.close();
        assert!(matches!(pool.join(), Err(e) if broken(&e)));
        let reaped: Vec<bool> = REAPED
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| *p == pid)
            .map(|(_, listed)| *listed)
            .collect();
        assert_eq!(reaped, vec![false], "reaped while listed");
        assert!(pool.pids().iter().all(Option::is_none));
    }
}
