//! [`forward_executor!`](crate::forward_executor): a backend's pool type as the shared
//! [`ProcessPool`](crate::ProcessPool) under its own name.

/// Implements [`Executor`](multiproc_core::Executor) for a backend's pool type, a struct whose
/// field `inner` is a [`ProcessPool`](crate::ProcessPool), by forwarding every method to it — so
/// each process backend's pool is the one shared machinery under its own name.
#[macro_export]
macro_rules! forward_executor {
    ($pool:ty) => {
        impl $crate::__private::Executor for $pool {
            fn processes(&self) -> usize {
                $crate::__private::Executor::processes(&self.inner)
            }

            fn shows_progress(&self) -> bool {
                $crate::__private::Executor::shows_progress(&self.inner)
            }

            fn submit<A, R>(
                &self,
                f: $crate::__private::Task<A, R>,
                batch: $crate::__private::Batch<A>,
                sink: $crate::__private::ChunkSink<R>,
            ) -> $crate::__private::Result<()>
            where
                A: $crate::__private::Payload,
                R: $crate::__private::Payload,
            {
                $crate::__private::Executor::submit(&self.inner, f, batch, sink)
            }

            fn close(&self) {
                $crate::__private::Executor::close(&self.inner)
            }

            fn join(&self) -> $crate::__private::Result<()> {
                $crate::__private::Executor::join(&self.inner)
            }

            fn join_timeout(
                &self,
                timeout: ::std::time::Duration,
            ) -> $crate::__private::Result<bool> {
                $crate::__private::Executor::join_timeout(&self.inner, timeout)
            }

            fn terminate(&self) -> $crate::__private::Result<()> {
                $crate::__private::Executor::terminate(&self.inner)
            }
        }
    };
}
