//! The frames a supervisor sends its worker besides the small control ones: a body (a task's
//! arguments, the initializer's), counted in the pool's statistics, and the `Release`s of
//! result buffers.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;

use super::super::shared::Counters;
use crate::bulk::Releases;
use crate::payload::Body;
use crate::wire::{FrameWriter, Header, Kind, RELEASE_DROP};

/// Queues a `Release` for each task `releases` holds, in its order: its result buffer to
/// write again, or to drop. Stops at the first frame that cannot be written.
pub(super) fn send_releases(writer: &mut FrameWriter, releases: &Releases) -> std::io::Result<()> {
    for (id, reuse) in releases.take() {
        let release = Header {
            kind: Kind::Release,
            id,
            call: if reuse { 0 } else { RELEASE_DROP },
        };
        writer.send(release, &[], &[])?;
    }
    Ok(())
}

/// Queues one frame carrying `body` (a bulk frame for a bulk body, when the frame has room
/// for its descriptor; otherwise the bytes go through the socket) and counts what it carries.
/// The caller keeps `body` unchanged until the worker has answered the frame.
pub(super) fn send_body(
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
