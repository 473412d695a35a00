//! Run with: `cargo run --release --features spawn,ipc,shared-array --example spawn_pipe`
//!
//! Tutorial: `Pipe` — two connected ends, one in a spawned process; values go both ways.
//!
//! The child receives its end of the pipe as an argument (the socket travels as a file
//! descriptor), answers each request, and passes back a shared array it filled — shared
//! memory sent over the pipe, which the parent then reads without a copy crossing the pipe.

use std::time::Duration;

use multiproc::ipc::{pipe, Connection};
use multiproc::shared_array::RawArray;
use multiproc::spawn::Process;

fn child(conn: Connection) {
    // Until the parent closes its end.
    while let Ok(request) = conn.recv::<String>() {
        if request == "array" {
            let squares = RawArray::from_iter((0..10u64).map(|i| i * i)).expect("shared array");
            conn.send(&squares).expect("send the array");
        } else {
            conn.send(&request.to_uppercase()).expect("send");
        }
    }
}

fn main() -> multiproc::Result<()> {
    multiproc::init(); // first: the spawned child starts here and never returns from it
    let (parent_end, child_end) = pipe(true)?;
    let p = Process::new(child, child_end).start()?;

    for word in ["woozle", "wuzzle"] {
        parent_end.send(&word.to_string())?;
        if !parent_end.poll(Duration::from_secs(10))? {
            eprintln!("no answer within 10 s");
            std::process::exit(1);
        }
        let answer: String = parent_end.recv()?;
        println!("sent {word:?}, received {answer:?}");
    }
    parent_end.send(&"array".to_string())?;
    let squares: RawArray<u64> = parent_end.recv()?;
    println!("shared array from the child: {:?}", squares.to_vec());
    assert_eq!(
        squares.to_vec(),
        (0..10u64).map(|i| i * i).collect::<Vec<_>>()
    );

    drop(parent_end); // the child sees the end of the pipe and exits
    p.join_timeout(Duration::from_secs(10))?;
    println!("child exited with {:?}", p.exitcode());
    p.check()
}
