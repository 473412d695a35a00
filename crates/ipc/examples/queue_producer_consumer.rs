//! Run with: `cargo run --release -p multiproc-ipc --example queue_producer_consumer`
//!
//! The tutorial's "share small amounts of data with a Queue": producers and consumers in
//! forked processes, a `JoinableQueue` of work and a `Queue` of results.
//!
//! Two producer processes put image names on a `JoinableQueue`; three consumer processes
//! "crunch" them and put `(name, result, pid)` on a results queue and mark each task done;
//! the parent `join`s the work queue, closes it (consumers see the end and exit) and prints
//! the results. Exits non-zero if an image was lost or processed twice.

use std::collections::BTreeSet;
use std::time::Duration;

use multiproc_fork::Process;
use multiproc_ipc::{Error, JoinableQueue, Queue};

const TIMEOUT: Duration = Duration::from_secs(60);

fn crunch_image(name: &str) -> usize {
    std::thread::sleep(Duration::from_millis(20)); // load a nifti image, do stuff to it...
    name.bytes().map(usize::from).sum()
}

fn main() -> multiproc_ipc::Result<()> {
    let work = JoinableQueue::<String>::new(4)?; // producers wait while 4 are queued
    let results = Queue::<(String, usize, u32)>::new(0)?;

    let producers = (0..2)
        .map(|p| {
            let work = work.clone();
            Process::from_closure(move || {
                for i in 0..10 {
                    work.put(&format!("{p}_{i:02}.nii.gz")).expect("put");
                }
            })
            .name(format!("producer-{p}"))
            .start()
        })
        .collect::<multiproc_ipc::Result<Vec<_>>>()?;

    let consumers = (0..3)
        .map(|c| {
            let (work, results) = (work.clone(), results.clone());
            Process::from_closure(move || loop {
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
            })
            .name(format!("consumer-{c}"))
            .start()
        })
        .collect::<multiproc_ipc::Result<Vec<_>>>()?;

    for p in &producers {
        p.join_timeout(TIMEOUT)?;
        p.check()?;
    }
    work.join_timeout(TIMEOUT)?; // every image was processed
    work.close(); // wakes the consumers, which then exit
    for c in &consumers {
        c.join_timeout(TIMEOUT)?;
        c.check()?;
    }

    let mut names = BTreeSet::new();
    while let Ok((name, result, pid)) = results.get_nowait() {
        println!("{name} : {result} (consumer pid {pid})");
        if !names.insert(name.clone()) {
            eprintln!("{name} was processed twice");
            std::process::exit(1);
        }
    }
    println!(
        "{} images processed by {} consumers",
        names.len(),
        consumers.len()
    );
    if names.len() != 20 {
        eprintln!("expected 20 images");
        std::process::exit(1);
    }
    Ok(())
}
