use std::sync::atomic::Ordering::Relaxed;

use multiproc_core::{Error, Lock, LockError};

use super::locked::Array;
use super::raw::RawArray;
use super::value::Value;
use crate::sync::ProcessRLock;

#[test]
fn constructors_and_atomic_ranges() {
    let a = RawArray::<u16>::from_slice(&[1, 2, 3]).unwrap();
    assert_eq!(a.to_vec(), [1, 2, 3]);
    a.write_range(1, &[20, 30]).unwrap();
    assert_eq!(a.to_vec(), vec![1, 20, 30]);
    assert_eq!(a.load(2).unwrap(), 30);
    assert!(matches!(
        a.load(3),
        Err(Error::InvalidArgument { name: "index", .. })
    ));
    assert!(matches!(
        a.store(3, 7),
        Err(Error::InvalidArgument { name: "index", .. })
    ));
    assert!(matches!(
        a.load(usize::MAX),
        Err(Error::InvalidArgument { name: "index", .. })
    ));
    assert_eq!(
        a.to_vec(),
        vec![1, 20, 30],
        "a refused store writes nothing"
    );
    assert!(matches!(
        a.write_range(2, &[1, 2]),
        Err(Error::InvalidArgument { name: "start", .. })
    ));
    let z = RawArray::<[u8; 3]>::zeros(5).unwrap();
    z.store(4, [1, 2, 3]).unwrap();
    assert_eq!(z.load(4).unwrap(), [1, 2, 3]);
    assert_eq!(z.to_vec()[..4], [[0; 3]; 4]);
    let it = RawArray::from_iter((0..10u64).map(|x| x * x)).unwrap();
    assert_eq!(it.load(9).unwrap(), 81);
}

#[test]
fn atomic_copies_work_for_every_unit() {
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Zeroable, bytemuck::Pod)]
    #[repr(C, align(16))]
    struct Wide([u64; 4]);
    let w = RawArray::from_slice(&[Wide([1, 2, 3, 4]), Wide([5, 6, 7, 8])]).unwrap();
    assert_eq!(w.load(1).unwrap(), Wide([5, 6, 7, 8]));
    let h = RawArray::<u16>::from_iter(0..1000).unwrap();
    let mut out = [0u16; 3];
    h.read_range(997, &mut out).unwrap();
    assert_eq!(out, [997, 998, 999]);
    let f = RawArray::<f32>::zeros(10_000).unwrap();
    f.fill(2.5);
    assert!(f.to_vec().iter().all(|&x| x == 2.5));
    let b = RawArray::<i8>::zeros(3).unwrap();
    b.fill(-1);
    assert_eq!(b.to_vec(), [-1, -1, -1]);
    assert!(matches!(
        h.read_range(usize::MAX, &mut out),
        Err(Error::InvalidArgument { name: "start", .. })
    ));
}

#[test]
fn from_buffer_is_safe_and_checks_the_length() {
    let a = RawArray::<u32>::from_slice(&[1, 2, 3]).unwrap();
    let b = RawArray::<u32>::from_buffer(a.into_buffer(), 3).unwrap();
    assert_eq!(b.to_vec(), [1, 2, 3]);
    let buf = b.into_buffer();
    // Same width (4-byte units): fine.
    let floats = RawArray::<f32>::from_buffer(buf, 3).unwrap();
    assert_eq!(floats.load(1).unwrap().to_bits(), 2);
    // Another width: refused, naming the buffer.
    let again = floats.buffer().try_clone().unwrap();
    assert!(matches!(
        RawArray::<u8>::from_buffer(again, 12),
        Err(Error::InvalidArgument { name: "buf", .. })
    ));
    assert!(matches!(
        RawArray::<u64>::from_buffer(floats.into_buffer(), 2),
        Err(Error::InvalidArgument { name: "len", .. })
    ));
}

#[test]
fn escape_hatch_checks_the_range() {
    let a = RawArray::<f32>::zeros(4).unwrap();
    // SAFETY: no other reference to the array exists in this single-threaded test.
    let s = unsafe { a.slice_mut_unchecked(1..3) }.unwrap();
    s.fill(2.0);
    assert_eq!(a.to_vec(), vec![0.0, 2.0, 2.0, 0.0]);
    // SAFETY: the call fails before making a reference.
    let bad = unsafe { a.slice_mut_unchecked(3..5) };
    assert!(matches!(
        bad,
        Err(Error::InvalidArgument { name: "range", .. })
    ));
    // SAFETY: nothing writes the array while `r` lives.
    let r = unsafe { a.slice_unchecked(0..4) }.unwrap();
    assert_eq!(r, [0.0, 2.0, 2.0, 0.0]);
    let (start, end) = (3, 1);
    // SAFETY: the call fails before making a reference.
    let reversed = unsafe { a.slice_unchecked(start..end) };
    assert!(matches!(
        reversed,
        Err(Error::InvalidArgument { name: "range", .. })
    ));
}

#[test]
fn a_guard_lends_a_copy_and_writes_it_back_only_if_changed() {
    let a = Array::<u32>::from_slice(&[1, 2, 3]).unwrap();
    {
        let g = a.lock().unwrap();
        assert_eq!(*g, [1, 2, 3]);
        // Someone who ignores the lock (atomically) meanwhile: a clean guard does not undo it.
        a.get_obj().store(0, 10).unwrap();
        assert_eq!(g[0], 1, "the guard reads its own copy");
    }
    assert_eq!(a.to_vec().unwrap(), [10, 2, 3]);
    {
        let mut g = a.lock().unwrap();
        g[2] = 30;
        assert_eq!(a.get_obj().load(2).unwrap(), 3, "written back only on drop");
    }
    assert_eq!(a.to_vec().unwrap(), [10, 2, 30]);
    let (data, lock) = a.into_parts();
    let b = Array::from_parts(data, lock);
    assert_eq!(b.get(2).unwrap(), 30);
}

#[test]
fn array_guards_do_not_alias() {
    let a = Array::<u8>::zeros(3).unwrap();
    let mut g = a.lock().unwrap();
    g[0] = 1;
    assert!(matches!(
        a.lock(),
        Err(LockError::Other(Error::InvalidArgument {
            name: "self",
            ..
        }))
    ));
    assert!(matches!(a.get(0), Err(Error::InvalidArgument { .. })));
    // The lock is re-entrant for plain holds, but cannot be released under the guard.
    a.get_lock().acquire().unwrap();
    a.get_lock().release().unwrap();
    assert!(matches!(a.get_lock().release(), Err(Error::NotHeld(_))));
    drop(g);
    assert!(!a.get_lock().locked());
    assert_eq!(a.to_vec().unwrap(), vec![1, 0, 0]);
    a.set(2, 9).unwrap();
    assert_eq!(a.get(2).unwrap(), 9);
    assert!(matches!(
        a.set(3, 9),
        Err(Error::InvalidArgument { name: "index", .. })
    ));
}

#[test]
fn value_guards_do_not_alias() {
    let v = Value::new(5u32).unwrap();
    let mut g = v.lock().unwrap();
    *g += 1;
    // Under the guard, another copy of the value would not see its change: refused.
    assert!(matches!(
        v.lock(),
        Err(LockError::Other(Error::InvalidArgument {
            name: "self",
            ..
        }))
    ));
    assert!(matches!(
        v.get(),
        Err(Error::InvalidArgument { name: "self", .. })
    ));
    assert!(matches!(
        v.set(9),
        Err(Error::InvalidArgument { name: "self", .. })
    ));
    // The lock is re-entrant for plain holds, but cannot be released under the guard.
    v.get_lock().acquire().unwrap();
    v.get_lock().release().unwrap();
    assert!(matches!(v.get_lock().release(), Err(Error::NotHeld(_))));
    drop(g);
    assert!(!v.get_lock().locked());
    assert_eq!(v.get().unwrap(), 6);
    v.set(7).unwrap();
    assert_eq!(*v.lock().unwrap(), 7);
}

#[test]
fn values_copy_in_and_out() {
    let v = Value::new(1.5f64).unwrap();
    *v.lock().unwrap() *= 2.0;
    assert_eq!(v.get().unwrap(), 3.0);
    let n = Value::<i32>::zeroed().unwrap();
    n.atomic().fetch_sub(5, Relaxed);
    assert_eq!(n.get().unwrap(), -5);
    assert!(matches!(
        Value::new(()),
        Err(Error::InvalidArgument { name: "T", .. })
    ));
    let (cell, lock) = n.into_parts();
    let again = Value::from_parts(cell, lock).unwrap();
    assert_eq!(again.get().unwrap(), -5);
    let two = RawArray::<i32>::zeros(2).unwrap();
    assert!(matches!(
        Value::from_parts(two, ProcessRLock::new().unwrap()),
        Err(Error::InvalidArgument { name: "cell", .. })
    ));
}
