//! What crosses between rank 0 and a worker rank: one MPI message of bytes per frame, the
//! payload first and a fixed-size trailer last (appending to the encoder's vector is free;
//! a header would need the payload copied behind it).

/// Rank 0 → worker: tasks, initializers, shutdown (in order, per worker).
pub(crate) const TAG_WORK: i32 = 1;
/// Rank 0 → worker: "skip the tasks of this pool you have not started" (`terminate`).
pub(crate) const TAG_CANCEL: i32 = 2;
/// Worker → rank 0: replies.
pub(crate) const TAG_REPLY: i32 = 3;

/// What a work frame asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Work {
    /// Run the chunk in the payload.
    Task = 1,
    /// Run the pool's initializer on the payload.
    Init = 2,
    /// Run the pool's initializer on `id` bytes that arrive by `MPI_Bcast` from rank 0.
    InitBcast = 3,
    /// Reply [`Reply::Bye`] and leave the worker loop.
    Shutdown = 4,
    /// Take part in publishing `id` bytes in the nodes' shared windows, then reply
    /// [`Reply::InitOk`].
    Shared = 5,
}

/// What a worker replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Reply {
    /// The encoded results.
    Done = 1,
    /// The task panicked: the message.
    Panicked = 2,
    /// The arguments or results could not be decoded/encoded: the message.
    Failed = 3,
    /// The task was not run: its pool was terminated.
    Skipped = 4,
    /// The initializer ran (`id` is the pool).
    InitOk = 5,
    /// The initializer failed (`id` is the pool): the message.
    InitFailed = 6,
    /// The worker leaves (shutdown).
    Bye = 7,
}

impl Work {
    fn from_u8(b: u8) -> Option<Work> {
        Some(match b {
            1 => Work::Task,
            2 => Work::Init,
            3 => Work::InitBcast,
            4 => Work::Shutdown,
            5 => Work::Shared,
            _ => return None,
        })
    }
}

impl Reply {
    fn from_u8(b: u8) -> Option<Reply> {
        Some(match b {
            1 => Reply::Done,
            2 => Reply::Panicked,
            3 => Reply::Failed,
            4 => Reply::Skipped,
            5 => Reply::InitOk,
            6 => Reply::InitFailed,
            7 => Reply::Bye,
            _ => return None,
        })
    }
}

/// The trailer of a work frame: `pool:u64 id:u64 call:u64 kind:u8`, little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WorkTrailer {
    pub(crate) pool: u64,
    pub(crate) id: u64,
    pub(crate) call: u64,
    pub(crate) kind: Work,
}

const WORK_LEN: usize = 25;
const REPLY_LEN: usize = 9;

impl WorkTrailer {
    /// Appends the trailer to `payload`.
    pub(crate) fn append_to(self, payload: &mut Vec<u8>) {
        payload.extend_from_slice(&self.pool.to_le_bytes());
        payload.extend_from_slice(&self.id.to_le_bytes());
        payload.extend_from_slice(&self.call.to_le_bytes());
        payload.push(self.kind as u8);
    }

    /// Splits a received frame into its trailer, leaving the payload in `frame`.
    pub(crate) fn take_from(frame: &mut Vec<u8>) -> Option<WorkTrailer> {
        let at = frame.len().checked_sub(WORK_LEN)?;
        let t = &frame[at..];
        let word = |i: usize| u64::from_le_bytes(t[i..i + 8].try_into().expect("8 bytes"));
        let trailer = WorkTrailer {
            pool: word(0),
            id: word(8),
            call: word(16),
            kind: Work::from_u8(t[24])?,
        };
        frame.truncate(at);
        Some(trailer)
    }
}

/// Appends a reply trailer `id:u64 kind:u8` to `payload`.
pub(crate) fn append_reply(payload: &mut Vec<u8>, id: u64, kind: Reply) {
    payload.extend_from_slice(&id.to_le_bytes());
    payload.push(kind as u8);
}

/// Splits a received reply into `(id, kind)`, leaving the payload in `frame`.
pub(crate) fn take_reply(frame: &mut Vec<u8>) -> Option<(u64, Reply)> {
    let at = frame.len().checked_sub(REPLY_LEN)?;
    let id = u64::from_le_bytes(frame[at..at + 8].try_into().expect("8 bytes"));
    let kind = Reply::from_u8(frame[at + 8])?;
    frame.truncate(at);
    Some((id, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_round_trip() {
        let mut f = b"payload".to_vec();
        let t = WorkTrailer {
            pool: 3,
            id: u64::MAX - 1,
            call: 0x1234_5678_9abc_def0,
            kind: Work::InitBcast,
        };
        t.append_to(&mut f);
        assert_eq!(WorkTrailer::take_from(&mut f), Some(t));
        assert_eq!(f, b"payload");
        append_reply(&mut f, 42, Reply::Skipped);
        assert_eq!(take_reply(&mut f), Some((42, Reply::Skipped)));
        assert_eq!(f, b"payload");
        assert_eq!(take_reply(&mut vec![0; 8]), None);
        assert_eq!(WorkTrailer::take_from(&mut vec![0; 25]), None, "kind 0");
    }
}
