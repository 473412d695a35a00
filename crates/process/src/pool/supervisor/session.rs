//! A supervisor's session with one worker ([`serve`]): feed it from the queue, pipelined, and
//! deliver its replies until the pool stops or the worker's stream breaks.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use multiproc_core::{spin_until, Error, SPIN};

use super::super::queue::Job;
use super::super::shared::{head_wire, pack_head, Shared};
use super::super::watch::{rss_of, watch, Killed};
use super::super::{lock, Launcher, Worker, PIPELINE_BYTES, PIPELINE_DEPTH, PIPELINE_REFILL};
use super::send::{send_body, send_releases};
use super::End;
use crate::bulk::{deliver_lent, BulkMaps, BulkView, Releases};
use crate::journal::{self, JournalReader};
use crate::payload::SPARE_BYTES;
use crate::wire::{FrameReader, FrameWriter, Header, Kind, SETUP_JOURNAL, SETUP_ONE_MAP};
use crate::worker::INIT_ID;

/// Feeds the worker from the queue and delivers its replies until the pool stops or the
/// worker's stream breaks. A worker's session starts with its process's settings (a
/// [`Kind::Setup`] frame: the memory it keeps, and whether it may use a reply journal; sent
/// when either is on), the pool's initializer, if any, then `first` (a task to retry), if
/// any. With `task_timeout`, a task that runs too long has its worker killed; with
/// `max_tasks_per_child`, the session ends after that many tasks.
pub(super) fn serve<L: Launcher>(
    shared: &Shared<L>,
    slot: usize,
    worker: &Worker,
    first: Option<Job>,
) -> End {
    // The slot's published state starts cleared: zero at the pool's start, and cleared by
    // `list_replacement` before a replacement is listed.
    let (Ok(read_half), Ok(write_half)) = (worker.stream.try_clone(), worker.stream.try_clone())
    else {
        let mut sent = VecDeque::new();
        sent.extend(first);
        return End::Broken(sent, None);
    };
    let mut reader = FrameReader::new(read_half);
    let mut writer = FrameWriter::new(write_half);
    let counters = &shared.counters;
    // The worker process's settings (how much freed memory it keeps), then the pool's
    // initializer: queued here, they leave with the first tasks.
    let retain = shared.options.retained_memory();
    // The watchers of `task_timeout` and `memory_limit` need to know at once which task the
    // worker runs: no reply journal with them.
    let journal_allowed = journal::ALLOWED
        && shared.options.task_timeout.is_none()
        && shared.options.memory_limit.is_none();
    let one_map = u64::from(shared.options.memory_limit.is_some()) * SETUP_ONE_MAP;
    let setup = Header {
        kind: Kind::Setup,
        id: u64::from(journal_allowed) * SETUP_JOURNAL + one_map,
        call: retain,
    };
    let queued = if retain > 0 || setup.id != 0 {
        writer.send(setup, &[], &[])
    } else {
        Ok(())
    };
    let queued = queued.and_then(|()| match &shared.init {
        Some(init) => {
            let header = Header {
                kind: Kind::Init,
                id: INIT_ID,
                call: init.call,
            };
            send_body(&mut writer, header, &init.payload, &init.fds, counters)
        }
        None => Ok(()),
    });
    if queued.is_err() {
        let mut sent = VecDeque::new();
        sent.extend(first);
        return End::Broken(sent, None);
    }
    // The supervisor watches its worker itself only with `memory_limit`; a timeout alone is
    // the watchdog's (see `shared::watchdog`).
    let memory_limit = shared.options.memory_limit;
    let timeout = shared
        .options
        .task_timeout
        .filter(|_| memory_limit.is_some());
    let watched = shared.watchdog_needed();
    let limit = shared.options.task_timeout.unwrap_or_default();
    let max_tasks = shared.options.max_tasks_per_child.map(|n| n.get());
    let mut first = first;
    // Tasks this worker was given, for `max_tasks_per_child`.
    let mut taken = 0usize;
    // The task at the head of `sent` (the one the worker runs): its wire id, its
    // submission as published in `shared.running`, and since when it runs.
    let mut head_id = u64::MAX;
    let mut published = 0usize;
    let mut head_since = Instant::now();
    // Set once this supervisor has killed its worker: for which task, and why.
    let mut killed: Option<(u64, Killed)> = None;
    let mut cancelled = Vec::new();
    let mut sent: VecDeque<(u64, Job)> = VecDeque::new();
    let mut next_id = 0u64;
    let mut payload = Vec::new();
    // Mappings of the worker's result buffers, kept: it reuses them once they are released.
    let mut maps = BulkMaps::for_results();
    // The worker's reply journal, once it announces one.
    let mut journal = JournalReader::default();
    // The tasks whose result buffers the worker may write again (see `deliver_lent`).
    let releases = Arc::new(Releases::default());
    let broken = |sent: VecDeque<(u64, Job)>, killed: Option<(u64, Killed)>| {
        let why = killed.map(|(id, why)| match sent.front() {
            Some((head, _)) if *head == id => why,
            _ => Killed::Innocent,
        });
        End::Broken(sent.into_iter().map(|(_, j)| j).collect(), why)
    };
    // Once a write fails the worker is dying, but replies it sent before may still be in the
    // socket: read them all before blaming the oldest unanswered task for the death.
    let mut write_broken = false;
    // Set once the stream has ended while the journal still held replies to deliver.
    let mut ended = false;
    // Whether this supervisor announced that it comes to the queue next (`Shared::announce`).
    let mut announced = false;
    loop {
        if max_tasks.is_some_and(|max| taken >= max) && sent.is_empty() && !write_broken {
            return End::Recycle;
        }
        let mut batch: Vec<Job> = first.take().into_iter().collect();
        if !write_broken && sent.len() <= PIPELINE_REFILL {
            if sent.is_empty() && published != 0 {
                published = 0;
                shared.running[slot].store(0, Ordering::SeqCst);
            }
            if watched && sent.is_empty() {
                shared.heads[slot].store(0, Ordering::Release);
            }
            let mut q = lock(&shared.queue);
            if announced {
                announced = false;
                shared.arrive(&q);
            }
            // Whether this visit spun for a task before sleeping (once per visit).
            let mut spun = false;
            loop {
                let in_flight = sent.len() + batch.len();
                if max_tasks.is_some_and(|max| taken + batch.len() >= max) {
                    break;
                }
                if !takes_another(in_flight, q.jobs.len(), shared.workers) {
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
                    if job.cancel().is_cancelled() {
                        cancelled.push(job);
                    } else {
                        batch.push(job);
                    }
                } else if in_flight > 0 {
                    break;
                } else if q.stopping {
                    return End::Stop;
                } else if !cancelled.is_empty() {
                    // Cancelled jobs taken on this visit are finished before any sleep: held
                    // across it, their tickets would keep `join` waiting.
                    drop(q);
                    for job in cancelled.drain(..) {
                        job.finish(Err(Error::Cancelled));
                    }
                    q = lock(&shared.queue);
                } else if !spun {
                    // Idle: before sleeping, watch the queue off its lock for a moment, as a
                    // supervisor on its way (announced), so that a caller submitting its next
                    // task at once (it spins on its result likewise) neither wakes this one
                    // nor waits for it to wake: the wake-up costs tens of microseconds here.
                    spun = true;
                    let seen = shared.submissions.load(Ordering::Acquire);
                    shared.announce();
                    drop(q);
                    spin_until(SPIN, || shared.submissions.load(Ordering::Acquire) != seen);
                    q = lock(&shared.queue);
                    shared.arrive(&q);
                } else {
                    q = shared.work.wait(q).unwrap_or_else(PoisonError::into_inner);
                    #[cfg(test)]
                    if q.jobs.is_empty() && !q.stopping {
                        shared.idle_wakeups.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        for job in cancelled.drain(..) {
            job.finish(Err(Error::Cancelled));
        }
        taken += batch.len();
        // What a write failure in this batch says: see after the writes.
        let (idle_before, broken_before, written_before) =
            (sent.is_empty(), write_broken, writer.written());
        // Results the caller let go since: their buffers are the worker's again, before these
        // tasks make more results.
        write_broken = write_broken || send_releases(&mut writer, &releases).is_err();
        if !batch.is_empty() && !write_broken {
            // The ring the worker's replies took so far is free again: it learns so with
            // these tasks.
            write_broken = journal.ack(&mut writer).is_err();
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
        if write_broken
            && !broken_before
            && idle_before
            && killed.is_none()
            && writer.written() == written_before
        {
            // Not a byte of this batch reached the worker, and it had nothing to run: it died
            // idle (killed from outside, the OOM killer). Its tasks are innocent: requeued
            // for the replacement, not blamed for the death.
            if let Some((id, _)) = sent.front() {
                killed = Some((*id, Killed::Innocent));
            }
        }
        let Some((id, job)) = sent.front() else {
            // Only after a failed write: nothing left to read a reply for.
            return broken(sent, killed);
        };
        if *id != head_id && !ended {
            // A new task at the head: the worker runs it now (it answers in order). Publish
            // it for `cancel` before checking its token (see `Shared::cancel`).
            head_id = *id;
            let submission = job.submission();
            if submission != published {
                published = submission;
                shared.running[slot].store(submission, Ordering::SeqCst);
            }
            // A head whose reply is the next journal record has finished: nothing to kill.
            if job.cancel().is_cancelled() && killed.is_none() && !journal.has_records() {
                // Recorded as a kill for this submission: the worker may have moved on to
                // another's task (its replies can wait in the journal), which is then
                // requeued, not failed.
                shared.killed_for[slot].store(submission, Ordering::SeqCst);
                shared.kill_slot(slot);
            }
            if timeout.is_some() {
                head_since = Instant::now();
            }
            if watched {
                let head = pack_head(head_id, shared.now_ms());
                shared.heads[slot].store(head, Ordering::Release);
            }
        }
        if (timeout.is_some() || memory_limit.is_some())
            && killed.is_none()
            && !reader.has_buffered()
        {
            if let Some(why) = watch(
                &worker.stream,
                worker.pid,
                head_since,
                timeout,
                memory_limit,
            ) {
                shared.kill_slot(slot);
                killed = Some((head_id, why));
            }
        }
        // Replies journalled but not announced (the worker went on to a long task) are taken
        // after a while; an error there lost the stream, as a failed `recv` below would.
        let mut look_failed = None;
        if journal.is_open() && !journal.has_records() && !ended {
            look_failed = journal.wait(&mut reader, &worker.stream).err();
        }
        let record = match journal.next(&mut payload) {
            Ok(record) => record,
            Err(_) => return broken(sent, killed),
        };
        let frame = match record {
            Some(header) => Ok(Some((header, Vec::new(), None))),
            // The stream ended and the journal's last replies are delivered.
            None if ended => return broken(sent, killed),
            None if look_failed.is_some() => Err(look_failed.take().expect("checked")),
            // SAFETY: our worker follows the bulk protocol (`crate::worker::serve`): it writes
            // the buffer of a bulk reply again only after the `Release` frame sent below, once
            // the view is dropped.
            None => unsafe { reader.recv_with_maps(&mut payload, &mut maps) },
        };
        #[cfg(test)]
        if record.is_none() {
            shared.socket_frames.fetch_add(1, Ordering::Relaxed);
        }
        let (header, fds, view) = match frame {
            Ok(Some((header, fds, _))) if header.kind == Kind::Journal => {
                // SAFETY: our worker follows the journal protocol (`crate::worker::serve`).
                if unsafe { journal.announced(header.call, fds) }.is_err() {
                    return broken(sent, killed);
                }
                continue;
            }
            Ok(Some(frame)) => frame,
            _ if matches!(journal.after_end(), Ok(true)) => {
                // The worker is gone (or its stream broke), but replies it journalled are to
                // be delivered before the oldest task left is blamed; nothing more is sent
                // to it, or read from its stream.
                ended = true;
                write_broken = true;
                // Nothing runs there any more: no `cancel` may pick this worker to kill.
                shared.running[slot].store(0, Ordering::SeqCst);
                published = 0;
                continue;
            }
            _ => {
                if watched {
                    shared.heads[slot].store(0, Ordering::Release);
                    let h = shared.timed_out[slot].swap(0, Ordering::AcqRel);
                    if h != 0 && killed.is_none() {
                        // The watchdog killed it for the task it saw: if that is not the
                        // head now, the head is innocent (`broken` compares the ids).
                        let id = match sent.front() {
                            Some((id, _)) if *id as u32 == head_wire(h) => *id,
                            _ => u64::MAX,
                        };
                        killed = Some((id, Killed::TimedOut(limit)));
                    }
                }
                return broken(sent, killed);
            }
        };
        let reply = view.as_ref().map_or(&payload[..], BulkView::as_slice);
        if header.id == INIT_ID {
            let message = String::from_utf8_lossy(reply).into_owned();
            return End::InitFailed(message, sent.into_iter().map(|(_, j)| j).collect());
        }
        if sent.front().map_or(true, |(id, _)| *id != header.id) {
            return broken(sent, killed);
        }
        let (_, mut job) = sent.pop_front().expect("checked above");
        if let Some(limit) = memory_limit {
            // Checked before delivery: over the limit at its end, sampled (killed, this reply
            // written just before) or not (killed now), the task fails, whenever samples fell.
            let over = match killed {
                Some((id, Killed::Memory(_, observed))) if id == header.id => Some(observed),
                Some(_) => None,
                None => Some(rss_of(worker.pid)).filter(|&observed| observed > limit),
            };
            if let Some(observed) = over {
                if killed.is_none() {
                    shared.kill_slot(slot);
                }
                killed = Some((header.id, Killed::Memory(limit, observed)));
                sent.push_front((header.id, job));
                return broken(sent, killed);
            }
        }
        // The worker has answered: its buffer may be a spare (see `Job::reusable_body`).
        if let Some(body) = job.reusable_body(header.call) {
            lock(&shared.spare).give(body);
        }
        // Counted before delivery: a caller reading the stats once its results are in sees them.
        counters
            .received
            .fetch_add(reply.len() as u64, Ordering::Relaxed);
        if let Some(view) = &view {
            counters
                .received_shared
                .fetch_add(view.as_slice().len() as u64, Ordering::Relaxed);
        }
        let outcome = match header.kind {
            Kind::Done => Ok((reply, fds)),
            Kind::Panicked => Err(Error::TaskPanicked {
                message: String::from_utf8_lossy(reply).into_owned(),
            }),
            Kind::Failed => Err(Error::Serialization(
                String::from_utf8_lossy(reply).into_owned(),
            )),
            Kind::Task
            | Kind::Shutdown
            | Kind::Init
            | Kind::Message
            | Kind::Release
            | Kind::Setup
            | Kind::Journal
            | Kind::Drained => {
                sent.push_front((header.id, job));
                return broken(sent, killed);
            }
        };
        if sent.is_empty() && !write_broken && !max_tasks.is_some_and(|max| taken >= max) {
            // Nothing stands between the delivery and this supervisor's next visit to the
            // queue but a `Release` to buffer (no recycling): announce it, so the caller's
            // next task comes to this idle worker rather than waking another supervisor —
            // and so a large result's next task goes to the worker whose memory is warm
            // from the last one.
            shared.announce();
            announced = true;
        }
        match &view {
            // SAFETY: our worker writes a result buffer again only after a `Release` for its
            // task that allows it (`crate::worker::serve`), and this supervisor sends those
            // only as this session's `releases` says. Not lent under a memory limit.
            Some(v) => unsafe {
                let lend = memory_limit.is_none();
                deliver_lent(v, header.id, &releases, lend, || job.finish(outcome))
            },
            None => job.finish(outcome),
        }
        if let Some(view) = view {
            // Decoded: unless the caller keeps lent results, the worker may write the buffer
            // again (sent with the next flush).
            drop(view);
            write_broken = write_broken || send_releases(&mut writer, &releases).is_err();
            if write_broken && announced {
                // The worker is gone: this supervisor does not visit the queue again, so it
                // takes its announcement back (left counted, it would spare a wake-up that
                // a later task needs).
                shared.arrive(&lock(&shared.queue));
                announced = false;
            }
        }
        if payload.capacity() > SPARE_BYTES {
            // Kept for the next reply, but not a huge one for the rest of the session.
            payload = Vec::new();
        }
    }
}

/// Whether a supervisor with `in_flight` tasks at its worker takes one more from a queue of
/// `queued` jobs shared by `workers` supervisors: always when its worker is idle; otherwise up
/// to [`PIPELINE_DEPTH`] in flight, but never more than its fair share of the queue (queued /
/// workers), so that near the end of a batch no worker hoards the tail while another idles.
pub(super) fn takes_another(in_flight: usize, queued: usize, workers: usize) -> bool {
    in_flight == 0 || (in_flight < PIPELINE_DEPTH && in_flight < queued / workers)
}
