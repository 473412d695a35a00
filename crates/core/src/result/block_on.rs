//! [`block_on`]: the smallest executor, for awaiting results without an async runtime.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// Runs `future` to completion on this thread, parking it while the future waits: the
/// smallest executor, for code that awaits a pool's results without an async runtime (and
/// for this crate's examples). Any runtime works as well.
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
