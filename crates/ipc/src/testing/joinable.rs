//! The check of `JoinableQueue`: `join` and `task_done`.

use std::time::Duration;

use multiproc_core::Error;

use super::{join, start, Harness, LONG};
use crate::JoinableQueue;

fn process_tasks((q, n): (JoinableQueue<u64>, u64)) {
    for _ in 0..n {
        q.get_timeout(LONG).expect("get");
        std::thread::sleep(Duration::from_millis(10));
        q.task_done().expect("task_done");
    }
}

/// `JoinableQueue::join` returns only once every item put was marked done; a `task_done`
/// too many is an error.
pub fn joinable_join_waits_for_task_done<H: Harness>(h: &H) {
    let q = JoinableQueue::<u64>::with_capacity(0, 1024).expect("creating a queue");
    for i in 0..5 {
        q.put(&i).unwrap();
    }
    assert_eq!(q.unfinished(), 5);
    let w = start(h, process_tasks, (q.clone(), 5));
    assert!(
        matches!(
            q.join_timeout(Duration::from_millis(5)),
            Err(Error::Timeout(_))
        ),
        "join returned before the tasks were done"
    );
    q.join_timeout(LONG).expect("join");
    assert_eq!(q.unfinished(), 0);
    assert!(q.empty());
    join(&w);
    assert!(matches!(
        q.task_done(),
        Err(Error::InvalidArgument {
            name: "task_done",
            ..
        })
    ));
}
