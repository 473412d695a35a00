use std::io;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use multiproc_core::Error;
use multiproc_process::wire::Kind;

use crate::codec;

use super::*;

#[test]
fn one_way_ends_refuse_the_other_direction() {
    let (r, w) = pipe(false).unwrap();
    assert!((r.readable(), r.writable(), w.readable(), w.writable()) == (true, false, false, true));
    assert!(matches!(
        r.send(&1u8),
        Err(Error::InvalidArgument { name: "self", .. })
    ));
    assert!(matches!(
        w.recv::<u8>(),
        Err(Error::InvalidArgument { name: "self", .. })
    ));
    assert!(w.poll(Duration::ZERO).is_err());
    w.send(&5u8).unwrap();
    assert_eq!(r.recv::<u8>().unwrap(), 5);
}

#[test]
fn closed_ends_say_so() {
    let (a, b) = pipe(true).unwrap();
    a.close();
    assert!(a.closed());
    for e in [a.send(&1u8).unwrap_err(), a.recv::<u8>().unwrap_err()] {
        assert!(
            matches!(e, Error::Io(ref io) if io.kind() == io::ErrorKind::NotConnected),
            "{e}"
        );
    }
    let e = b.recv::<u8>().unwrap_err();
    assert!(matches!(e, Error::PipeClosed), "recv: {e:?}");
    assert!(
        b.poll(Duration::ZERO).unwrap(),
        "end of file counts as ready"
    );
    let e = b.send(&1u8).unwrap_err();
    assert!(matches!(e, Error::PipeClosed), "send: {e:?}");
    assert!(crate::is_closed(&e));
}

#[test]
fn a_peer_that_closes_with_messages_unread_is_pipe_closed_both_ways() {
    // Linux resets the connection when an end closes with bytes unread
    // (ECONNRESET on the survivor's next call), which is the same event for the survivor.
    let (a, b) = pipe(true).unwrap();
    a.send(&1u8).unwrap();
    drop(b);
    let e = a.recv::<u8>().unwrap_err();
    assert!(matches!(e, Error::PipeClosed), "recv: {e:?}");
    let e = a.send(&2u8).unwrap_err();
    assert!(matches!(e, Error::PipeClosed), "send: {e:?}");
}

/// A connection whose peer (the returned raw end) has sent a frame header announcing 100
/// payload bytes (len, kind Message, id, call, nfds), followed by only 10 of them.
fn half_a_message() -> (UnixStream, Connection) {
    use std::io::Write;
    let (raw, sock) = UnixStream::pair().unwrap();
    let conn = Connection::from_stream(sock, true, true).unwrap();
    let mut frame = Vec::new();
    frame.extend_from_slice(&100u64.to_le_bytes());
    frame.push(Kind::Message as u8);
    frame.extend_from_slice(&[0u8; 8 + 8 + 4]);
    frame.extend_from_slice(&[1u8; 10]);
    (&raw).write_all(&frame).unwrap();
    (raw, conn)
}

#[test]
fn a_peer_that_ends_in_the_middle_of_a_message_is_pipe_closed() {
    let (raw, conn) = half_a_message();
    drop(raw);
    let e = conn.recv::<Vec<u8>>().unwrap_err();
    assert!(matches!(e, Error::PipeClosed), "{e:?}");
}

#[test]
fn a_wrong_type_is_a_serialization_error_and_the_stream_goes_on() {
    let (a, b) = pipe(true).unwrap();
    a.send(&"text").unwrap();
    a.send(&7u32).unwrap();
    assert!(matches!(b.recv::<Vec<f64>>(), Err(Error::Serialization(_))));
    assert_eq!(b.recv::<u32>().unwrap(), 7);
    a.send_bytes(b"raw").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"raw");
}

#[test]
fn outside_a_transport_a_connection_does_not_serialize() {
    let (a, _b) = pipe(true).unwrap();
    let e = codec::encode_into(&a, Vec::new()).unwrap_err();
    assert!(e.to_string().contains("file descriptor"), "{e}");
}
#[test]
fn a_timeout_in_the_middle_of_a_message_breaks_that_direction_only() {
    let (_raw, conn) = half_a_message(); // the peer stays open: only a timeout ends the read
    let t = Instant::now();
    assert!(matches!(
        conn.recv_timeout::<Vec<u8>>(Duration::from_millis(50)),
        Err(Error::Timeout(_))
    ));
    assert!(t.elapsed() < Duration::from_secs(5));
    let e = conn.recv::<Vec<u8>>().unwrap_err();
    assert!(e.to_string().contains("no longer receive"), "{e}");
    // Sending still works.
    conn.send(&1u8).unwrap();
}

/// A timeout bounds the whole receive, not each read it makes: a peer that trickles a
/// message in, a byte every 20 ms, does not stretch a 100 ms `recv_timeout` to the message's
/// end (each read waited anew for up to the whole timeout).
#[test]
fn a_message_trickled_in_slower_than_the_timeout_times_out() {
    use std::io::Write;
    let (raw, conn) = half_a_message();
    let trickle = std::thread::spawn(move || {
        for _ in 0..90 {
            std::thread::sleep(Duration::from_millis(20));
            if (&raw).write_all(&[2u8]).is_err() {
                return; // the test is over
            }
        }
    });
    let got = conn.recv_bytes_timeout(Duration::from_millis(100));
    assert!(matches!(got, Err(Error::Timeout(_))), "{got:?}");
    drop(conn);
    trickle.join().unwrap();
}

/// The same for a send: a peer that reads 4 KiB every 20 ms does not stretch a 100 ms
/// `send_timeout` of 1 MiB to the end of the message.
#[test]
fn a_message_read_slower_than_the_timeout_times_out() {
    use std::io::Read;
    let (raw, sock) = UnixStream::pair().unwrap();
    let conn = Connection::from_stream(sock, true, true).unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            std::thread::sleep(Duration::from_millis(20));
            match (&raw).read(&mut buf) {
                Ok(0) | Err(_) => return, // the test is over
                Ok(_) => {}
            }
        }
    });
    let sent = conn.send_bytes_timeout(&vec![7u8; 1 << 20], Duration::from_millis(100));
    assert!(matches!(sent, Err(Error::Timeout(_))), "{sent:?}");
    drop(conn);
    reader.join().unwrap();
}

#[test]
fn a_send_that_cannot_finish_times_out() {
    let (a, _b) = pipe(true).unwrap();
    let big = vec![7u8; 8 << 20]; // far more than a socket buffer; nobody reads
    let t = Instant::now();
    assert!(matches!(
        a.send_timeout(&big, Duration::from_millis(100)),
        Err(Error::Timeout(_))
    ));
    assert!(t.elapsed() < Duration::from_secs(5));
    let e = a.send(&1u8).unwrap_err();
    assert!(e.to_string().contains("no longer send"), "{e}");
    assert!(a.poll(Duration::ZERO).is_ok(), "receiving is unaffected");
}

#[test]
fn an_end_whose_read_failed_part_way_does_not_travel() {
    use std::io::Write;
    let (raw, conn) = UnixStream::pair().unwrap();
    let conn = Connection::from_stream(conn, true, true).unwrap();
    // A frame header announcing a descriptor that never comes: the read fails after taking
    // the header, so where the next frame begins is unknown.
    let mut frame = Vec::new();
    frame.extend_from_slice(&4u64.to_le_bytes());
    frame.push(Kind::Message as u8);
    frame.extend_from_slice(&[0u8; 8 + 8]);
    frame.extend_from_slice(&1u32.to_le_bytes());
    (&raw).write_all(&frame).unwrap();
    assert!(conn.recv::<u32>().is_err());
    // Sent elsewhere, it would be read from the middle of that frame.
    let (c, _d) = pipe(true).unwrap();
    let e = c.send(&conn).unwrap_err();
    assert!(matches!(e, Error::Serialization(_)), "{e:?}");
}

#[test]
fn a_send_that_timed_out_before_writing_anything_leaves_the_connection_whole() {
    let (a, b) = pipe(true).unwrap();
    // Small messages until the socket is full: the one that times out wrote nothing (the
    // kernel takes a small write whole or not at all).
    let mut sent = 0u32;
    loop {
        match a.send_timeout(&sent, Duration::from_millis(5)) {
            Ok(()) => sent += 1,
            Err(Error::Timeout(_)) => break,
            Err(e) => panic!("after {sent} sends: {e:?}"),
        }
    }
    for i in 0..sent {
        assert_eq!(b.recv::<u32>().unwrap(), i);
    }
    assert!(
        !b.poll(Duration::ZERO).unwrap(),
        "no part of the timed-out one arrived"
    );
    a.send(&u32::MAX).unwrap();
    assert_eq!(b.recv::<u32>().unwrap(), u32::MAX);
}

/// Decoding one tells the test that the receiving thread is inside its `recv`, holding its
/// end's receiving side, then waits until the test lets it go.
struct Held;

static ENTERED: std::sync::LazyLock<std::sync::Barrier> =
    std::sync::LazyLock::new(|| std::sync::Barrier::new(2));
static LEAVE: std::sync::LazyLock<std::sync::Barrier> =
    std::sync::LazyLock::new(|| std::sync::Barrier::new(2));

impl<'de> serde::Deserialize<'de> for Held {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        <u8 as serde::Deserialize>::deserialize(d)?;
        ENTERED.wait();
        LEAVE.wait();
        Ok(Held)
    }
}

#[test]
fn another_thread_s_receive_makes_no_one_else_wait_past_their_timeout() {
    let (a, b) = pipe(true).unwrap();
    let b = std::sync::Arc::new(b);
    a.send(&0u8).unwrap();
    let receiver = {
        let b = b.clone();
        std::thread::spawn(move || b.recv::<Held>().map(|_| ()))
    };
    ENTERED.wait();
    // Each call on a thread of its own, so that one that hangs fails the test instead.
    let check = |what: &str, f: Box<dyn FnOnce() -> bool + Send>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(true), "{what}");
    };
    let c = b.clone();
    check(
        "recv_timeout",
        Box::new(move || {
            let r = c.recv_timeout::<u8>(Duration::from_millis(20));
            matches!(r, Err(Error::Timeout(_)))
        }),
    );
    let c = b.clone();
    check(
        "poll(0)",
        Box::new(move || matches!(c.poll(Duration::ZERO), Ok(false))),
    );
    let c = b.clone();
    check(
        "close",
        Box::new(move || {
            c.close();
            c.closed()
        }),
    );
    LEAVE.wait();
    assert!(
        receiver.join().unwrap().is_ok(),
        "the receive under way ends"
    );
    assert!(
        matches!(b.recv::<u8>(), Err(Error::Io(_))),
        "then it is closed"
    );
}
