//! The threads backend against core's conformance suites.

use multiproc_core::testing::ThreadHarness;
use multiproc_threads::{ThreadPool, ThreadSync};

multiproc_core::executor_conformance!(ThreadPool::new);
multiproc_core::sync_conformance!(ThreadSync, ThreadHarness);

/// Python's `BoundedSemaphore(1)`: one release too many is an error naming the bound, and the
/// value stays 1 (it used to be a plain `Semaphore` that went to 2).
#[test]
fn a_bounded_semaphore_refuses_a_release_above_its_bound() {
    use multiproc_threads::BoundedSemaphore;
    let s = BoundedSemaphore::new(1);
    let err = s
        .release(1)
        .map(|()| s.value())
        .expect_err("released above the bound of 1; value now");
    assert!(s.is_bounded());
    match err {
        multiproc_core::Error::InvalidArgument { name: "n", reason } => {
            assert!(reason.contains("bound of 1"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.value(), 1);
    assert!(s.try_acquire());
    s.release(1).unwrap();
    assert_eq!(s.value(), 1);
}
