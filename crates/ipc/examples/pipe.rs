//! Run with: `cargo run --release -p multiproc-ipc --example pipe`
//!
//! The tutorial's `Pipe`: a parent and a forked child talking both ways, and a second pipe
//! end handed to the child *through* the first one.

use std::time::Duration;

use multiproc_fork::Process;
use multiproc_ipc::{pipe, Connection, Error};

const TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> multiproc_ipc::Result<()> {
    let (parent_end, child_end) = pipe(true)?;
    // A forked child holds a copy of *everything* the parent had, `parent_end` included. As in
    // Python, it closes the end it does not use: otherwise its own copy would keep the pipe
    // open and it would never read an end of file. (The closure may borrow: the child gets
    // its own copy of the parent's memory at the fork.)
    let unused = &parent_end;
    let child = Process::from_closure(move || {
        unused.close();
        // Requests until the parent closes its end.
        loop {
            match child_end.recv_timeout::<Vec<f64>>(TIMEOUT) {
                Ok(data) => {
                    let mean = data.iter().sum::<f64>() / data.len() as f64;
                    child_end.send(&mean).expect("send");
                }
                Err(Error::PipeClosed) => break,
                Err(e) => panic!("child: {e}"),
            }
        }
    })
    .start()?;
    // `child_end` moved into the child's closure, which the parent dropped once the child
    // was forked: the child alone holds that end now, so it reads to its end of file once
    // every copy of `parent_end` is closed.

    for n in [10, 100, 1000] {
        let data: Vec<f64> = (1..=n).map(f64::from).collect();
        parent_end.send(&data)?;
        if !parent_end.poll(TIMEOUT)? {
            panic!("no answer within {TIMEOUT:?}");
        }
        let mean: f64 = parent_end.recv()?;
        println!("mean of 1..={n}: {mean}");
    }

    // A Connection is itself sendable. This child is forked *before* the pipe `(x, y)`
    // exists, so it can only get `y` through its argument pipe (its descriptor travels as
    // SCM_RIGHTS).
    let (to_second, second_end) = pipe(true)?;
    let second = Process::from_closure(move || {
        unused.close(); // this child inherited `parent_end` too
        let passed: Connection = second_end.recv_timeout(TIMEOUT).expect("recv a Connection");
        let greeting: String = passed.recv_timeout(TIMEOUT).expect("recv on it");
        passed.send(&greeting.to_uppercase()).expect("answer on it");
    })
    .start()?;
    let (x, y) = pipe(true)?;
    to_second.send(&y)?;
    drop(y);
    x.send(&"hello through a passed pipe end".to_string())?;
    let answer: String = x.recv_timeout(TIMEOUT)?;
    println!("second child (pid {}) answered: {answer}", second.pid());

    parent_end.close();
    child.join_timeout(TIMEOUT)?;
    child.check()?;
    second.join_timeout(TIMEOUT)?;
    second.check()?;
    Ok(())
}
