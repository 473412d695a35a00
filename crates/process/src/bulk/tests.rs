//! The bulk buffers' own tests: growth, hugetlb, seals, lengths.

use super::*;

#[test]
fn hugetlb_buffers_grow_and_their_views_unmap() {
    let Ok(pool) = multiproc_sys::pages::TempSetting::hugetlb_pages(8) else {
        eprintln!("skipped: cannot reserve hugetlb pages here");
        return;
    };
    let free = || pages::policy().hugetlb_available;
    let before = free();
    let mut b = BulkBuf::with_capacity(pages::HUGE_MIN + 1).unwrap();
    assert_eq!(b.pages, PageKind::HugeTlb);
    let body: Vec<u8> = (0..pages::HUGE_MIN + 3).map(|i| i as u8).collect();
    b.extend_from_slice(&body).unwrap();
    let fd = b.fd().try_clone_to_owned().unwrap();
    // SAFETY: `b` is not written while the view lives.
    let view = unsafe { BulkView::map(fd, b.len()) }.unwrap();
    assert_eq!(view.as_slice(), &body[..]);
    drop(view);
    // Past what the pool has left: a new buffer in other pages, the bytes kept.
    b.extend_from_slice(&body).unwrap();
    b.extend_from_slice(&body).unwrap();
    assert_eq!(&b.as_slice()[2 * body.len()..], &body[..]);
    drop(b);
    // Every mapping of the hugetlb file was unmapped (else its pages stay reserved).
    assert_eq!(free(), before);
    drop(pool);
}

#[test]
fn a_buffer_grows_and_its_receiver_sees_the_bytes() {
    let mut b = BulkBuf::with_capacity(10).unwrap();
    assert_eq!(b.capacity(), PAGE);
    let chunk: Vec<u8> = (0..=255).collect();
    for _ in 0..100 {
        b.extend_from_slice(&chunk).unwrap();
    }
    assert_eq!(b.len(), 25_600);
    assert!(b.capacity() >= 25_600);
    let fd = b.fd().try_clone_to_owned().unwrap();
    // SAFETY: `b` is not written while the view lives.
    let view = unsafe { BulkView::map(fd, b.len()) }.unwrap();
    assert_eq!(view.as_slice(), b.as_slice());
    assert_eq!(&view.as_slice()[256..512], &chunk[..]);
    drop(view);
    b.clear();
    b.extend_from_slice(b"again").unwrap();
    assert_eq!(b.as_slice(), b"again");
    // A block large enough to be copied on several threads, after an odd prefix (so its
    // parts start off page boundaries), lands whole and in order.
    let large: Vec<u8> = (0..(2 * multiproc_sys::memory::PART + 12_345))
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    b.extend_from_slice(&large).unwrap();
    assert_eq!(&b.as_slice()[..5], b"again");
    assert!(b.as_slice()[5..] == large[..]);
}

#[test]
fn nobody_but_the_buffer_can_write_or_shrink_it() {
    use std::os::unix::fs::FileExt;
    let mut b = BulkBuf::with_capacity(PAGE).unwrap();
    b.extend_from_slice(&[1; 100]).unwrap();
    let file = std::fs::File::from(b.fd().try_clone_to_owned().unwrap());
    assert!(
        file.write_at(&[9], 0).is_err(),
        "written through the descriptor"
    );
    assert!(file.set_len(0).is_err(), "shrunk");
    // SAFETY: a fresh mapping request; it must fail, mapping nothing.
    let writable = unsafe {
        mmap(
            None,
            NonZeroUsize::new(PAGE).unwrap(),
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            &file,
            0,
        )
    };
    assert!(writable.is_err(), "mapped writable by someone else");
    assert_eq!(b.as_slice(), &[1; 100]);
    // Growing still works, for the buffer itself.
    b.extend_from_slice(&[2; 3 * PAGE]).unwrap();
    assert_eq!(b.as_slice().len(), 100 + 3 * PAGE);
    // An unsealed file is refused by a receiver.
    let plain =
        nix::sys::memfd::memfd_create(c"plain", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
            .unwrap();
    nix::unistd::ftruncate(&plain, PAGE as libc::off_t).unwrap();
    // SAFETY: refused before mapping.
    assert!(unsafe { BulkView::map(plain, 10) }.is_err());
}

#[test]
fn a_body_longer_than_its_file_is_refused() {
    let mut b = BulkBuf::with_capacity(PAGE).unwrap();
    b.extend_from_slice(b"short").unwrap();
    let fd = b.fd().try_clone_to_owned().unwrap();
    // SAFETY: `b` is not written while the view would live.
    let err = unsafe { BulkView::map(fd, 10 * PAGE) }.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    // SAFETY: as above.
    let empty = unsafe { BulkView::map(b.fd().try_clone_to_owned().unwrap(), 0) }.unwrap();
    assert!(empty.as_slice().is_empty());
}
