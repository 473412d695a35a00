//! A [`Connection`] as a serde value (see [`multiproc_core::handoff`]): its direction and
//! its socket's descriptor.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use serde::{Deserialize, Serialize};

use super::Connection;

/// What a `Connection` is on the wire: its direction and its socket, which travels as a
/// descriptor (see [`multiproc_core::handoff`]).
#[derive(Serialize)]
struct WireRef<'a> {
    readable: bool,
    writable: bool,
    #[serde(serialize_with = "multiproc_core::handoff::fd::serialize")]
    sock: BorrowedFd<'a>,
}

#[derive(Deserialize)]
struct WireOwned {
    readable: bool,
    writable: bool,
    #[serde(deserialize_with = "multiproc_core::handoff::fd::deserialize")]
    sock: OwnedFd,
}

/// A `Connection` serializes as its socket's descriptor, so it can be sent over another
/// `Connection` or passed to a spawned process (encoding outside
/// [`collect_fds`](multiproc_core::handoff::collect_fds) is an error). The sender keeps its end
/// open: both processes then hold the same end, as after Python pickles a `Connection`. An end that
/// has received bytes not yet read, or is closed, refuses to serialize.
impl Serialize for Connection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if !multiproc_core::handoff::collecting() {
            return Err(serde::ser::Error::custom(
                "a Connection owns a file descriptor: it can only be sent over a Pipe or passed \
                 to a process by multiproc, not serialized to bytes alone",
            ));
        }
        // Not waited for: another thread in the middle of a message is a reason to refuse.
        let (Some(mut reader), Some(mut writer)) = (self.reader.try_take(), self.writer.try_take())
        else {
            return Err(serde::ser::Error::custom(
                "another thread is sending or receiving on this Connection; only a \
                 Connection that nobody is using can be sent",
            ));
        };
        let (Some(r), Some(w)) = (reader.as_ref(), writer.as_ref()) else {
            return Err(serde::ser::Error::custom(
                "a closed Connection cannot be sent",
            ));
        };
        if self.closed() {
            return Err(serde::ser::Error::custom(
                "a closed Connection cannot be sent",
            ));
        }
        if r.frames.has_buffered() || r.frames.failed() || r.broken || w.broken {
            return Err(serde::ser::Error::custom(
                "this Connection has received bytes it has not handed out yet (or a timeout \
                 or a failed read broke it); only a Connection with nothing pending can be sent",
            ));
        }
        let out = WireRef {
            readable: self.readable,
            writable: self.writable,
            sock: w.frames.get_ref().as_fd(),
        }
        .serialize(s);
        if self.closed() {
            // `close` came meanwhile and could not take the halves: they go now.
            *reader = None;
            *writer = None;
        }
        out
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let w = WireOwned::deserialize(d)?;
        let sock = UnixStream::from(w.sock);
        Connection::from_stream(sock, w.readable, w.writable).map_err(|e| {
            serde::de::Error::custom(format!("cannot attach a received Connection: {e}"))
        })
    }
}
