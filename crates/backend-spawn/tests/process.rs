//! `multiproc_spawn::Process`: Python's `Process` under the spawn context.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use multiproc_core::{Error, ExitCause};
use multiproc_spawn::Process;

multiproc_spawn::test_worker!();

#[derive(serde::Serialize, serde::Deserialize)]
struct Report {
    #[serde(with = "multiproc_core::handoff::fd")]
    to: OwnedFd,
    text: String,
}

fn report(r: Report) {
    let mut s = UnixStream::from(r.to);
    write!(s, "{} from {}", r.text, std::process::id()).unwrap();
}

#[test]
fn a_target_runs_with_its_arguments_in_a_new_process() {
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let p = Process::new(
        report,
        Report {
            to: theirs.into(),
            text: "hello".into(),
        },
    )
    .name("reporter")
    .start()
    .unwrap();
    assert_eq!(p.name(), "reporter");
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert!(!p.is_alive());
    let mut got = String::new();
    ours.read_to_string(&mut got).unwrap();
    assert_eq!(got, format!("hello from {}", p.pid()));
}

fn panics(_: ()) {
    panic!("the target failed");
}

fn exits(code: i32) {
    std::process::exit(code);
}

fn sleeps(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[test]
fn exit_codes_follow_python() {
    let p = Process::new(panics, ()).start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(1), "a panic is exit code 1");

    let p = Process::new(exits, 5).start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(5));
    assert!(matches!(
        p.check(),
        Err(Error::WorkerDied {
            cause: ExitCause::Code(5),
            ..
        })
    ));

    let p = Process::new(sleeps, 60_000).start().unwrap();
    assert!(p.is_alive());
    assert!(matches!(
        p.join_timeout(Duration::from_millis(50)),
        Err(Error::Timeout(_))
    ));
    assert_eq!(p.exitcode(), None);
    p.terminate().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(-15));

    let p = Process::new(sleeps, 60_000).start().unwrap();
    p.kill().unwrap();
    // Bounded against a hang, not timed: how soon a killed child is reaped is no test's
    // business on a loaded machine.
    p.join_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(p.exitcode(), Some(-9));
}

/// Starts a grandchild that sleeps forever, reports its pid, then sleeps itself.
fn parent_of_sleeper(r: Report) {
    let sleeper = Process::new(sleeps, 3_600_000).start().unwrap();
    let mut s = UnixStream::from(r.to);
    write!(s, "{}", sleeper.pid()).unwrap();
    drop(s);
    std::thread::sleep(Duration::from_secs(3600));
}

#[test]
fn a_child_dies_with_its_parent() {
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let middle = Process::new(
        parent_of_sleeper,
        Report {
            to: theirs.into(),
            text: String::new(),
        },
    )
    .start()
    .unwrap();
    let mut pid = String::new();
    ours.read_to_string(&mut pid).unwrap();
    let grandchild: i32 = pid.parse().unwrap();
    middle.kill().unwrap();
    middle.join().unwrap();
    // The grandchild was re-parented and got SIGKILL; it disappears (reaped by init).
    let deadline = Instant::now() + Duration::from_secs(5);
    while multiproc_sys::procfs::stat(grandchild as u32).is_ok_and(|s| !s.is_dead()) {
        assert!(
            Instant::now() < deadline,
            "the grandchild outlived its parent"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn arguments_that_cannot_be_encoded_are_an_error_at_start() {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Bad {
        #[serde(serialize_with = "refuse")]
        x: u8,
    }
    fn refuse<S: serde::Serializer>(_: &u8, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("not today"))
    }
    fn takes(_: Bad) {}
    let err = Process::new(takes, Bad { x: 1 }).start().unwrap_err();
    assert!(matches!(err, Error::Serialization(_)), "{err}");
}
