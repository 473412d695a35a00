//! The frames a supervisor sends its worker besides the small control ones: a body (a task's
//! arguments, the initializer's), counted in the pool's statistics, and the `Release` of a
//! result buffer.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;

use super::super::shared::Counters;
use crate::payload::Body;
use crate::wire::{FrameWriter, Header, Kind, RELEASE_DROP};

/// Queues a `Release` of task `id`'s result buffer: to write again (`reuse`), or to drop.
pub(super) fn send_release(writer: &mut FrameWriter, id: u64, reuse: bool) -> std::io::Result<()> {
    let release = Header {
        kind: Kind::Release,
        id,
        call: if reuse { 0 } else { RELEASE_DROP },
    };
    writer.send(release, &[], &[])
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
