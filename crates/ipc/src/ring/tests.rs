//! The ring's unit tests: its words, records, corruption checks and races with `close`.

use super::*;

#[test]
fn words_pack_position_count_and_the_closed_bit() {
    let w = advance(0, 16);
    assert_eq!((pos(w), count(w), closed(w)), (16, 1, false));
    let w = advance(w | CLOSED, 8);
    assert_eq!((pos(w), count(w), closed(w)), (24, 2, true));
    // Positions wrap at 2^40 and counts at 2^24 without disturbing each other.
    let near = POS_MASK | COUNT_MASK << POS_BITS;
    let w = advance(near, 16);
    assert_eq!((pos(w), count(w)), (8, 0));
    assert_eq!(used_bytes(w, near), 16);
    assert_eq!(items(w, near), 1);
}

/// A put whose commit finds the queue closed since its checks fails as closed, and its
/// record stays out of the ring: a consumer that had already seen "closed and empty"
/// has gone, and the item would be lost while the put reported it sent.
#[test]
fn a_put_overtaken_by_a_close_before_its_commit_fails_as_closed() {
    let ring = Ring::new(0, 64, false).unwrap();
    BEFORE_COMMIT.set(Some(|ring: &Ring| ring.close()));
    let put = ring.put(b"x", None);
    BEFORE_COMMIT.set(None);
    assert!(
        matches!(put, Err(OpError::Stop(Stop::Closed))),
        "the put succeeded"
    );
    assert_eq!(ring.len(), 0, "its record is in the ring");
    let mut out = Vec::new();
    assert!(matches!(
        ring.get(&mut out, Some(Instant::now())),
        Err(OpError::Stop(Stop::Closed))
    ));
}

#[test]
fn records_round_trip_across_the_wrap() {
    let ring = Ring::new(0, 64, false).unwrap();
    let mut out = Vec::new();
    for round in 0..20u8 {
        let item: Vec<u8> = (0..(round as usize % 23))
            .map(|i| i as u8 ^ round)
            .collect();
        ring.put(&item, None).ok().unwrap();
        ring.get(&mut out, None).ok().unwrap();
        assert_eq!(out, item, "round {round}");
    }
    assert_eq!(ring.len(), 0);
}

#[test]
fn a_corrupt_header_is_an_error() {
    let ring = Ring::new(0, 64, false).unwrap();
    ring.put(b"abc", None).ok().unwrap();
    ring.data()[0].store(5, Relaxed); // len 5 without its check half
    let mut out = Vec::new();
    match ring.get(&mut out, Some(Instant::now())) {
        Err(OpError::Fail(Error::Serialization(m))) => assert!(m.contains("corrupt")),
        _ => panic!("corruption not detected"),
    }
}

#[test]
fn positions_further_apart_than_the_ring_are_corruption() {
    let corrupt = |r: Result<(), OpError>| match r {
        Err(OpError::Fail(Error::Serialization(m))) => m.contains("corrupt"),
        _ => false,
    };
    // A consumer's position far behind the producer's: no room to compute, no record to
    // trust (a header claiming 1 MiB would be read round and round the 64-byte ring).
    let ring = Ring::new(0, 64, false).unwrap();
    ring.word(W_HEAD).store(1 << 39, Relaxed);
    assert!(corrupt(ring.put(b"x", Some(Instant::now()))), "put");
    let ring = Ring::new(0, 64, false).unwrap();
    ring.word(W_TAIL).store(1 << 30, Relaxed);
    ring.data()[0].store(
        u64::from(1u32 << 20) | u64::from(!(1u32 << 20)) << 32,
        Relaxed,
    );
    let mut out = Vec::new();
    assert!(corrupt(ring.get(&mut out, Some(Instant::now()))), "get");
    assert!(
        out.len() < 64,
        "{} bytes read out of a 64-byte ring",
        out.len()
    );
}

#[test]
fn attaching_checks_the_header() {
    let locks = || (ProcessLock::new().unwrap(), ProcessLock::new().unwrap());
    let (p, g) = locks();
    let junk = ShmBuffer::new(HEADER + 64).unwrap();
    junk.write_at(0, b"not a queue").unwrap();
    assert!(matches!(
        Ring::attach(junk, p, g, false),
        Err(Error::InvalidArgument { name: "queue", .. })
    ));
    // A header that claims a ring larger than the memory.
    let ring = Ring::new(0, 64, false).unwrap();
    ring.word(W_CAPACITY).store(1 << 20, Relaxed);
    let (p, g) = locks();
    let (buf, _, _) = ring.parts();
    let copy = {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        multiproc_shared_array::send_buffer(&a, buf).unwrap();
        multiproc_shared_array::recv_buffer(&b).unwrap()
    };
    assert!(Ring::attach(copy, p, g, false).is_err());
    // A joinable ring is not a plain one.
    let ring = Ring::new(0, 64, true).unwrap();
    let (p, g) = locks();
    let copy = {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        multiproc_shared_array::send_buffer(&a, ring.parts().0).unwrap();
        multiproc_shared_array::recv_buffer(&b).unwrap()
    };
    assert!(Ring::attach(copy, p, g, false).is_err());
}

#[test]
fn bad_sizes_name_their_argument() {
    for (maxsize, bytes, name) in [
        (MAX_ITEMS + 1, 1024, "maxsize"),
        (usize::MAX, 1024, "maxsize"),
        (0, 0, "ring_bytes"),
        (0, 63, "ring_bytes"),
        (0, MAX_RING_BYTES + 1, "ring_bytes"),
        (0, usize::MAX, "ring_bytes"),
    ] {
        match Ring::new(maxsize, bytes, false) {
            Err(Error::InvalidArgument { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{maxsize} {bytes}: {other:?}"),
        }
    }
    assert_eq!(Ring::new(0, 100, false).unwrap().capacity(), 128);
}
