//! Bad sizes and shapes are clear errors that name the argument, never panics.

use multiproc_core::Error;
use multiproc_shared_array::{
    Array, FrozenArray, LocalArray, ProcessBarrier, RawArray, ShmBuffer, Value,
};

fn name_of<T: std::fmt::Debug>(r: Result<T, Error>) -> &'static str {
    match r {
        Err(Error::InvalidArgument { name, reason }) => {
            assert!(!reason.is_empty());
            name
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn zero_lengths_are_refused() {
    assert_eq!(name_of(ShmBuffer::new(0)), "len");
    assert_eq!(name_of(RawArray::<f64>::zeros(0)), "len");
    assert_eq!(name_of(RawArray::<f64>::from_slice(&[])), "values");
    assert_eq!(
        name_of(RawArray::<f64>::from_iter(std::iter::empty())),
        "iter"
    );
    assert_eq!(name_of(Array::<u8>::zeros(0)), "len");
    assert_eq!(name_of(LocalArray::<u8>::zeros(0)), "len");
    assert_eq!(name_of(LocalArray::<u8>::from_slice(&[])), "values");
    assert_eq!(name_of(FrozenArray::<u8>::from_slice(&[])), "values");
    assert_eq!(
        name_of(FrozenArray::<u8>::from_iter(std::iter::empty())),
        "iter"
    );
    assert_eq!(name_of(ProcessBarrier::new(0)), "parties");
}

#[test]
fn element_count_times_size_overflow_is_refused() {
    let e = RawArray::<u64>::zeros(usize::MAX / 4);
    match &e {
        Err(Error::InvalidArgument {
            name: "len",
            reason,
        }) => {
            assert!(reason.contains("overflow"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(name_of(RawArray::<[u8; 3]>::zeros(usize::MAX / 2)), "len");
    assert_eq!(name_of(Value::new(())), "T");
    assert_eq!(name_of(RawArray::<()>::zeros(4)), "T");
}

#[test]
fn negative_and_absurd_sizes_are_refused() {
    // A negative size that reached a usize (as from a C API or a careless cast).
    let negative = -1_isize as usize;
    assert_eq!(name_of(ShmBuffer::new(negative)), "len");
    assert_eq!(name_of(RawArray::<u8>::zeros(negative)), "len");
    assert_eq!(name_of(LocalArray::<u8>::zeros(negative)), "len");
    assert_eq!(name_of(LocalArray::<u8>::from_slice(&[0; 0])), "values");
    // Fits the arithmetic, but no address space can hold it.
    assert_eq!(name_of(RawArray::<u8>::zeros(1 << 60)), "len");
    assert_eq!(name_of(ShmBuffer::new(isize::MAX as usize)), "len");
}

#[cfg(feature = "ndarray")]
#[test]
fn view_shapes_must_match_the_length() {
    let mut a = LocalArray::<f32>::zeros(24).unwrap();
    assert_eq!(name_of(a.view((5, 5))), "shape");
    assert_eq!(name_of(a.view_mut((2, 3, 5))), "shape");
    assert_eq!(name_of(a.view(ndarray::IxDyn(&[2, 3, 4, 2]))), "shape");
    assert_eq!(name_of(a.view((usize::MAX, 2))), "shape");
    assert_eq!(name_of(a.view(0)), "shape");
    assert_eq!(a.view((2, 3, 4)).unwrap().shape(), &[2, 3, 4]);
    assert_eq!(a.view(ndarray::IxDyn(&[4, 3, 2, 1])).unwrap().ndim(), 4);
    assert_eq!(a.view_mut(24).unwrap().len(), 24);
    let raw = a.share();
    assert_eq!(name_of(raw.to_ndarray((5, 5))), "shape");
    assert!(matches!(
        raw.raw_view_mut((5, 5)),
        Err(Error::InvalidArgument { name: "shape", .. })
    ));
    assert_eq!(raw.raw_view_mut((6, 4)).unwrap().shape(), &[6, 4]);
    // SAFETY: the calls fail their shape check before making a reference.
    unsafe {
        assert_eq!(name_of(raw.view_unchecked((2, 2))), "shape");
        assert_eq!(name_of(raw.view_mut_unchecked((25, 1))), "shape");
    }
    let frozen = raw.freeze().unwrap();
    assert_eq!(name_of(frozen.view((4, 4))), "shape");
    assert_eq!(frozen.view((4, 6)).unwrap().len(), 24);
    let arr = Array::<f32>::zeros(6).unwrap();
    let mut g = arr.lock().unwrap();
    assert_eq!(name_of(g.view_mut((4, 2))), "shape");
    g.view_mut((2, 3)).unwrap()[[1, 2]] = 5.0;
    assert_eq!(g[5], 5.0);
}

#[test]
fn out_of_range_accesses_name_the_argument() {
    let a = RawArray::<u32>::zeros(4).unwrap();
    assert_eq!(name_of(a.load(4)), "index");
    assert_eq!(name_of(a.store(usize::MAX, 1)), "index");
    assert_eq!(name_of(a.read_range(3, &mut [0; 2])), "start");
    assert_eq!(name_of(a.write_range(usize::MAX, &[1])), "start");
    let (start, end) = (3, 2);
    // SAFETY: the call fails its range check before making any reference.
    let reversed = unsafe { a.slice_mut_unchecked(start..end) };
    assert_eq!(name_of(reversed), "range");
    // SAFETY: the call fails its range check before making any reference.
    let past_the_end = unsafe { a.slice_unchecked(2..5) };
    assert_eq!(name_of(past_the_end), "range");
    let buf = ShmBuffer::new(16).unwrap();
    assert_eq!(name_of(RawArray::<u64>::from_buffer(buf, 3)), "len");
    let buf = ShmBuffer::new(16).unwrap();
    assert_eq!(name_of(RawArray::<u64>::from_buffer(buf, 0)), "len");
    let arr = Array::<u8>::zeros(2).unwrap();
    assert_eq!(name_of(arr.get(2)), "index");
    assert_eq!(name_of(arr.set(usize::MAX, 0)), "index");
    let (data, lock) = arr.into_parts();
    assert_eq!(
        name_of(Array::<u8>::from_buffer(
            data.into_buffer(),
            2,
            ShmBuffer::new(128).unwrap()
        )),
        "buffer"
    );
    assert_eq!(
        name_of(Array::<u64>::from_buffer(
            ShmBuffer::new(8).unwrap(),
            2,
            lock.buffer().try_clone().unwrap()
        )),
        "len"
    );
}
