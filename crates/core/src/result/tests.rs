//! Unit tests of the result types, fed as a backend feeds them.

use std::num::NonZeroUsize;
use std::time::Duration;

use super::*;
use crate::error::Error;

#[test]
fn collect_assembles_chunks_in_order() {
    let (sink, result) = ChunkSink::collect(3);
    sink.deliver(2, Ok(vec![5, 6]));
    sink.deliver(0, Ok(vec![1, 2]));
    assert!(!result.ready());
    sink.deliver(1, Ok(vec![3, 4]));
    assert_eq!(result.get().unwrap(), vec![1, 2, 3, 4, 5, 6]);
}

#[test]
fn dropped_sink_fails_instead_of_hanging() {
    let (sink, result) = ChunkSink::<u8>::collect(2);
    sink.deliver(0, Ok(vec![1]));
    drop(sink);
    assert!(matches!(result.get(), Err(Error::PoolClosed(_))));

    let (sink, mut imap) = ChunkSink::<u8>::imap(2, true);
    sink.deliver(0, Ok(vec![1]));
    drop(sink);
    assert_eq!(imap.next().unwrap().unwrap(), 1);
    assert!(matches!(imap.next(), Some(Err(Error::PoolClosed(_)))));
    assert!(imap.next().is_none());
}

/// A task awaiting `next_async` is woken by the sink's drop (a lost job, `terminate`) only
/// once the sink is gone: a look at the moment of the wake-up sees the end. (Woken before,
/// a task could look while the sender was still alive, wait again, and never be woken by the
/// disconnect.) The waker here looks itself, at the very moment it is woken.
#[test]
fn an_awaiting_task_is_woken_once_the_dropped_sink_is_gone() {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Wake, Waker};

    struct LookOnWake {
        imap: Arc<Mutex<IMap<u8>>>,
        seen: Mutex<Option<Option<crate::Result<u8>>>>,
    }
    impl Wake for LookOnWake {
        fn wake(self: Arc<Self>) {
            let look = self.imap.lock().unwrap().next_timeout(Duration::ZERO);
            *self.seen.lock().unwrap() = Some(look);
        }
    }

    let (sink, imap) = ChunkSink::<u8>::imap(2, true);
    sink.deliver(0, Ok(vec![1]));
    let imap = Arc::new(Mutex::new(imap));
    assert_eq!(imap.lock().unwrap().next().unwrap().unwrap(), 1);
    let look = Arc::new(LookOnWake {
        imap: imap.clone(),
        seen: Mutex::new(None),
    });
    let waker = Waker::from(look.clone());
    {
        let mut imap = imap.lock().unwrap();
        let next = pin!(imap.next_async());
        assert!(next.poll(&mut Context::from_waker(&waker)).is_pending());
    }
    drop(sink);
    let seen = look
        .seen
        .lock()
        .unwrap()
        .take()
        .expect("the drop woke the task");
    assert!(matches!(seen, Some(Err(Error::PoolClosed(_)))), "{seen:?}");
}

#[test]
fn whole_delivery_completes_map_and_splits_for_imap() {
    let (sink, result) = ChunkSink::collect(3);
    assert!(sink.wants_whole());
    sink.deliver_whole(Ok(vec![1, 2, 3, 4, 5]), NonZeroUsize::new(2).unwrap());
    assert_eq!(result.get().unwrap(), vec![1, 2, 3, 4, 5]);

    let (sink, imap) = ChunkSink::imap(3, true);
    assert!(!sink.wants_whole());
    sink.deliver_whole(Ok(vec![1, 2, 3, 4, 5]), NonZeroUsize::new(2).unwrap());
    drop(sink);
    assert_eq!(
        imap.map(Result::unwrap).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );

    let (sink, result) = ChunkSink::<u8>::single();
    sink.deliver_whole(Err(Error::Timeout(Duration::ZERO)), NonZeroUsize::MIN);
    assert!(matches!(result.get(), Err(Error::Timeout(_))));
}

#[test]
fn get_timeout_then_get() {
    let (completer, mut result) = AsyncResult::<u32>::pending();
    assert!(matches!(
        result.get_timeout(Duration::from_millis(10)),
        Err(Error::Timeout(_))
    ));
    assert_eq!(result.successful(), None);
    completer.complete(Ok(7));
    assert_eq!(result.successful(), Some(true));
    assert_eq!(result.get_timeout(Duration::from_millis(10)).unwrap(), 7);
    assert!(matches!(
        result.get_timeout(Duration::ZERO),
        Err(Error::ResultTaken)
    ));
    assert_eq!(result.successful(), Some(true));
}

#[test]
fn imap_ordered_reorders_and_unordered_does_not() {
    let (sink, imap) = ChunkSink::imap(3, true);
    sink.deliver(2, Ok(vec![3]));
    sink.deliver(1, Ok(vec![2]));
    sink.deliver(0, Ok(vec![1]));
    assert_eq!(imap.map(Result::unwrap).collect::<Vec<_>>(), vec![1, 2, 3]);

    let (sink, imap) = ChunkSink::imap(3, false);
    sink.deliver(2, Ok(vec![3]));
    sink.deliver(1, Ok(vec![2]));
    sink.deliver(0, Ok(vec![1]));
    assert_eq!(imap.map(Result::unwrap).collect::<Vec<_>>(), vec![3, 2, 1]);
}

/// Chunks delivered from several threads at once, in any order, each sink's last clone
/// dropped on whichever thread finishes last, while the consumer already waits: the
/// concurrency that every pool creates (run under Miri and ThreadSanitizer by `.ci/run`).
#[test]
fn concurrent_deliveries_from_many_threads() {
    const CHUNKS: usize = 12;
    const THREADS: usize = 3;
    let (sink, result) = ChunkSink::collect(CHUNKS);
    let (ordered_sink, ordered) = ChunkSink::imap(CHUNKS, true);
    let (unordered_sink, unordered) = ChunkSink::imap(CHUNKS, false);
    let (lossy_sink, lossy) = ChunkSink::<usize>::collect(CHUNKS);
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let sinks = (
                sink.clone(),
                ordered_sink.clone(),
                unordered_sink.clone(),
                lossy_sink.clone(),
            );
            std::thread::spawn(move || {
                // Thread t delivers chunks t, t + THREADS, ... from the last one down.
                for c in (t..CHUNKS).step_by(THREADS).rev() {
                    sinks.0.deliver(c, Ok(vec![2 * c, 2 * c + 1]));
                    sinks.1.deliver(c, Ok(vec![2 * c, 2 * c + 1]));
                    sinks.2.deliver(c, Ok(vec![2 * c, 2 * c + 1]));
                    sinks.0.deliver(c, Ok(vec![0])); // a second delivery is ignored
                    if c != 0 {
                        sinks.3.deliver(c, Ok(vec![c])); // chunk 0 is never delivered
                    }
                }
            })
        })
        .collect();
    drop((sink, ordered_sink, unordered_sink, lossy_sink));
    let all: Vec<usize> = (0..2 * CHUNKS).collect();
    assert_eq!(result.get().unwrap(), all);
    assert_eq!(ordered.map(Result::unwrap).collect::<Vec<_>>(), all);
    let mut got: Vec<usize> = unordered.map(Result::unwrap).collect();
    got.sort_unstable();
    assert_eq!(got, all);
    assert!(matches!(lossy.get(), Err(Error::PoolClosed(_))));
    for w in workers {
        w.join().unwrap();
    }
}

#[test]
fn imap_next_timeout_resumes() {
    let (sink, mut imap) = ChunkSink::imap(1, true);
    assert!(matches!(
        imap.next_timeout(Duration::from_millis(5)),
        Some(Err(Error::Timeout(_)))
    ));
    sink.deliver(0, Ok(vec![9]));
    assert_eq!(
        imap.next_timeout(Duration::from_secs(5)).unwrap().unwrap(),
        9
    );
    assert!(imap.next_timeout(Duration::from_secs(5)).is_none());
}

/// Counts the cancels that reach a backend.
#[derive(Default)]
struct CountCancels(std::sync::atomic::AtomicUsize);

impl crate::cancel::Canceller for CountCancels {
    fn cancel_submission(&self, _id: usize) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Dropping an `IMap` cancels what is still to come — and nothing once every chunk has
/// arrived, read or not (a process pool would otherwise kill a worker whose published task
/// belongs to the finished submission, for nothing).
#[test]
fn dropping_an_imap_cancels_only_what_has_not_arrived() {
    for ordered in [true, false] {
        let backend = std::sync::Arc::new(CountCancels::default());
        let cancels = || backend.0.load(std::sync::atomic::Ordering::SeqCst);
        let hook = std::sync::Arc::downgrade(&backend) as std::sync::Weak<dyn crate::Canceller>;

        // Every chunk arrived, none read (the sink may still be held by the backend).
        let (sink, imap) = ChunkSink::imap(3, ordered);
        assert!(sink.cancel_token().on_cancel(hook.clone()));
        for c in [2, 0, 1] {
            sink.deliver(c, Ok(vec![c]));
        }
        drop(imap);
        assert_eq!(cancels(), 0, "ordered: {ordered}");
        drop(sink);

        // Every chunk arrived, some read.
        let (sink, mut imap) = ChunkSink::imap(3, ordered);
        assert!(sink.cancel_token().on_cancel(hook.clone()));
        for c in 0..3 {
            sink.deliver(c, Ok(vec![c, c]));
        }
        assert!(imap.next().is_some());
        drop(imap);
        assert_eq!(cancels(), 0, "ordered: {ordered}");

        // One chunk still to come: cancelled.
        let (sink, imap) = ChunkSink::imap(3, ordered);
        assert!(sink.cancel_token().on_cancel(hook.clone()));
        sink.deliver(0, Ok(vec![0]));
        sink.deliver(2, Ok(vec![2]));
        drop(imap);
        assert_eq!(cancels(), 1, "ordered: {ordered}");
        assert!(sink.cancel_token().is_cancelled());
    }
}

#[test]
fn an_ordered_imap_keeps_what_arrived_when_the_rest_never_will() {
    let (sink, imap) = ChunkSink::<u8>::imap(4, true);
    sink.deliver(0, Ok(vec![1]));
    sink.deliver(2, Ok(vec![3]));
    drop(sink); // chunks 1 and 3 never come
    let got: Vec<_> = imap
        .map(|r| r.map_err(|e| matches!(e, Error::PoolClosed(_))))
        .collect();
    assert_eq!(got, vec![Ok(1), Err(true), Ok(3), Err(true)]);
}

#[test]
fn a_cancel_that_loses_to_the_result_says_so() {
    let (completer, pending) = AsyncResult::<u8>::pending();
    completer.complete(Ok(5));
    assert!(!pending.cancel(), "finished already: nothing was cancelled");
    assert_eq!(pending.get().unwrap(), 5);
}

/// A result still pending when its process forked is of no use in the child (the pool's
/// threads that would complete it are not there): waiting for it there is a misuse, refused
/// at once with `ForeignProcess`, for `get_timeout` as for iterating an `imap` — not a
/// wait to the timeout, or for ever.
#[test]
#[cfg_attr(miri, ignore = "Miri does not emulate fork")]
fn a_pending_result_in_a_forked_child_is_refused_at_once() {
    let (_sink, mut result) = ChunkSink::<u8>::single();
    let (_isink, mut imap) = ChunkSink::<u8>::imap(1, true);
    // SAFETY: the child only checks pids and atomics, and leaves with `_exit`.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            // (Before, each waited out its timeout.)
            let t = Duration::from_secs(2);
            let one = matches!(result.get_timeout(t), Err(Error::ForeignProcess { .. }));
            let items = matches!(
                imap.next_timeout(t),
                Some(Err(Error::ForeignProcess { .. }))
            );
            let ended = items && imap.next().is_none();
            let code = if one && items && ended { 0 } else { 1 };
            multiproc_sys::exit::exit_now(code)
        }
        nix::unistd::ForkResult::Parent { child } => {
            let status = nix::sys::wait::waitpid(child, None).unwrap();
            assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
        }
    }
    assert!(!result.ready(), "the parent's result is untouched");
}
