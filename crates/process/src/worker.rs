//! The worker loop: what a worker process runs until its pool tells it to stop.

use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::Instant;

use multiproc_sys::memory::retain_freed;

use crate::bulk::{BulkMaps, Loan};
use crate::journal::{self, JournalWriter};
use crate::payload::{lock, Body, Spare};
use crate::trampoline;
use crate::wire::{
    FrameReader, FrameWriter, Header, Kind, RELEASE_DROP, REPLY_KEPT_ARGUMENTS, SETUP_JOURNAL,
    SETUP_ONE_MAP,
};

/// The id a worker uses to report that its pool's initializer failed.
pub const INIT_ID: u64 = u64::MAX;

/// The exit code of a worker whose initializer failed.
pub const INIT_FAILED: i32 = 3;

/// Serves tasks from `stream` until a shutdown frame or the end of the stream; returns the
/// process exit code (0 on an orderly end, 2 if the connection broke, [`INIT_FAILED`] if the
/// pool's initializer failed).
///
/// A task's large `Packed` arguments are read in the shared-memory buffer they arrived in
/// (`crate::bulk::Loan`); a reply flagged [`REPLY_KEPT_ARGUMENTS`] tells the pool that values
/// read there outlived the task, so it must not write that buffer again.
///
/// Results of at least 1 MiB go back in a shared-memory
/// buffer (a bulk frame), which the worker writes again only after the pool has sent a
/// [`Kind::Release`] frame for that task (it has decoded the results); until then the next
/// results go into another buffer.
///
/// Each task runs under `catch_unwind`: a panic becomes a `Panicked` reply and the worker
/// carries on. Anything that kills the process (abort, a signal, `exit`) is noticed by the
/// pool's supervisor as the end of this stream. An `Init` frame runs once, before the tasks;
/// if it fails, the worker reports it under [`INIT_ID`] and exits. A [`Kind::Setup`] frame
/// (first, when the pool has settings for the worker) whose `call` is not 0 makes this
/// process's allocator keep that much freed memory for later tasks ([`retain_freed`]), for the
/// rest of the process's life: run `serve` in a worker process, whose allocator is the pool's
/// to tune, never in a process that has other work. When the `Setup` frame allows it
/// ([`SETUP_JOURNAL`]), small replies of fast tasks go into a reply journal in shared memory,
/// announced in batches (see the crate's internal `journal` module); when it says so
/// ([`SETUP_ONE_MAP`]), the worker keeps a mapping of one argument buffer at most.
///
/// # Safety
///
/// The other end of `stream` must be a [`ProcessPool`](crate::ProcessPool) of this same
/// binary image (a fork of this process, or the same executable started again): a task frame
/// names its code by an offset into that image, which is called as is, and a large argument
/// arrives as a shared buffer the pool promises not to write while the task runs. Values
/// decoded from such a buffer may be read there after the task (a large `Packed` is lent the
/// buffer's memory): so the pool must also never write again a buffer whose reply was
/// flagged [`REPLY_KEPT_ARGUMENTS`], nor the buffers of frames this worker left unanswered
/// (a child it forked may still read them), and the worker's result buffers are written
/// again only after the pool's `Release` frame allows it. The pool keeps to all of this.
pub unsafe fn serve(stream: UnixStream) -> i32 {
    let Ok(write_half) = stream.try_clone() else {
        return 2;
    };
    let mut reader = FrameReader::new(stream);
    let mut writer = FrameWriter::new(write_half);
    let mut payload = Vec::new();
    // Buffers for encoding results, and the bulk ones the pool has not released yet.
    let spare = Mutex::new(Spare::default());
    let mut unreleased: Vec<(u64, Body)> = Vec::new();
    // The mappings of the argument buffers, kept for the next tasks' arguments: the pool
    // encodes them into the buffers it reuses.
    let mut maps = BulkMaps::default();
    // Whether the pool allows a reply journal, and the journal once made.
    let mut journal_allowed = false;
    let mut journal: Option<JournalWriter> = None;
    loop {
        if let Some(j) = journal.as_mut().filter(|j| j.pending()) {
            // Records wait for their announcement: it leaves now if this worker is about to
            // wait for input, or enough of them wait.
            if (j.due() || !reader.ready().unwrap_or(true))
                && j.announce(&mut writer)
                    .and_then(|()| writer.flush())
                    .is_err()
            {
                return 2;
            }
        }
        // SAFETY: the peer is our pool (this function's contract), which writes a bulk frame's
        // buffer again only after this worker's reply to that frame, and the view is dropped
        // before the reply below.
        let (header, fds, bulk) = match unsafe { reader.recv_with_maps(&mut payload, &mut maps) } {
            Ok(Some(frame)) => frame,
            Ok(None) => return 0,
            Err(_) => return 2,
        };
        match header.kind {
            Kind::Task | Kind::Init => {}
            Kind::Setup => {
                // This process is the pool's worker, so its allocator is the pool's to tune.
                // More than glibc's `int` takes (possible through `Builder::options`, which
                // checks nothing) is clamped; not glibc: nothing to tune.
                if header.call > 0 {
                    let _ = retain_freed(i32::try_from(header.call).unwrap_or(i32::MAX));
                }
                journal_allowed = header.id & SETUP_JOURNAL != 0;
                if header.id & SETUP_ONE_MAP != 0 {
                    // A setup frame carries no bulk body: nothing borrows the maps past here.
                    drop(bulk);
                    maps = BulkMaps::one();
                }
                continue;
            }
            Kind::Drained => {
                if let Some(j) = journal.as_mut() {
                    j.drained(header.call);
                }
                continue;
            }
            Kind::Shutdown => return 0,
            Kind::Release => {
                if let Some(at) = unreleased.iter().position(|(id, _)| *id == header.id) {
                    let buffer = unreleased.swap_remove(at).1;
                    if header.call & RELEASE_DROP == 0 {
                        lock(&spare).give(buffer);
                    }
                }
                continue;
            }
            Kind::Done | Kind::Panicked | Kind::Failed | Kind::Message | Kind::Journal => return 2,
        }
        // SAFETY: the offset comes from our own pool (this function's contract), over a socket
        // only it holds, and was produced by `offset_of` in a process running this same
        // binary (our parent before the fork, or the same executable that started us).
        let run = unsafe { trampoline::resolve(header.call) };
        let input = bulk.as_ref().map_or(&payload[..], |view| view.as_slice());
        let started = journal_allowed.then(Instant::now);
        // A task's large `Packed` arguments are read in the buffer (see `crate::bulk::Loan`);
        // an initializer's are copied (its reply goes only where it fails, and what it keeps
        // would hold the buffer for good).
        let loan = match header.kind {
            Kind::Task => bulk.as_ref().and_then(Loan::start),
            _ => None,
        };
        let run_task =
            || panic::catch_unwind(AssertUnwindSafe(|| run.run_into(input, fds, &spare)));
        let outcome = match &loan {
            // SAFETY: `input` is the loan's mapping, which every lent value keeps alive. The
            // pool writes the buffer again only after our reply, and never when the reply says
            // a value still holds it (`kept`, below); a child forked meanwhile has the mapping
            // (`MADV_DOFORK` while the loan lasts) and makes it kept as well.
            Some(loan) => unsafe { multiproc_core::packed::lend(input, loan.owner(), run_task) },
            None => run_task(),
        };
        let kept = loan.is_some_and(Loan::end);
        drop(bulk);
        let init = header.kind == Kind::Init;
        let (kind, reply, reply_fds) = match outcome {
            Ok(Ok(_)) if init => continue,
            Ok(Ok((body, fds))) => (Kind::Done, body, fds),
            Ok(Err(message)) => (Kind::Failed, Body::Inline(message.into_bytes()), Vec::new()),
            Err(p) => (
                Kind::Panicked,
                Body::Inline(multiproc_core::panic_message(&*p).into_bytes()),
                Vec::new(),
            ),
        };
        let reply_header = Header {
            kind,
            id: if init { INIT_ID } else { header.id },
            call: if kept { REPLY_KEPT_ARGUMENTS } else { 0 },
        };
        // Every reply leaves before the next task starts — through the socket, or in the
        // journal, which outlives this process: if that task kills the process, the replies
        // before it must already be with the pool, or it would blame the wrong task.
        if !init
            && !kept
            && reply_fds.is_empty()
            && reply.bulk(0).is_none()
            && started.is_some_and(|t| t.elapsed() < journal::SLOW)
            && reader.has_buffered()
        {
            if journal.is_none() {
                let Ok(made) = JournalWriter::start(&mut writer) else {
                    return 2;
                };
                // None made: replies go through the socket from now on.
                journal_allowed = made.is_some();
                journal = made;
            }
            if let Some(j) = journal.as_mut() {
                if j.append(kind, reply_header.id, reply.as_slice()) {
                    lock(&spare).give(reply);
                    continue;
                }
            }
        }
        // Journalled replies go first: the pool reads replies in their order.
        if let Some(j) = journal.as_mut().filter(|j| j.pending()) {
            if j.announce(&mut writer).is_err() {
                return 2;
            }
        }
        let sent = match reply.bulk(reply_fds.len()) {
            Some(buf) => writer.send_bulk(reply_header, buf, &reply_fds),
            None => writer.send(reply_header, reply.as_slice(), &reply_fds),
        };
        if sent.and_then(|()| writer.flush()).is_err() {
            return 2;
        }
        if reply.bulk(reply_fds.len()).is_some() {
            // The pool reads it until it sends `Release` for this task.
            unreleased.push((header.id, reply));
        } else {
            lock(&spare).give(reply);
        }
        if init {
            return INIT_FAILED;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use multiproc_core::Task;

    use std::os::fd::AsRawFd;

    use super::serve;
    use crate::bulk::{read_only_maps_of, BulkBuf, BulkView};
    use crate::codec::{encode_into, take_from_bytes};
    use crate::trampoline::offset_of;
    use crate::wire::{FrameReader, FrameWriter, Header, Kind};

    fn filled((len, byte): (usize, u8)) -> Vec<u8> {
        vec![byte; len]
    }

    const LEN: usize = 3 << 20;

    fn task(writer: &mut FrameWriter, id: u64, byte: u8) {
        let call = offset_of(filled as Task<(usize, u8), Vec<u8>>).unwrap();
        let args = encode_into(&vec![(LEN, byte)], Vec::new()).unwrap();
        let header = Header {
            kind: Kind::Task,
            id,
            call,
        };
        writer.send(header, &args, &[]).unwrap();
        writer.flush().unwrap();
    }

    /// `serve` on a thread of this test, and the test's ends of its socket.
    fn start_worker() -> (std::thread::JoinHandle<i32>, FrameWriter, FrameReader) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        // SAFETY: the other end is the calling test, which sends offsets made by `offset_of`
        // in this process and keeps to the bulk protocol (it writes a buffer again only after
        // its task's reply, and releases a result only after dropping its view).
        let worker = std::thread::spawn(move || unsafe { serve(theirs) });
        let writer = FrameWriter::new(ours.try_clone().unwrap());
        (worker, writer, FrameReader::new(ours))
    }

    fn release(writer: &mut FrameWriter, id: u64) {
        let header = Header {
            kind: Kind::Release,
            id,
            call: 0,
        };
        writer.send(header, &[], &[]).unwrap();
        writer.flush().unwrap();
    }

    /// The result of task `id`, which must have come in shared memory.
    fn result(reader: &mut FrameReader, id: u64) -> BulkView<'static> {
        let mut payload = Vec::new();
        // SAFETY: the peer is `serve`, and the test drops each view before releasing it.
        let (header, _, view) = unsafe { reader.recv_with_bulk(&mut payload) }
            .unwrap()
            .unwrap();
        assert_eq!((header.kind, header.id), (Kind::Done, id));
        view.expect("a result of 3 MiB comes in shared memory")
    }

    fn check(view: &BulkView<'_>, byte: u8) {
        let (got, _) = take_from_bytes::<Vec<Vec<u8>>>(view.as_slice()).unwrap();
        assert!(got.len() == 1 && got[0].len() == LEN, "wrong shape");
        assert!(got[0].iter().all(|&b| b == byte), "overwritten");
    }

    #[test]
    fn a_result_buffer_is_written_again_only_after_its_release() {
        let (worker, mut writer, mut reader) = start_worker();
        task(&mut writer, 0, 1);
        let first = result(&mut reader, 0);
        check(&first, 1);
        // Not released: the next result goes elsewhere, and the first stays as it was.
        task(&mut writer, 1, 2);
        let second = result(&mut reader, 1);
        assert_ne!(second.inode, first.inode);
        check(&second, 2);
        check(&first, 1);
        // Released: the next result reuses the first buffer, not the unreleased second.
        let first_inode = first.inode;
        drop(first);
        release(&mut writer, 0);
        task(&mut writer, 2, 3);
        let third = result(&mut reader, 2);
        assert_eq!(third.inode, first_inode);
        check(&third, 3);
        check(&second, 2);
        drop(writer);
        drop(reader);
        assert_eq!(worker.join().unwrap(), 0);
    }

    fn total(bytes: Vec<u8>) -> u64 {
        bytes.iter().map(|&b| u64::from(b)).sum()
    }

    /// Sends task `id`, `total` of [`LEN`] bytes of `byte`, in the bulk buffer `buf`, and
    /// returns its result.
    fn total_in(
        writer: &mut FrameWriter,
        reader: &mut FrameReader,
        buf: &mut BulkBuf,
        id: u64,
        byte: u8,
    ) -> u64 {
        buf.clear();
        let args = encode_into(&vec![vec![byte; LEN]], Vec::new()).unwrap();
        buf.extend_from_slice(&args).unwrap();
        let header = Header {
            kind: Kind::Task,
            id,
            call: offset_of(total as Task<Vec<u8>, u64>).unwrap(),
        };
        writer.send_bulk(header, buf, &[]).unwrap();
        writer.flush().unwrap();
        let mut payload = Vec::new();
        let (header, _) = reader.recv(&mut payload).unwrap().unwrap();
        assert_eq!((header.kind, header.id), (Kind::Done, id));
        take_from_bytes::<Vec<u64>>(&payload).unwrap().0[0]
    }

    #[test]
    fn a_worker_keeps_its_mapping_of_an_argument_buffer_for_the_next_task() {
        let (worker, mut writer, mut reader) = start_worker();
        let mut first = BulkBuf::with_capacity(LEN).unwrap();
        let inode = |b: &BulkBuf| nix::sys::stat::fstat(b.fd().as_raw_fd()).unwrap().st_ino;
        assert_eq!(
            total_in(&mut writer, &mut reader, &mut first, 0, 1),
            LEN as u64
        );
        assert_eq!(
            read_only_maps_of(inode(&first)),
            1,
            "not kept after the task"
        );
        // The same buffer, written again: read through the kept mapping, the new bytes.
        assert_eq!(
            total_in(&mut writer, &mut reader, &mut first, 1, 2),
            2 * LEN as u64
        );
        assert_eq!(read_only_maps_of(inode(&first)), 1);
        // Another buffer: kept beside the first (a pool hands out its spare buffers in turn).
        let mut second = BulkBuf::with_capacity(LEN).unwrap();
        assert_eq!(
            total_in(&mut writer, &mut reader, &mut second, 2, 3),
            3 * LEN as u64
        );
        assert_eq!(read_only_maps_of(inode(&first)), 1);
        assert_eq!(read_only_maps_of(inode(&second)), 1);
        // The pool drops the first: the worker lets its mapping go at the next task.
        let first_inode = inode(&first);
        drop(first);
        assert_eq!(
            total_in(&mut writer, &mut reader, &mut second, 3, 4),
            4 * LEN as u64
        );
        assert_eq!(read_only_maps_of(first_inode), 0, "a dropped buffer kept");
        assert_eq!(read_only_maps_of(inode(&second)), 1);
        drop(writer);
        drop(reader);
        assert_eq!(worker.join().unwrap(), 0);
        assert_eq!(
            read_only_maps_of(inode(&second)),
            0,
            "unmapped when the worker ends"
        );
    }

    /// A worker whose pool watches its memory keeps one mapping: the last buffer's.
    #[test]
    fn a_worker_told_to_keep_one_mapping_keeps_the_last() {
        use crate::wire::SETUP_ONE_MAP;
        let (worker, mut writer, mut reader) = start_worker();
        let setup = Header {
            kind: Kind::Setup,
            id: SETUP_ONE_MAP,
            // 0: the test process's allocator is left alone.
            call: 0,
        };
        writer.send(setup, &[], &[]).unwrap();
        let inode = |b: &BulkBuf| nix::sys::stat::fstat(b.fd().as_raw_fd()).unwrap().st_ino;
        let mut first = BulkBuf::with_capacity(LEN).unwrap();
        let mut second = BulkBuf::with_capacity(LEN).unwrap();
        assert_eq!(
            total_in(&mut writer, &mut reader, &mut first, 0, 1),
            LEN as u64
        );
        assert_eq!(
            total_in(&mut writer, &mut reader, &mut second, 1, 2),
            2 * LEN as u64
        );
        assert_eq!(read_only_maps_of(inode(&first)), 0, "two mappings kept");
        assert_eq!(read_only_maps_of(inode(&second)), 1);
        drop(writer);
        drop(reader);
        assert_eq!(worker.join().unwrap(), 0);
    }
}
