//! Run with: `cargo run --release --features spawn,ipc --example spawn_queue`
//!
//! Tutorial: "share small amounts of data with a Queue", on spawned processes — producers and
//! consumers that are fresh copies of this program, handed the queues as arguments.
//!
//! Two producer processes put image names on a `JoinableQueue`; three consumer processes
//! "crunch" them, put `(name, result, pid)` on a results `Queue` and mark each task done. The
//! parent `join`s the work queue, closes it (the consumers see the end and exit) and prints
//! the results. A spawned process inherits nothing: each queue reaches it as a serde argument
//! whose shared memory travels as a file descriptor. Exits non-zero if an image was lost or
//! processed twice.

use std::collections::BTreeSet;
use std::time::Duration;

use multiproc::ipc::{JoinableQueue, Queue};
use multiproc::spawn::Process;
use multiproc::Error;

const TIMEOUT: Duration = Duration::from_secs(60);

fn crunch_image(name: &str) -> usize {
    std::thread::sleep(Duration::from_millis(20)); // load a nifti image, do stuff to it...
    name.bytes().map(usize::from).sum()
}

fn producer((work, p): (JoinableQueue<String>, u32)) {
    for i in 0..10 {
        work.put(&format!("{p}_{i:02}.nii.gz")).expect("put");
    }
}

fn consumer((work, results): (JoinableQueue<String>, Queue<(String, usize, u32)>)) {
    loop {
        match work.get_timeout(TIMEOUT) {
            Ok(name) => {
                let r = crunch_image(&name);
                results
                    .put(&(name, r, std::process::id()))
                    .expect("put result");
                work.task_done().expect("task_done");
            }
            Err(Error::QueueClosed) => break, // no more work
            Err(e) => panic!("consumer: {e}"),
        }
    }
}

fn main() -> multiproc::Result<()> {
    multiproc::init(); // first: the spawned processes start here and never return from it
    let work = JoinableQueue::<String>::new(4)?; // producers wait while 4 are queued
    let results = Queue::<(String, usize, u32)>::new(0)?;

    let producers = (0..2)
        .map(|p| Process::new(producer, (work.clone(), p)).start())
        .collect::<multiproc::Result<Vec<_>>>()?;
    let consumers = (0..3)
        .map(|_| Process::new(consumer, (work.clone(), results.clone())).start())
        .collect::<multiproc::Result<Vec<_>>>()?;

    for p in &producers {
        p.join()?;
        p.check()?;
    }
    work.join_timeout(TIMEOUT)?; // every item put has been marked done
    work.close();
    for c in &consumers {
        c.join()?;
        c.check()?;
    }

    let mut seen = BTreeSet::new();
    let mut pids = BTreeSet::new();
    while let Ok((name, result, pid)) = results.get_nowait() {
        println!("{name} : [{result}] (consumer {pid})");
        assert!(seen.insert(name), "an image was processed twice");
        pids.insert(pid);
    }
    println!("{} images by {} spawned consumers", seen.len(), pids.len());
    if seen.len() != 20 {
        eprintln!("lost images: got {} of 20", seen.len());
        std::process::exit(1);
    }
    Ok(())
}
