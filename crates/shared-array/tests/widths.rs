//! Issue 11, item 7: one access width per shared region. Atomic accesses of different sizes
//! to the same bytes that race are undefined behaviour by Rust's rules; the first typed view
//! of a region fixes its width (recorded in the shared memory itself, so every handle in every
//! process sees it), and a view of another width is refused with an error naming the argument.
//! Process-shared primitives own their buffers: the generic byte and word accessors refuse them.

mod common;

use std::sync::atomic::Ordering::SeqCst;

use common::fork_child;
use multiproc_core::{Error, Lock, SharedBuffer};
use multiproc_shared_array::{
    recv_buffer, send_buffer, ProcessBarrier, ProcessCondition, ProcessEvent, ProcessLock,
    ProcessRLock, ProcessSemaphore, RawArray, ShmBuffer, Value,
};

/// `RawArray::<u8>::from_buffer` on a `RawArray<u64>`'s memory: byte stores beside the u64
/// array's word stores.
#[test]
fn a_u64_arrays_memory_cannot_be_retyped_as_bytes() {
    let words = RawArray::<u64>::from_slice(&[1, 2]).unwrap();
    let again = words.buffer().try_clone().unwrap();
    let bytes = RawArray::<u8>::from_buffer(again, 16);
    match bytes {
        Err(Error::InvalidArgument {
            name: "buf",
            reason,
        }) => {
            assert!(reason.contains("8-byte"), "{reason}");
        }
        other => panic!("re-typed a u64 array as bytes: {other:?}"),
    }
    // The same width is fine (f64 and u64 are both 8-byte words).
    let again = words.buffer().try_clone().unwrap();
    let floats = RawArray::<f64>::from_buffer(again, 2).unwrap();
    assert_eq!(floats.load(0).unwrap(), f64::from_bits(1));
}

/// The byte API of a typed array's buffer is refused unless the array is made of bytes.
#[test]
fn a_typed_arrays_buffer_refuses_byte_access() {
    let words = RawArray::<u32>::zeros(4).unwrap();
    assert!(matches!(
        words.buffer().write_at(0, &[1]),
        Err(Error::InvalidArgument { name: "self", .. })
    ));
    let mut out = [0u8; 1];
    assert!(words.buffer().read_at(0, &mut out).is_err());
    let bytes = RawArray::<u8>::zeros(4).unwrap();
    bytes.buffer().write_at(0, &[1]).unwrap();
    assert_eq!(bytes.load(0).unwrap(), 1);
}

/// `Value::atomic()` (a 64-bit atomic) beside a byte write to the value's memory.
#[test]
fn a_values_atomic_cannot_race_byte_writes() {
    let v = Value::new(0_u64).unwrap();
    let (cell, lock) = v.into_parts();
    let other = cell.buffer().try_clone().unwrap();
    let v = Value::from_parts(cell, lock).unwrap();
    v.atomic().fetch_add(1, SeqCst);
    assert!(
        other.write_at(0, &[0xFF]).is_err(),
        "a byte write reached a Value's 64-bit atomic"
    );
    assert_eq!(v.get().unwrap(), 1);
}

/// `buffer().write_at` on every process-shared primitive, against its lock word's CAS.
#[test]
fn primitives_do_not_lend_their_memory_for_byte_writes() {
    let lock = ProcessLock::new().unwrap();
    lock.acquire().unwrap();
    let buffers: Vec<(&str, &ShmBuffer)> = vec![("lock", lock.buffer())];
    let rlock = ProcessRLock::new().unwrap();
    let event = ProcessEvent::new().unwrap();
    let cond = ProcessCondition::new().unwrap();
    let sem = ProcessSemaphore::new(1).unwrap();
    let barrier = ProcessBarrier::new(2).unwrap();
    let mut buffers = buffers;
    buffers.extend([
        ("rlock", rlock.buffer()),
        ("event", event.buffer()),
        ("condition", cond.buffer()),
        ("semaphore", sem.buffer()),
        ("barrier", barrier.buffer()),
    ]);
    for (kind, buf) in buffers {
        // Bytes 64..72 are the lock word (or the primitive's state) of every kind.
        assert!(
            buf.write_at(64, &[0; 8]).is_err(),
            "{kind}: byte writes over the primitive's words"
        );
        let mut out = [0u8; 8];
        assert!(buf.read_at(64, &mut out).is_err(), "{kind}: byte reads");
    }
    assert!(lock.locked(), "the lock word was overwritten");
    lock.release().unwrap();
}

/// The width lives in the shared memory: a process that got the memory by fork fixes it for
/// this one too, and one that received the descriptor sees it.
#[test]
fn the_width_is_shared_with_other_processes() {
    let buf = ShmBuffer::new(64).unwrap();
    // SAFETY: the child only uses the buffer's atomic byte API.
    let child = unsafe {
        fork_child(|| {
            buf.write_at(0, &[7]).unwrap();
        })
    };
    child.wait().unwrap();
    let again = buf.try_clone().unwrap();
    match RawArray::<u64>::from_buffer(again, 8) {
        Err(Error::InvalidArgument { name: "buf", .. }) => {}
        other => panic!("the child's byte view did not fix the width here: {other:?}"),
    }

    let words = RawArray::<u64>::zeros(8).unwrap();
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    send_buffer(&a, words.buffer()).unwrap();
    let received = recv_buffer(&b).unwrap();
    assert!(received.write_at(0, &[1]).is_err());
    assert!(RawArray::<u8>::from_buffer(received, 64).is_err());
}

/// The record is the last word of the memfd, not a place computed from the length a sender
/// announces: a forged, shorter length still finds the same record (and never puts it inside
/// the 64-bit array's data).
#[test]
fn a_forged_length_does_not_move_the_width_record() {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    let words = RawArray::<u64>::from_slice(&[u64::MAX; 8]).unwrap();
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut msg = [0u8; 16];
    msg[..8].copy_from_slice(b"mpshmbuf");
    msg[8..].copy_from_slice(&12u64.to_le_bytes()); // the array has 64 bytes
    let fds = [words.buffer().fd().as_raw_fd()];
    sendmsg::<()>(
        a.as_raw_fd(),
        &[IoSlice::new(&msg)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    let short = recv_buffer(&b).unwrap();
    assert_eq!(short.len(), 12);
    assert!(short.write_at(0, &[0]).is_err());
    assert!(matches!(
        RawArray::<u32>::from_buffer(short, 3),
        Err(Error::InvalidArgument { name: "buf", .. })
    ));
    assert_eq!(words.to_vec(), [u64::MAX; 8]);
}
