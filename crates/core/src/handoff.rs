//! File descriptors inside serde values: how a shared array, a process-shared lock, a `Queue`
//! or a `Pipe` end crosses into another process.
//!
//! Bytes alone cannot carry a shared-memory segment or a socket to another process; the
//! kernel can, as `SCM_RIGHTS` ancillary data on a Unix socket. multiproc joins the two:
//!
//! - a type that owns a descriptor serializes it with [`export_fd`] (or the [`fd`] serde
//!   helper), which puts a duplicate into the table of the message being encoded and writes
//!   only its index;
//! - the transport (the process backends' wire protocol, a `Pipe`) encodes inside
//!   [`collect_fds`], sends the bytes and the collected descriptors together, and on the other
//!   side decodes inside [`provide_fds`], where [`import_fd`] takes each descriptor back by
//!   its index.
//!
//! Outside those two scopes, serializing such a value is an error that says why — it cannot
//! silently become a number that means nothing in the receiving process.
//!
//! ```
//! use std::os::fd::{AsFd, OwnedFd};
//! use multiproc_core::handoff::{collect_fds, export_fd, import_fd, provide_fds};
//!
//! /// A type that owns a descriptor derives serde with the `fd` adapter on that field.
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Carries {
//!     #[serde(with = "multiproc_core::handoff::fd")]
//!     file: OwnedFd,
//! }
//!
//! let file: OwnedFd = std::fs::File::open("/proc/self/stat")?.into();
//! // A transport encodes inside `collect_fds` and ships the descriptors beside the bytes.
//! let (index, fds) = collect_fds(|| export_fd(file.as_fd()));
//! assert_eq!(index?, 0);
//! assert_eq!(fds.len(), 1);
//! // The receiving side decodes inside `provide_fds`.
//! let received: OwnedFd = provide_fds(fds, || import_fd(0))?;
//! drop(received);
//! // Outside a transport, exporting is an error rather than a meaningless number.
//! assert!(export_fd(file.as_fd()).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::RefCell;
use std::os::fd::{BorrowedFd, OwnedFd};

use crate::{Error, Result};

thread_local! {
    static OUTGOING: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// The most descriptors one message may carry (the kernel's `SCM_MAX_FD`).
pub const MAX_FDS: usize = multiproc_sys::socket::SCM_MAX_FD;

/// Runs `encode` with an empty outgoing descriptor table and returns its result together with
/// the descriptors that [`export_fd`] put into the table, in index order. Scopes nest: an
/// inner scope has its own table, and the outer one is restored afterwards (also on panic).
pub fn collect_fds<R>(encode: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    struct Restore(Option<Vec<OwnedFd>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            OUTGOING.with(|t| *t.borrow_mut() = outer);
        }
    }
    let outer = OUTGOING.with(|t| t.borrow_mut().replace(Vec::new()));
    let restore = Restore(outer);
    let result = encode();
    let fds = OUTGOING.with(|t| t.borrow_mut().take()).unwrap_or_default();
    drop(restore);
    (result, fds)
}

/// Runs `decode` with `fds` as the incoming descriptor table, so that [`import_fd`] can take
/// them by index. Descriptors that `decode` did not take are closed when it returns.
pub fn provide_fds<R>(fds: Vec<OwnedFd>, decode: impl FnOnce() -> R) -> R {
    struct Restore(Option<Vec<Option<OwnedFd>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            // The table being replaced holds the descriptors nobody took; dropping closes them.
            let _unused = INCOMING.with(|t| std::mem::replace(&mut *t.borrow_mut(), outer));
        }
    }
    let table = fds.into_iter().map(Some).collect();
    let outer = INCOMING.with(|t| t.borrow_mut().replace(table));
    let _restore = Restore(outer);
    decode()
}

/// Whether this thread is inside [`collect_fds`], i.e. whether a descriptor can be exported.
pub fn collecting() -> bool {
    OUTGOING.with(|t| t.borrow().is_some())
}

/// Duplicates `fd` into the outgoing table of the message being encoded and returns its
/// index. Outside [`collect_fds`] this is an error: a descriptor number means nothing in
/// another process.
pub fn export_fd(fd: BorrowedFd<'_>) -> Result<u32> {
    OUTGOING.with(|t| {
        let mut table = t.borrow_mut();
        let Some(table) = table.as_mut() else {
            return Err(Error::Serialization(
                "this value owns a file descriptor (shared memory, a process-shared lock, a \
                 Queue or Pipe end); it can only cross to another process through multiproc — as \
                 an argument of a process pool or spawned Process, or sent over a Pipe — not be \
                 serialized to bytes alone"
                    .into(),
            ));
        };
        if table.len() >= MAX_FDS {
            return Err(Error::Serialization(format!(
                "one message may carry at most {MAX_FDS} file descriptors"
            )));
        }
        // Duplicated so that the message owns what it sends, whatever happens to the value.
        table.push(fd.try_clone_to_owned()?);
        Ok(u32::try_from(table.len() - 1).expect("at most MAX_FDS"))
    })
}

/// Takes the descriptor at `index` from the incoming table of the message being decoded.
/// Outside [`provide_fds`], or for an index the message did not carry or that was already
/// taken, this is an error.
pub fn import_fd(index: u32) -> Result<OwnedFd> {
    INCOMING.with(|t| {
        let mut table = t.borrow_mut();
        let Some(table) = table.as_mut() else {
            return Err(Error::Serialization(
                "a file descriptor can only be decoded from a message received through \
                 multiproc (a process pool, a spawned Process, a Pipe)"
                    .into(),
            ));
        };
        table
            .get_mut(index as usize)
            .and_then(Option::take)
            .ok_or_else(|| {
                Error::Serialization(format!(
                    "the message carries no file descriptor number {index} (or it was taken)"
                ))
            })
    })
}

/// A serde adapter for a field that owns a descriptor: `#[serde(with =
/// "multiproc_core::handoff::fd")]` on an [`OwnedFd`] field (or any `AsFd` field when only
/// serializing).
pub mod fd {
    use std::os::fd::{AsFd, OwnedFd};

    use serde::{de, ser, Deserialize, Deserializer, Serializer};

    /// Serializes the descriptor as its index in the message's table (see [`super::export_fd`]).
    pub fn serialize<S: Serializer>(fd: &impl AsFd, s: S) -> Result<S::Ok, S::Error> {
        let index = super::export_fd(fd.as_fd()).map_err(ser::Error::custom)?;
        s.serialize_newtype_struct("multiproc::Fd", &index)
    }

    /// Deserializes a descriptor by its index in the message's table (see [`super::import_fd`]).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OwnedFd, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename = "multiproc::Fd")]
        struct Index(u32);
        let Index(index) = Index::deserialize(d)?;
        super::import_fd(index).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, AsRawFd};

    use super::*;

    fn a_fd() -> OwnedFd {
        std::fs::File::open("/proc/self/stat").unwrap().into()
    }

    #[test]
    fn exported_fds_are_duplicates_in_index_order() {
        let (a, b) = (a_fd(), a_fd());
        let (indices, fds) =
            collect_fds(|| (export_fd(a.as_fd()).unwrap(), export_fd(b.as_fd()).unwrap()));
        assert_eq!(indices, (0, 1));
        assert_eq!(fds.len(), 2);
        assert_ne!(fds[0].as_raw_fd(), a.as_raw_fd());
        assert!(!collecting());
    }

    #[test]
    fn scopes_nest_and_restore() {
        let a = a_fd();
        let ((inner, outer_after), outer_fds) = collect_fds(|| {
            export_fd(a.as_fd()).unwrap();
            let (_, inner_fds) = collect_fds(|| export_fd(a.as_fd()).unwrap());
            (inner_fds.len(), export_fd(a.as_fd()).unwrap())
        });
        assert_eq!(inner, 1);
        assert_eq!(
            outer_after, 1,
            "the outer table continued after the inner scope"
        );
        assert_eq!(outer_fds.len(), 2);
    }

    #[test]
    fn import_takes_each_index_once_and_outside_is_an_error() {
        assert!(import_fd(0).is_err());
        let fd = a_fd();
        provide_fds(vec![fd], || {
            assert!(import_fd(1).is_err(), "no such index");
            assert!(import_fd(0).is_ok());
            assert!(import_fd(0).is_err(), "already taken");
        });
        assert!(export_fd(a_fd().as_fd())
            .unwrap_err()
            .to_string()
            .contains("file descriptor"));
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "Miri does not emulate sockets passed through dup (ENOTSOCK)"
    )]
    fn the_fd_adapter_round_trips_through_bytes_and_a_table() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Carries {
            before: u32,
            #[serde(with = "super::fd")]
            end: OwnedFd,
            after: String,
        }
        use std::io::{Read, Write};
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let value = Carries {
            before: 7,
            end: theirs.into(),
            after: "x".into(),
        };
        let (bytes, fds) = collect_fds(|| postcard::to_stdvec(&value).unwrap());
        drop(value);
        assert!(postcard::from_bytes::<Carries>(&bytes).is_err(), "no table");
        let back: Carries = provide_fds(fds, || postcard::from_bytes(&bytes).unwrap());
        assert_eq!((back.before, back.after.as_str()), (7, "x"));
        let mut end = std::os::unix::net::UnixStream::from(back.end);
        end.write_all(b"!").unwrap();
        let mut ours = ours;
        let mut got = [0u8; 1];
        ours.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"!");
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "Miri does not emulate sockets passed through dup (ENOTSOCK)"
    )]
    fn untaken_fds_are_closed() {
        use std::io::Read;
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        provide_fds(vec![theirs.into()], || {});
        let mut ours = ours;
        let n = ours.read(&mut [0u8; 1]).unwrap();
        assert_eq!(n, 0, "the peer end was closed, so the stream is at its end");
    }
}
