//! The loop a worker rank (1..N-1) runs inside [`init`](crate::init) until rank 0 shuts it
//! down.

use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};

use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::Root;

use multiproc_process::trampoline;

use crate::protocol::{append_reply, Reply, Work, WorkTrailer, TAG_CANCEL, TAG_REPLY, TAG_WORK};
use crate::raw::Backoff;
use crate::shared::{self, Comms};

/// Serves frames from rank 0 until a shutdown frame. Each task runs under `catch_unwind`: a
/// panic fails only that task. Anything that kills the process kills the MPI job (Open MPI
/// aborts every rank when one dies), which is the failure model this backend documents.
///
/// # Safety
///
/// Rank 0 must run this same binary image and send only frames made by this crate (its
/// `call` words come from `offset_of` there). `init` checks the image's fingerprint at start.
pub(crate) unsafe fn serve(world: &SimpleCommunicator, comms: &Comms) {
    let root = world.process_at_rank(0);
    let mut cancelled: HashSet<u64> = HashSet::new();
    let mut backoff = Backoff::default();
    loop {
        let probed = loop {
            if let Some(m) = root.immediate_matched_probe_with_tag(TAG_WORK) {
                backoff.reset();
                break m;
            }
            if let Some(pause) = backoff.next() {
                std::thread::sleep(pause);
            }
        };
        let (mut frame, _) = probed.matched_receive_vec::<u8>();
        let Some(t) = WorkTrailer::take_from(&mut frame) else {
            eprintln!("multiproc-mpi: rank {} got a malformed frame", world.rank());
            world.abort(70);
        };
        let mut reply = Vec::new();
        let (id, kind) = match t.kind {
            Work::Shutdown => {
                append_reply(&mut reply, 0, Reply::Bye);
                root.send_with_tag(&reply[..], TAG_REPLY);
                return;
            }
            Work::Task => {
                while let Some(m) = root.immediate_matched_probe_with_tag(TAG_CANCEL) {
                    let (pool, _) = m.matched_receive_vec::<u8>();
                    let pool = u64::from_le_bytes(pool.try_into().unwrap_or([0xff; 8]));
                    cancelled.insert(pool);
                }
                if cancelled.contains(&t.pool) {
                    (t.id, Reply::Skipped)
                } else {
                    // SAFETY: `t.call` came from rank 0, which runs this same image (this
                    // function's contract) and made it with `offset_of`.
                    let outcome = unsafe { run(t.call, &frame) };
                    drop(frame);
                    match outcome {
                        Ok(bytes) => {
                            reply = bytes;
                            (t.id, Reply::Done)
                        }
                        Err((kind, message)) => {
                            reply = message.into_bytes();
                            (t.id, kind)
                        }
                    }
                }
            }
            Work::Shared => {
                let bytes = shared::publish(comms, t.id as usize, None);
                *shared::CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = bytes;
                (t.pool, Reply::InitOk)
            }
            Work::Init | Work::InitBcast => {
                if t.kind == Work::InitBcast {
                    frame = vec![0u8; t.id as usize];
                    root.broadcast_into(&mut frame[..]);
                }
                // SAFETY: as for a task.
                match unsafe { run(t.call, &frame) } {
                    Ok(_) => (t.pool, Reply::InitOk),
                    Err((_, message)) => {
                        reply = message.into_bytes();
                        (t.pool, Reply::InitFailed)
                    }
                }
            }
        };
        append_reply(&mut reply, id, kind);
        // A blocking send: rank 0 never blocks sending to us (its sends are non-blocking) and
        // keeps probing for replies, so a large reply's rendezvous completes.
        root.send_with_tag(&reply[..], TAG_REPLY);
    }
}

/// Runs the chunk runner named by `call` on `input`: the encoded results, or how it failed.
///
/// # Safety
///
/// `call` must come from `offset_of` in a process running this same binary image.
unsafe fn run(call: u64, input: &[u8]) -> Result<Vec<u8>, (Reply, String)> {
    // SAFETY: this function's contract.
    let f = unsafe { trampoline::resolve(call) };
    match panic::catch_unwind(AssertUnwindSafe(|| f.run(input, Vec::new()))) {
        Ok(Ok((bytes, fds))) if fds.is_empty() => Ok(bytes),
        Ok(Ok(_)) => Err((
            Reply::Failed,
            "encoding the results: a result holds a file descriptor (a shared array, queue, \
             lock or pipe end), which cannot cross between MPI ranks"
                .to_owned(),
        )),
        Ok(Err(message)) => Err((Reply::Failed, message)),
        Err(payload) => Err((Reply::Panicked, multiproc_core::panic_message(&*payload))),
    }
}
