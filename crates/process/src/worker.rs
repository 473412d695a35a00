//! The worker loop: what a worker process runs until its pool tells it to stop.

use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};

use multiproc_sys::memory::{mallopt, MallocParam};

use crate::trampoline;
use crate::wire::{FrameReader, FrameWriter, Header, Kind};

/// The id a worker uses to report that its pool's initializer failed.
pub const INIT_ID: u64 = u64::MAX;

/// The exit code of a worker whose initializer failed.
pub const INIT_FAILED: i32 = 3;

/// Serves tasks from `stream` until a shutdown frame or the end of the stream; returns the
/// process exit code (0 on an orderly end, 2 if the connection broke, [`INIT_FAILED`] if the
/// pool's initializer failed).
///
/// Each task runs under `catch_unwind`: a panic becomes a `Panicked` reply and the worker
/// carries on. Anything that kills the process (abort, a signal, `exit`) is noticed by the
/// pool's supervisor as the end of this stream. An `Init` frame runs once, before the tasks;
/// if it fails, the worker reports it under [`INIT_ID`] and exits.
///
/// # Safety
///
/// The other end of `stream` must be a [`ProcessPool`](crate::ProcessPool) of this same
/// binary image (a fork of this process, or the same executable started again): a task frame
/// names its code by an offset into that image, which is called as is, and a large argument
/// arrives as a shared buffer the pool promises not to write while the task runs.
pub unsafe fn serve(stream: UnixStream) -> i32 {
    keep_large_allocations();
    let Ok(write_half) = stream.try_clone() else {
        return 2;
    };
    let mut reader = FrameReader::new(stream);
    let mut writer = FrameWriter::new(write_half);
    let mut payload = Vec::new();
    loop {
        // SAFETY: the peer is our pool (this function's contract), which writes a bulk frame's
        // buffer again only after this worker's reply to that frame, and the view is dropped
        // before the reply below.
        let (header, fds, bulk) = match unsafe { reader.recv_with_bulk(&mut payload) } {
            Ok(Some(frame)) => frame,
            Ok(None) => return 0,
            Err(_) => return 2,
        };
        match header.kind {
            Kind::Task | Kind::Init => {}
            Kind::Shutdown => return 0,
            Kind::Done | Kind::Panicked | Kind::Failed | Kind::Message => return 2,
        }
        // SAFETY: the offset comes from our own pool (this function's contract), over a socket
        // only it holds, and was produced by `offset_of` in a process running this same
        // binary (our parent before the fork, or the same executable that started us).
        let run = unsafe { trampoline::resolve(header.call) };
        let input = bulk.as_ref().map_or(&payload[..], |view| view.as_slice());
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| run.run(input, fds)));
        drop(bulk);
        let init = header.kind == Kind::Init;
        let (kind, reply, reply_fds) = match outcome {
            Ok(Ok(_)) if init => continue,
            Ok(Ok((bytes, fds))) => (Kind::Done, bytes, fds),
            Ok(Err(message)) => (Kind::Failed, message.into_bytes(), Vec::new()),
            Err(p) => (Kind::Panicked, panic_message(p).into_bytes(), Vec::new()),
        };
        let reply_header = Header {
            kind,
            id: if init { INIT_ID } else { header.id },
            call: 0,
        };
        // Every reply leaves before the next task starts: if that task kills the process, the
        // replies before it must already be with the pool, or it would blame the wrong task.
        if writer
            .send(reply_header, &reply, &reply_fds)
            .and_then(|()| writer.flush())
            .is_err()
        {
            return 2;
        }
        if init {
            return INIT_FAILED;
        }
    }
}

/// A worker decodes each large argument into a fresh allocation. glibc serves allocations
/// above 32 MiB with `mmap` and unmaps them on free, so every 100 MB argument would land on
/// pages the kernel must fault in and zero again — on our 2-core machine that first touch ran
/// at 0.4–1.7 GB/s against 12 GB/s for a warm copy. A worker process only runs tasks, so it
/// serves large allocations from its heap and keeps freed memory for the next task instead.
fn keep_large_allocations() {
    // Hints: where the C library is not glibc they are refused, and nothing changes.
    let _ = mallopt(MallocParam::MmapMax, 0);
    let _ = mallopt(MallocParam::TrimThreshold, 1 << 30);
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match multiproc_core::Error::from_panic(payload) {
        multiproc_core::Error::TaskPanicked { message } => message,
        other => other.to_string(),
    }
}
