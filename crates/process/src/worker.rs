//! The worker loop: what a worker process runs until its pool tells it to stop.

use std::io::{BufReader, BufWriter, Write};
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};

use crate::trampoline;
use crate::wire::{read_frame, write_frame, Header, Kind};

/// Serves tasks from `stream` until a shutdown frame or the end of the stream; returns the
/// process exit code (0 on an orderly end, 2 if the connection broke).
///
/// Each task runs under `catch_unwind`: a panic becomes a `Panicked` reply and the worker
/// carries on. Anything that kills the process (abort, a signal, `exit`) is noticed by the
/// pool's supervisor as the end of this stream.
pub fn serve(stream: UnixStream) -> i32 {
    let Ok(write_half) = stream.try_clone() else {
        return 2;
    };
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut writer = BufWriter::with_capacity(64 * 1024, write_half);
    let mut payload = Vec::new();
    loop {
        let header = match read_frame(&mut reader, &mut payload) {
            Ok(Some(h)) => h,
            Ok(None) => return 0,
            Err(_) => return 2,
        };
        match header.kind {
            Kind::Task => {}
            Kind::Shutdown => return 0,
            Kind::Done | Kind::Panicked | Kind::Failed => return 2,
        }
        // SAFETY: the offset comes from our own pool, over a socket only it holds, and was
        // produced by `offset_of` in a process running this same binary (our parent before
        // the fork, or the same executable that started us).
        let run = unsafe { trampoline::resolve(header.call) };
        let (kind, reply) = match panic::catch_unwind(AssertUnwindSafe(|| run(&payload))) {
            Ok(Ok(bytes)) => (Kind::Done, bytes),
            Ok(Err(message)) => (Kind::Failed, message.into_bytes()),
            Err(p) => (Kind::Panicked, panic_message(p).into_bytes()),
        };
        let reply_header = Header {
            kind,
            id: header.id,
            call: 0,
        };
        if write_frame(&mut writer, reply_header, &reply).is_err() {
            return 2;
        }
        // Every reply leaves before the next task starts: if that task kills the process, the
        // replies before it must already be with the pool, or it would blame the wrong task.
        if writer.flush().is_err() {
            return 2;
        }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match multiproc_core::Error::from_panic(payload) {
        multiproc_core::Error::TaskPanicked { message } => message,
        other => other.to_string(),
    }
}
