//! Frames over a socket pair: sizes, descriptors, bulk bodies, corruption, a closed peer.

use std::io::{Read, Write};
use std::os::fd::AsFd;

use super::*;

fn pair() -> (FrameWriter, FrameReader) {
    let (a, b) = UnixStream::pair().unwrap();
    (FrameWriter::new(a), FrameReader::new(b))
}

fn header(kind: Kind, id: u64) -> Header {
    Header {
        kind,
        id,
        call: 0xdead,
    }
}

#[test]
fn frames_round_trip_small_and_large() {
    let (mut w, mut r) = pair();
    let big: Vec<u8> = (0..3 * BUFFER + 17).map(|i| i as u8).collect();
    let t = std::thread::spawn(move || {
        w.send(header(Kind::Task, 7), b"payload", &[]).unwrap();
        w.send(header(Kind::Done, 8), b"", &[]).unwrap();
        w.send(header(Kind::Done, 9), &big, &[]).unwrap();
        w.send(header(Kind::Done, 10), b"after", &[]).unwrap();
        w.flush().unwrap();
        big
    });
    let mut p = Vec::new();
    let (h, fds) = r.recv(&mut p).unwrap().unwrap();
    assert_eq!(
        (h, fds.len(), &p[..]),
        (header(Kind::Task, 7), 0, &b"payload"[..])
    );
    assert_eq!(r.recv(&mut p).unwrap().unwrap().0.id, 8);
    assert!(p.is_empty());
    assert_eq!(r.recv(&mut p).unwrap().unwrap().0.id, 9);
    let big = t.join().unwrap();
    assert_eq!(p, big);
    assert_eq!(r.recv(&mut p).unwrap().unwrap().0.id, 10);
    assert_eq!(p, b"after");
    assert!(r.recv(&mut p).unwrap().is_none(), "clean end of stream");
}

#[test]
fn a_reader_starts_with_one_page_and_grows_while_frames_fill_it() {
    let (mut w, mut r) = pair();
    // One page at first: a fresh worker or supervisor zeroes (and, after a fork, copies)
    // no more than that before its first frame.
    assert_eq!(r.buf.len(), FIRST_BUFFER);
    let t = std::thread::spawn(move || {
        for id in 0..2000 {
            w.send(header(Kind::Done, id), &[id as u8; 9], &[]).unwrap();
        }
        w.flush().unwrap();
    });
    t.join().unwrap(); // all 76 KB wait in the socket: every read but the last fills
    let mut p = Vec::new();
    for id in 0..2000 {
        assert_eq!(r.recv(&mut p).unwrap().unwrap().0.id, id);
        assert_eq!(p, [id as u8; 9]);
    }
    assert!(r.recv(&mut p).unwrap().is_none());
    assert_eq!(r.buf.len(), BUFFER, "full reads double it, up to BUFFER");
}

#[test]
fn descriptors_arrive_with_their_frame() {
    let (mut w, mut r) = pair();
    let (mine, theirs) = UnixStream::pair().unwrap();
    let theirs: OwnedFd = theirs.into();
    let dup = theirs.as_fd().try_clone_to_owned().unwrap();
    w.send(header(Kind::Task, 1), b"no fds", &[]).unwrap();
    w.send(header(Kind::Task, 2), b"two fds", &[theirs, dup])
        .unwrap();
    w.send(header(Kind::Task, 3), b"none again", &[]).unwrap();
    w.flush().unwrap();
    let mut p = Vec::new();
    assert!(r.recv(&mut p).unwrap().unwrap().1.is_empty());
    let (h, fds) = r.recv(&mut p).unwrap().unwrap();
    assert_eq!((h.id, fds.len(), &p[..]), (2, 2, &b"two fds"[..]));
    assert!(r.recv(&mut p).unwrap().unwrap().1.is_empty());
    // The received descriptor is the other end of `mine`.
    let mut end = UnixStream::from(fds.into_iter().next().unwrap());
    end.write_all(b"!").unwrap();
    let mut got = [0u8];
    (&mine).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"!");
}

#[test]
fn truncated_and_corrupt_frames_are_errors() {
    let h = encode_header(header(Kind::Done, 1), 3, 0, false);
    let mut frame = h.to_vec();
    frame.extend_from_slice(b"ab"); // one byte short
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(&frame).unwrap();
    drop(a);
    assert!(FrameReader::new(b).recv(&mut Vec::new()).is_err());

    let mut bad = encode_header(header(Kind::Done, 1), 0, 0, false);
    bad[8] = 99;
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(&bad).unwrap();
    assert!(FrameReader::new(b).recv(&mut Vec::new()).is_err());

    let lying = encode_header(header(Kind::Done, 1), 0, 2, false); // announces fds, sends none
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(&lying).unwrap();
    assert!(FrameReader::new(b).recv(&mut Vec::new()).is_err());
}

#[test]
fn a_bulk_body_arrives_mapped_between_ordinary_frames() {
    let (mut w, mut r) = pair();
    let mut body = BulkBuf::with_capacity(0).unwrap();
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    body.extend_from_slice(&bytes).unwrap();
    let (_mine, theirs) = UnixStream::pair().unwrap();
    w.send(header(Kind::Task, 1), b"before", &[]).unwrap();
    w.send_bulk(header(Kind::Task, 2), &body, &[theirs.into()])
        .unwrap();
    w.send(header(Kind::Task, 3), b"after", &[]).unwrap();
    w.flush().unwrap();
    let mut p = Vec::new();
    // SAFETY: `body` is not written while the views live.
    let recv = |r: &mut FrameReader, p: &mut Vec<u8>| unsafe { r.recv_with_bulk(p) };
    let (h, fds, view) = recv(&mut r, &mut p).unwrap().unwrap();
    assert_eq!(
        (h.id, fds.len(), view.is_none(), &p[..]),
        (1, 0, true, &b"before"[..])
    );
    let (h, fds, view) = recv(&mut r, &mut p).unwrap().unwrap();
    assert_eq!((h, fds.len(), p.len()), (header(Kind::Task, 2), 1, 0));
    assert_eq!(view.unwrap().as_slice(), &bytes[..]);
    let (h, _, view) = recv(&mut r, &mut p).unwrap().unwrap();
    assert_eq!((h.id, view.is_none(), &p[..]), (3, true, &b"after"[..]));
}

#[test]
fn plain_recv_refuses_a_bulk_frame() {
    let (mut w, mut r) = pair();
    let mut body = BulkBuf::with_capacity(0).unwrap();
    body.extend_from_slice(b"shared").unwrap();
    w.send_bulk(header(Kind::Message, 1), &body, &[]).unwrap();
    w.flush().unwrap();
    let err = r.recv(&mut Vec::new()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn writing_to_a_closed_peer_is_an_error_not_sigpipe() {
    let (mut w, r) = pair();
    drop(r);
    w.send(header(Kind::Task, 1), b"x", &[]).unwrap();
    assert!(w.flush().is_err());
}

#[test]
fn after_a_failed_read_the_reader_refuses_rather_than_read_mid_frame() {
    // A frame that announces a descriptor that never comes, whose body happens to look like
    // a frame: once the first read fails, the reader no longer knows where frames begin, so
    // it must not take that body for the next frame (in a worker, a `Task` frame's `call` is
    // a code address).
    let inner = encode_header(header(Kind::Task, 2), 0, 0, false);
    let mut bytes = encode_header(header(Kind::Task, 1), inner.len(), 1, false).to_vec();
    bytes.extend_from_slice(&inner);
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(&bytes).unwrap();
    let mut r = FrameReader::new(b);
    let mut p = Vec::new();
    let first = r.recv(&mut p).unwrap_err();
    assert_eq!(first.kind(), io::ErrorKind::InvalidData, "{first}");
    let again = r.recv(&mut p);
    assert!(
        again.is_err(),
        "the failed frame's body was read as a frame: {again:?}"
    );
    assert!(r.ready().is_err(), "and `ready` says so too");
}
