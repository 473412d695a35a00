use super::*;

#[test]
fn round_trips_and_rejects_ragged_bytes() {
    let v = Packed::new(vec![1.5f64, -2.0, f64::MAX]);
    let bytes = postcard::to_stdvec(&v).unwrap();
    assert_eq!(bytes.len(), 1 + 24, "a length and the raw bytes");
    assert_eq!(postcard::from_bytes::<Packed<f64>>(&bytes).unwrap(), v);
    let ragged = postcard::to_stdvec(&Packed::new(vec![1u8; 7])).unwrap();
    assert!(postcard::from_bytes::<Packed<f64>>(&ragged).is_err());
    let units = postcard::to_stdvec(&Packed::new(vec![(); 5])).unwrap();
    assert_eq!(postcard::from_bytes::<Packed<()>>(&units).unwrap().len(), 5);
    let empty = postcard::to_stdvec(&Packed::<u32>::new(vec![])).unwrap();
    assert!(postcard::from_bytes::<Packed<u32>>(&empty)
        .unwrap()
        .is_empty());
}

/// `values` encoded by postcard (a varint length, then the bytes) inside 8-aligned memory,
/// the values' bytes starting at byte `at` of it (`at` past the length's varint).
fn encoded_at(values: &[u64], at: usize) -> (Vec<u64>, std::ops::Range<usize>) {
    let bytes: &[u8] = bytemuck::cast_slice(values);
    let mut len = [0u8; 10];
    let len = postcard::to_slice(&bytes.len(), &mut len).unwrap().len();
    let mut memory = vec![0u64; (at + bytes.len()).div_ceil(8)];
    let raw: &mut [u8] = bytemuck::cast_slice_mut(&mut memory);
    raw[at - len..at].copy_from_slice(&postcard::to_stdvec(&bytes.len()).unwrap());
    raw[at..at + bytes.len()].copy_from_slice(bytes);
    (memory, at - len..at + bytes.len())
}

fn owner() -> LoanOwner {
    Arc::new(())
}

#[test]
fn a_large_aligned_block_inside_lent_memory_is_read_in_place() {
    let values: Vec<u64> = (0..(LEND_MIN as u64 / 8)).collect();
    let (memory, encoded) = encoded_at(&values, 16);
    let raw: &[u8] = bytemuck::cast_slice(&memory);
    let owner = owner();
    // SAFETY: `memory` is neither written nor dropped until every clone of `owner` is gone
    // (checked below before it is dropped).
    let p: Packed<u64> = unsafe {
        lend(raw, &owner, || {
            postcard::from_bytes(&raw[encoded.clone()]).unwrap()
        })
    };
    assert!(p.is_lent());
    assert_eq!(
        p.as_ptr() as usize,
        raw.as_ptr() as usize + 16,
        "not copied"
    );
    assert_eq!(&*p, &values[..]);
    assert_eq!(Arc::strong_count(&owner), 2, "the value keeps the memory");
    let shared = p.clone();
    assert!(shared.is_lent());
    assert_eq!(Arc::strong_count(&owner), 3, "a clone shares it");
    drop(shared);
    // A write copies first, and lets the memory go.
    let mut p = p;
    p[0] = 99;
    assert!(!p.is_lent());
    assert_eq!(Arc::strong_count(&owner), 1);
    assert_eq!(
        (p[0], p[1], raw[16]),
        (99, 1, 0),
        "the lent memory unchanged"
    );
    // `into_inner` copies lent values out.
    // SAFETY: as above.
    let p: Packed<u64> = unsafe {
        lend(raw, &owner, || {
            postcard::from_bytes(&raw[encoded.clone()]).unwrap()
        })
    };
    assert!(p.is_lent());
    assert_eq!(p.into_inner(), values);
    assert_eq!(Arc::strong_count(&owner), 1);
}

#[test]
fn blocks_that_cannot_be_read_in_place_are_copied() {
    let owner = owner();
    let large: Vec<u64> = (0..(LEND_MIN as u64 / 8)).collect();
    let decode = |raw: &[u8], range: std::ops::Range<usize>, lent: &[u8]| -> Packed<u64> {
        // SAFETY: nothing writes the memory while this test runs, and every clone of `owner`
        // is dropped before the memory (each value below is checked and dropped at once).
        unsafe { lend(lent, &owner, || postcard::from_bytes(&raw[range]).unwrap()) }
    };
    // Misaligned for u64.
    let (memory, encoded) = encoded_at(&large, 20);
    let raw: &[u8] = bytemuck::cast_slice(&memory);
    let p = decode(raw, encoded, raw);
    assert!(!p.is_lent(), "misaligned");
    assert_eq!(&*p, &large[..]);
    // Too small.
    let (memory, encoded) = encoded_at(&large[..LEND_MIN / 8 - 1], 16);
    let raw: &[u8] = bytemuck::cast_slice(&memory);
    assert!(!decode(raw, encoded, raw).is_lent(), "below LEND_MIN");
    // Outside the lent memory (only part of it lent).
    let (memory, encoded) = encoded_at(&large, 16);
    let raw: &[u8] = bytemuck::cast_slice(&memory);
    assert!(!decode(raw, encoded.clone(), &raw[..raw.len() - 1]).is_lent());
    // After `lend` returned, nothing is lent.
    let p: Packed<u64> = postcard::from_bytes(&raw[encoded]).unwrap();
    assert!(!p.is_lent());
    drop(p);
    assert_eq!(Arc::strong_count(&owner), 1);
}

#[test]
fn a_lend_inside_a_lend_gives_the_outer_one_back() {
    let values: Vec<u64> = (0..(LEND_MIN as u64 / 8)).collect();
    let (memory, encoded) = encoded_at(&values, 16);
    let raw: &[u8] = bytemuck::cast_slice(&memory);
    let (outer, inner) = (owner(), owner());
    let other = vec![0u8; 8];
    // SAFETY: nothing writes `memory` or `other`, and every value is dropped before them.
    let (a, b): (Packed<u64>, Packed<u64>) = unsafe {
        lend(raw, &outer, || {
            let a = lend(&other, &inner, || {
                postcard::from_bytes(&raw[encoded.clone()]).unwrap()
            });
            (a, postcard::from_bytes(&raw[encoded.clone()]).unwrap())
        })
    };
    assert!(!a.is_lent(), "the inner loan does not cover it");
    assert!(b.is_lent(), "the outer loan is back");
    assert_eq!(
        (Arc::strong_count(&outer), Arc::strong_count(&inner)),
        (2, 1)
    );
    // A panic inside gives the loan back too.
    let caught = std::panic::catch_unwind(|| {
        // SAFETY: as above.
        unsafe { lend(raw, &inner, || panic!("in the decode")) }
    });
    assert!(caught.is_err());
    let c: Packed<u64> = postcard::from_bytes(&raw[encoded]).unwrap();
    assert!(!c.is_lent());
}
