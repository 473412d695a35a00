//! Shared objects cross into other processes as serde values whose descriptors travel beside
//! the bytes (`multiproc_core::handoff`): round trips in one process, across a real fork and
//! socket, and every way a message can be wrong.

mod common;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use common::transport;
use multiproc_core::handoff::{collect_fds, provide_fds};
use multiproc_core::{Barrier, Condition, Event, Lock, RLock, Semaphore, SharedBuffer};
use multiproc_fork::Process;
use multiproc_shared_array::{
    Array, FrozenArray, LocalArray, ProcessBarrier, ProcessCondition, ProcessEvent, ProcessLock,
    ProcessRLock, ProcessSemaphore, RawArray, ShmBuffer, Value,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encodes inside `collect_fds` and decodes inside `provide_fds`, as a transport does.
fn round_trip<T: Serialize + DeserializeOwned>(value: &T) -> postcard::Result<T> {
    let (bytes, fds) = collect_fds(|| postcard::to_stdvec(value));
    let bytes = bytes?;
    provide_fds(fds, || postcard::from_bytes(&bytes))
}

/// Encodes `value` and decodes the bytes as a `U`.
fn reinterpret<T: Serialize, U: DeserializeOwned>(value: &T) -> postcard::Result<U> {
    let (bytes, fds) = collect_fds(|| postcard::to_stdvec(value));
    let bytes = bytes?;
    provide_fds(fds, || postcard::from_bytes(&bytes))
}

#[test]
fn every_shared_type_round_trips_to_the_same_memory() {
    let buf = ShmBuffer::new(100).unwrap();
    let buf2 = round_trip(&buf).unwrap();
    assert_eq!(buf2.len(), 100);
    assert_ne!(buf2.as_ptr(), buf.as_ptr(), "mapped again");
    buf2.write_at(99, b"!").unwrap();
    let mut got = [0u8];
    buf.read_at(99, &mut got).unwrap();
    assert_eq!(&got, b"!");

    let raw = RawArray::<f64>::from_slice(&[1.0, 2.0, 3.0]).unwrap();
    let raw2 = round_trip(&raw).unwrap();
    raw2.store(1, 20.0).unwrap();
    assert_eq!(raw.to_vec(), [1.0, 20.0, 3.0]);

    let array = Array::<u32>::zeros(3).unwrap();
    let array2 = round_trip(&array).unwrap();
    array2.lock().unwrap()[2] = 7;
    assert_eq!(array.to_vec().unwrap(), [0, 0, 7]);
    {
        let _g = array.lock().unwrap();
        assert!(array2.get_lock().locked(), "the same lock");
    }

    let value = Value::new(41_i64).unwrap();
    let value2 = round_trip(&value).unwrap();
    *value2.lock().unwrap() += 1;
    assert_eq!(value.get().unwrap(), 42);
    value2
        .atomic()
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(value.get().unwrap(), 43);

    let frozen = FrozenArray::from_slice(&[5u16; 10]).unwrap();
    let frozen2 = round_trip(&frozen).unwrap();
    assert_eq!(&frozen2[..], &frozen[..]);

    let lock = ProcessLock::new().unwrap();
    let lock2 = round_trip(&lock).unwrap();
    lock.acquire().unwrap();
    assert!(lock2.locked());
    lock2.release().unwrap();
    assert!(!lock.locked());

    let rlock = ProcessRLock::new().unwrap();
    let rlock2 = round_trip(&rlock).unwrap();
    rlock.acquire().unwrap();
    assert!(
        rlock2.is_owned(),
        "same thread, same process: the same owner"
    );
    rlock2.release().unwrap();
    assert!(!rlock.locked());

    let event = ProcessEvent::new().unwrap();
    round_trip(&event).unwrap().set().unwrap();
    assert!(event.is_set());

    let sem = ProcessSemaphore::bounded(1).unwrap();
    let sem2 = round_trip(&sem).unwrap();
    assert!(sem2.is_bounded());
    sem.acquire().unwrap();
    assert_eq!(sem2.value(), 0);

    let cond = ProcessCondition::with_capacity(3).unwrap();
    let cond2 = round_trip(&cond).unwrap();
    assert_eq!(cond2.capacity(), 3);
    cond.acquire().unwrap();
    assert!(cond2.locked());
    cond.release().unwrap();

    let barrier = ProcessBarrier::new(1).unwrap();
    let barrier2 = round_trip(&barrier).unwrap();
    assert_eq!(barrier2.parties(), 1);
    assert_eq!(barrier2.wait().unwrap(), 0);
}

#[test]
fn outside_a_transport_serializing_and_deserializing_are_errors() {
    let raw = RawArray::<u8>::zeros(4).unwrap();
    assert!(postcard::to_stdvec(&raw).is_err(), "no descriptor table");
    let (bytes, _fds) = collect_fds(|| postcard::to_stdvec(&raw));
    let bytes = bytes.unwrap();
    assert!(
        postcard::from_bytes::<RawArray<u8>>(&bytes).is_err(),
        "no table to take the descriptor from"
    );
    assert!(postcard::to_stdvec(&ProcessLock::new().unwrap()).is_err());
}

/// The wire form of a `ShmBuffer`, hand-made to lie about it.
#[derive(Serialize)]
struct FakeBuffer<'a> {
    #[serde(with = "multiproc_core::handoff::fd")]
    fd: BorrowedFd<'a>,
    len: u64,
}

/// The wire form of a `RawArray`'s element type.
type FakeElem = (u64, u64, &'static str);

fn elem_of<T>() -> FakeElem {
    (
        std::mem::size_of::<T>() as u64,
        std::mem::align_of::<T>() as u64,
        std::any::type_name::<T>(),
    )
}

#[test]
fn a_wrong_size_or_a_wrong_descriptor_is_an_error_never_a_mapping() {
    let small = ShmBuffer::new(16).unwrap();
    // A length beyond the file (which could only SIGBUS if mapped).
    let lie = FakeBuffer {
        fd: small.as_fd(),
        len: 1 << 20,
    };
    assert!(reinterpret::<_, ShmBuffer>(&lie).is_err());
    let zero = FakeBuffer {
        fd: small.as_fd(),
        len: 0,
    };
    assert!(reinterpret::<_, ShmBuffer>(&zero).is_err());
    // An honest buffer whose array claims more elements than fit.
    let honest = FakeBuffer {
        fd: small.as_fd(),
        len: 16,
    };
    let too_many = (&honest, 3_u64, elem_of::<u64>());
    assert!(reinterpret::<_, RawArray<u64>>(&too_many).is_err());
    let fits = (&honest, 2_u64, elem_of::<u64>());
    assert_eq!(
        reinterpret::<_, RawArray<u64>>(&fits).unwrap().to_vec(),
        [0, 0]
    );
    // A descriptor that is not a memfd at all.
    let (pipe_r, _pipe_w) = nix::unistd::pipe().unwrap();
    let pipe = FakeBuffer {
        fd: pipe_r.as_fd(),
        len: 1,
    };
    assert!(reinterpret::<_, ShmBuffer>(&pipe).is_err());
    // A memfd that can shrink under a mapping.
    let unsealed: OwnedFd =
        nix::sys::memfd::memfd_create(c"unsealed", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
            .unwrap();
    nix::unistd::ftruncate(&unsealed, 4096).unwrap();
    let shrinkable = FakeBuffer {
        fd: unsealed.as_fd(),
        len: 8,
    };
    assert!(reinterpret::<_, ShmBuffer>(&shrinkable).is_err());
}

#[test]
fn mismatched_types_and_kinds_are_errors() {
    let raw = RawArray::<u32>::zeros(4).unwrap();
    assert!(
        reinterpret::<_, RawArray<u64>>(&raw).is_err(),
        "element size"
    );
    assert!(
        reinterpret::<_, RawArray<f32>>(&raw).is_err(),
        "element type"
    );
    assert!(reinterpret::<_, RawArray<u32>>(&raw).is_ok());
    // Not frozen: cannot be received as immutable memory.
    assert!(reinterpret::<_, FrozenArray<u32>>(&raw).is_err());
    // Frozen: cannot be received as writable memory.
    let frozen = FrozenArray::from_slice(&[1u32, 2]).unwrap();
    assert!(reinterpret::<_, RawArray<u32>>(&frozen).is_err());
    assert!(reinterpret::<_, FrozenArray<u64>>(&frozen).is_err());
    // A lock is not an event (nor an RLock).
    let lock = ProcessLock::new().unwrap();
    assert!(reinterpret::<_, ProcessEvent>(&lock).is_err());
    assert!(reinterpret::<_, ProcessRLock>(&lock).is_err());
    assert!(reinterpret::<_, ProcessLock>(&lock).is_ok());
    let barrier = ProcessBarrier::new(2).unwrap();
    assert!(reinterpret::<_, ProcessCondition>(&barrier).is_err());
    // A Value is one element.
    let two = Array::<u8>::zeros(2).unwrap();
    assert!(reinterpret::<_, Value<u8>>(&two).is_err());
    assert!(reinterpret::<_, Array<u8>>(&two).is_ok());
}

/// Encodes `value` as JSON inside `collect_fds` and decodes it as a `U`, returning the error
/// message: JSON keeps it, so the argument the error names can be checked.
fn json_error<T: Serialize, U: DeserializeOwned + std::fmt::Debug>(value: &T) -> String {
    let (text, fds) = collect_fds(|| serde_json::to_string(value));
    let text = text.unwrap();
    provide_fds(fds, || serde_json::from_str::<U>(&text))
        .expect_err("the message must be refused")
        .to_string()
}

#[test]
fn the_errors_name_the_argument() {
    let raw = RawArray::<u32>::zeros(4).unwrap();
    let e = json_error::<_, RawArray<u64>>(&raw);
    assert!(e.contains("invalid argument `T`"), "{e}");
    assert!(e.contains("u32") && e.contains("u64"), "{e}");
    let e = json_error::<_, FrozenArray<u32>>(&raw);
    assert!(
        e.contains("invalid argument `fd`") && e.contains("not sealed"),
        "{e}"
    );
    let frozen = FrozenArray::from_slice(&[1u8]).unwrap();
    let frozen_as_buffer = FakeBuffer {
        fd: frozen.fd(),
        len: 1,
    };
    let e = json_error::<_, ShmBuffer>(&frozen_as_buffer);
    assert!(
        e.contains("invalid argument `fd`") && e.contains("FrozenArray"),
        "{e}"
    );
    let small = ShmBuffer::new(16).unwrap();
    let lie = FakeBuffer {
        fd: small.as_fd(),
        len: 1 << 20,
    };
    let e = json_error::<_, ShmBuffer>(&lie);
    assert!(
        e.contains("invalid argument `fd`") && e.contains("fewer than"),
        "{e}"
    );
    let too_many = (
        FakeBuffer {
            fd: small.as_fd(),
            len: 16,
        },
        3_u64,
        elem_of::<u64>(),
    );
    let e = json_error::<_, RawArray<u64>>(&too_many);
    assert!(e.contains("invalid argument `len`"), "{e}");
    let e = json_error::<_, ProcessEvent>(&ProcessLock::new().unwrap());
    assert!(
        e.contains("invalid argument `buffer`") && e.contains("Event"),
        "{e}"
    );
    let e = json_error::<_, Value<u8>>(&Array::<u8>::zeros(2).unwrap());
    assert!(e.contains("invalid argument `cell`"), "{e}");
}

#[test]
fn a_forked_child_that_receives_the_handles_shares_them_with_the_parent() {
    let (parent_end, child_end) = transport::pair();
    type Bundle = (
        RawArray<u64>,
        Array<u32>,
        Value<i64>,
        FrozenArray<f64>,
        ProcessLock,
        ProcessRLock,
        ProcessEvent,
        ProcessSemaphore,
        ProcessCondition,
        ProcessBarrier,
    );
    let child = Process::from_closure(move || {
        let (raw, array, value, frozen, lock, rlock, event, sem, cond, barrier): Bundle =
            transport::recv(&child_end).expect("a decodable bundle");
        raw.write_range(0, &[1, 2, 3]).unwrap();
        array.lock().unwrap().fill(9);
        *value.lock().unwrap() += frozen.iter().sum::<f64>() as i64;
        // The parent holds both locks: they are the same locks here.
        assert!(!lock.try_acquire().unwrap());
        assert!(rlock.locked() && !rlock.is_owned());
        cond.acquire().unwrap();
        cond.notify(1).unwrap();
        cond.release().unwrap();
        sem.release(1).unwrap();
        event.set().unwrap();
        assert!(barrier.wait_timeout(Duration::from_secs(20)).is_ok());
    })
    .start()
    .unwrap();
    // Made after the fork: the child can reach them only through the socket.
    let raw = RawArray::<u64>::zeros(4).unwrap();
    let array = Array::<u32>::zeros(2).unwrap();
    let value = Value::new(100_i64).unwrap();
    let mut data = LocalArray::<f64>::zeros(4).unwrap();
    data.copy_from_slice(&[0.5, 1.5, 2.5, 3.5]);
    let frozen = data.freeze().unwrap();
    let lock = ProcessLock::new().unwrap();
    let rlock = ProcessRLock::new().unwrap();
    let event = ProcessEvent::new().unwrap();
    let sem = ProcessSemaphore::new(0).unwrap();
    let cond = ProcessCondition::new().unwrap();
    let barrier = ProcessBarrier::new(2).unwrap();
    lock.acquire().unwrap();
    rlock.acquire().unwrap();
    cond.acquire().unwrap();
    transport::send(
        &parent_end,
        &(
            &raw, &array, &value, &frozen, &lock, &rlock, &event, &sem, &cond, &barrier,
        ),
    );
    // Notified by the child (its notify needs the lock, released by our wait).
    assert!(cond.wait_timeout(Duration::from_secs(20)).unwrap());
    cond.release().unwrap();
    assert!(event.wait_timeout(Duration::from_secs(20)).unwrap());
    assert!(sem.acquire_timeout(Duration::from_secs(20)).unwrap());
    assert!(barrier.wait_timeout(Duration::from_secs(20)).is_ok());
    child.join().unwrap();
    child.check().unwrap();
    lock.release().unwrap();
    rlock.release().unwrap();
    assert_eq!(raw.to_vec(), [1, 2, 3, 0]);
    assert_eq!(array.to_vec().unwrap(), [9, 9]);
    assert_eq!(value.get().unwrap(), 108);
}

/// A pool task that gets its output array as an argument (through the pool's wire).
fn fill_slab((out, start, len): (RawArray<u64>, usize, usize)) -> usize {
    let values: Vec<u64> = (start..start + len).map(|i| i as u64 * 3).collect();
    out.write_range(start, &values).expect("in bounds");
    len
}

#[test]
fn a_fork_pool_task_receives_a_shared_array_as_its_argument() {
    use multiproc_core::Executor;
    let pool = multiproc_fork::ForkPool::new(2).unwrap();
    // Made after the workers: they can reach it only through the arguments.
    let out = RawArray::<u64>::zeros(4000).unwrap();
    let args: Vec<(RawArray<u64>, usize, usize)> = (0..4)
        .map(|k| (out.try_clone().unwrap(), k * 1000, 1000))
        .collect();
    let done = pool.map(fill_slab, args).unwrap();
    assert_eq!(done, [1000; 4]);
    drop(pool);
    let expected: Vec<u64> = (0..4000).map(|i| i * 3).collect();
    assert_eq!(out.to_vec(), expected);
}
