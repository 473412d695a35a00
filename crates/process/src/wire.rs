//! The wire protocol between a pool and its workers: length-prefixed frames over a Unix
//! stream socket. The header is fixed-size and hand-encoded (little-endian); the payload is
//! the postcard encoding of the chunk's arguments or results.
//!
//! ```text
//! frame := len:u64  kind:u8  id:u64  call:u64  payload[len]
//! ```
//!
//! `call` is the task's trampoline as an offset into this binary (see [`crate::trampoline`]).

use std::io::{self, Read, Write};

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Parent → worker: run trampoline `call` on `payload`.
    Task = 1,
    /// Parent → worker: finish and exit.
    Shutdown = 2,
    /// Worker → parent: the results of task `id`.
    Done = 3,
    /// Worker → parent: task `id` panicked; the payload is the message (UTF-8).
    Panicked = 4,
    /// Worker → parent: task `id` failed to decode or encode; the payload is the message.
    Failed = 5,
}

impl Kind {
    fn from_u8(b: u8) -> io::Result<Kind> {
        Ok(match b {
            1 => Kind::Task,
            2 => Kind::Shutdown,
            3 => Kind::Done,
            4 => Kind::Panicked,
            5 => Kind::Failed,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unknown frame kind {b}"),
                ))
            }
        })
    }
}

const HEADER: usize = 8 + 1 + 8 + 8;

/// A frame's fixed fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the frame carries.
    pub kind: Kind,
    /// The task id the frame belongs to.
    pub id: u64,
    /// The trampoline offset (tasks only; 0 otherwise).
    pub call: u64,
}

/// Writes one frame (the header and payload are written back to back; the caller flushes).
pub fn write_frame(w: &mut impl Write, header: Header, payload: &[u8]) -> io::Result<()> {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    h[8] = header.kind as u8;
    h[9..17].copy_from_slice(&header.id.to_le_bytes());
    h[17..25].copy_from_slice(&header.call.to_le_bytes());
    w.write_all(&h)?;
    w.write_all(payload)
}

/// Reads one frame into `payload` (reusing its allocation). `Ok(None)` on a clean end of
/// stream before a frame starts.
pub fn read_frame(r: &mut impl Read, payload: &mut Vec<u8>) -> io::Result<Option<Header>> {
    let mut h = [0u8; HEADER];
    match r.read_exact(&mut h) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
    let len = usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "frame too large"))?;
    let header = Header {
        kind: Kind::from_u8(h[8])?,
        id: u64::from_le_bytes(h[9..17].try_into().expect("8 bytes")),
        call: u64::from_le_bytes(h[17..25].try_into().expect("8 bytes")),
    };
    payload.clear();
    payload
        .try_reserve_exact(len)
        .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, format!("frame of {len} bytes")))?;
    r.take(len as u64).read_to_end(payload)?;
    if payload.len() != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Some(header))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        let h = Header {
            kind: Kind::Task,
            id: 7,
            call: 0xdead,
        };
        write_frame(&mut buf, h, b"payload").unwrap();
        write_frame(
            &mut buf,
            Header {
                kind: Kind::Done,
                id: 8,
                call: 0,
            },
            b"",
        )
        .unwrap();
        let mut r = &buf[..];
        let mut p = Vec::new();
        assert_eq!(read_frame(&mut r, &mut p).unwrap(), Some(h));
        assert_eq!(p, b"payload");
        assert_eq!(read_frame(&mut r, &mut p).unwrap().unwrap().id, 8);
        assert!(p.is_empty());
        assert_eq!(read_frame(&mut r, &mut p).unwrap(), None);
    }

    #[test]
    fn truncated_and_corrupt_frames_are_errors() {
        let mut buf = Vec::new();
        write_frame(
            &mut buf,
            Header {
                kind: Kind::Done,
                id: 1,
                call: 0,
            },
            b"abc",
        )
        .unwrap();
        let mut p = Vec::new();
        assert!(read_frame(&mut &buf[..buf.len() - 1], &mut p).is_err());
        buf[8] = 99;
        assert!(read_frame(&mut &buf[..], &mut p).is_err());
    }
}
