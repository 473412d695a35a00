//! What may cross into a worker: task functions and their payloads.
//!
//! A task is a plain `fn` item or a non-capturing closure, taken as a function pointer,
//! [`Task<A, R>`](Task) = `fn(A) -> R`. All a function pointer is, is code, so a worker
//! process running the same binary can call it knowing only where it is in that binary. A
//! closure that captures data cannot cross a process boundary that way, and it cannot become
//! a function pointer either: rustc rejects it while type-checking — in `cargo check` and in
//! the editor, not only in `cargo build` — with "closures can only be coerced to `fn` types
//! if they do not capture any variables", pointing at the captured variable.
//!
//! What to do instead of capturing: pass the data as the task's argument (it is copied to
//! the worker), put data made before the pool in an [`Inherited`](crate::Inherited) value
//! (fork) or send it once through the pool's initializer (spawn), or share it in a shared
//! array (`multiproc-shared-array`). On the threads backend, whose workers share this
//! process's memory, `ThreadPool::map_fn` and `apply_async_fn` take capturing closures.
//!
//! ```compile_fail,E0308
//! # use multiproc_core::{Batch, ChunkSink, Executor, Payload, Result, Task};
//! # struct Inline;
//! # impl Executor for Inline {
//! #   fn processes(&self) -> usize { 1 }
//! #   fn submit<A: Payload, R: Payload>(&self, f: Task<A, R>, b: Batch<A>, s: ChunkSink<R>) -> Result<()> {
//! #     for (i, c) in b.into_chunks() { s.deliver(i, Ok(c.into_iter().map(f).collect())) } Ok(())
//! #   }
//! #   fn close(&self) {} fn join(&self) -> Result<()> { Ok(()) } fn terminate(&self) -> Result<()> { Ok(()) }
//! #   fn join_timeout(&self, _: std::time::Duration) -> Result<bool> { Ok(true) }
//! # }
//! let offset = 10;
//! // error[E0308]: closures can only be coerced to `fn` types if they do not capture any variables
//! let shifted = Inline.map(move |x: u64| x + offset, 0..4);
//! ```
//!
//! The same workload with the data as an argument compiles for every backend:
//!
//! ```
//! # use multiproc_core::{Batch, ChunkSink, Executor, Payload, Result, Task};
//! # struct Inline;
//! # impl Executor for Inline {
//! #   fn processes(&self) -> usize { 1 }
//! #   fn submit<A: Payload, R: Payload>(&self, f: Task<A, R>, b: Batch<A>, s: ChunkSink<R>) -> Result<()> {
//! #     for (i, c) in b.into_chunks() { s.deliver(i, Ok(c.into_iter().map(f).collect())) } Ok(())
//! #   }
//! #   fn close(&self) {} fn join(&self) -> Result<()> { Ok(()) } fn terminate(&self) -> Result<()> { Ok(()) }
//! #   fn join_timeout(&self, _: std::time::Duration) -> Result<bool> { Ok(true) }
//! # }
//! let offset = 10;
//! let shifted = Inline.starmap(|x: u64, offset: u64| x + offset, (0..4).map(|x| (x, offset)))?;
//! assert_eq!(shifted, vec![10, 11, 12, 13]);
//! assert_eq!(Inline.map(|x: u64| x * 2, 0..4)?, vec![0, 2, 4, 6]);
//! # Ok::<(), multiproc_core::Error>(())
//! ```
//!
//! Arguments and results are serde types ([`Payload`]): the Rust form of "must be pickleable".

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A value that can travel to and from a worker: `Serialize + DeserializeOwned + Send + 'static`.
///
/// Implemented for every such type; there is nothing to implement by hand.
pub trait Payload: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> Payload for T {}

/// A one-argument task: a `fn` item or non-capturing closure from `A` to `R`, as a function
/// pointer. Both coerce to it where a pool method expects one; a capturing closure does not,
/// and is a type error at `cargo check` (E0308, "closures can only be coerced to `fn` types if
/// they do not capture any variables"): pass the data as the task's argument instead, put data
/// made before a fork pool in an [`Inherited`](crate::Inherited), or send it once through a
/// pool's initializer.
pub type Task<A, R> = fn(A) -> R;

/// A task taking its arguments unpacked from a tuple, as Python's `starmap` does:
/// `f(a, b, c)` called with `(a, b, c)`. Implemented for functions of 1 to 6 parameters.
///
/// Rust has no function pointer type generic over its number of parameters, so a star task
/// is taken by its own type, which must be zero-sized (a `fn` item or a non-capturing
/// closure). A closure that captures a value that is not `Copy` fails the trait's `Copy`
/// bound, which `cargo check` reports (E0277, "required because it's used within this
/// closure"); one that captures only `Copy` values is refused when the crate is built (see
/// [`assert_code_only`]). This is the one place where the check waits for the build.
///
/// A closure that captures only zero-sized `Copy` values is zero-sized too, and its captures
/// are recreated wherever it runs, a worker process included: do not capture a zero-sized
/// "token" whose existence vouches for something in this process.
///
/// ```compile_fail,E0277
/// # use multiproc_core::{Batch, ChunkSink, Executor, Payload, Result, Task};
/// # struct Inline;
/// # impl Executor for Inline {
/// #   fn processes(&self) -> usize { 1 }
/// #   fn submit<A: Payload, R: Payload>(&self, f: Task<A, R>, b: Batch<A>, s: ChunkSink<R>) -> Result<()> {
/// #     for (i, c) in b.into_chunks() { s.deliver(i, Ok(c.into_iter().map(f).collect())) } Ok(())
/// #   }
/// #   fn close(&self) {} fn join(&self) -> Result<()> { Ok(()) } fn terminate(&self) -> Result<()> { Ok(()) }
/// #   fn join_timeout(&self, _: std::time::Duration) -> Result<bool> { Ok(true) }
/// # }
/// let prefix = String::from("sub-");
/// // error[E0277]: the trait bound `String: Copy` is not satisfied in `{closure}`
/// let names = Inline.starmap(move |a: u32, b: u32| format!("{prefix}{a}-{b}"), [(1, 2)]);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a star task taking `{Args}`",
    label = "starmap needs a function whose parameters are the tuple's fields",
    note = "a star task is a `fn` item or a closure that captures nothing, with one \
            parameter per field of the tuple (1 to 6)"
)]
pub trait StarTask<Args>: Copy + Send + Sync + 'static {
    /// What the function returns.
    type Output;
    /// Calls the function with the tuple's fields as its parameters.
    fn call_star(&self, args: Args) -> Self::Output;
}

macro_rules! impl_star_task {
    ($($arg:ident),+) => {
        impl<Func, Ret, $($arg),+> StarTask<($($arg,)+)> for Func
        where
            Func: Fn($($arg),+) -> Ret + Copy + Send + Sync + 'static,
        {
            type Output = Ret;
            #[allow(non_snake_case)]
            fn call_star(&self, ($($arg,)+): ($($arg,)+)) -> Ret {
                (self)($($arg),+)
            }
        }
    };
}
impl_star_task!(A1);
impl_star_task!(A1, A2);
impl_star_task!(A1, A2, A3);
impl_star_task!(A1, A2, A3, A4);
impl_star_task!(A1, A2, A3, A4, A5);
impl_star_task!(A1, A2, A3, A4, A5, A6);

struct CodeOnly<F>(F);
impl<F> CodeOnly<F> {
    const CHECK: () = assert!(
        std::mem::size_of::<F>() == 0,
        "multiproc: a task must be a plain `fn` item or a closure that captures nothing. \
         Tasks cross into worker processes by their code alone, so captured data cannot go \
         with them. Pass the data as an argument, or share it through an Inherited value or a \
         shared array."
    );
}

/// Rejects, at compile time, a task type that carries data.
///
/// The star forms ([`Executor::starmap`](crate::Executor::starmap),
/// [`apply_star`](crate::Executor::apply_star), ...) call this, so a star task that captures
/// `Copy` values fails the build (on `cargo build`, as a post-monomorphization error naming
/// this check) instead of failing at run time on a process backend. One-argument tasks need
/// no such check: they are function pointers ([`Task`]).
///
/// ```compile_fail,E0080
/// let captured = [1u64, 2, 3];
/// let task = move |i: usize| captured[i];
/// fn check<F>(_: &F) { multiproc_core::assert_code_only::<F>() }
/// check(&task); // error: a task must be a plain `fn` item or a closure that captures nothing
/// ```
#[inline(always)]
pub const fn assert_code_only<F>() {
    #[allow(clippy::let_unit_value)]
    let () = CodeOnly::<F>::CHECK;
}

/// The one-argument task that runs the star task `F` on a tuple: what the pools receive for
/// `starmap` and `apply_star`.
pub(crate) fn star_task<F: StarTask<T>, T>(_f: F) -> Task<T, F::Output> {
    assert_code_only::<F>();
    call_star::<F, T>
}

fn call_star<F: StarTask<T>, T>(args: T) -> F::Output {
    assert_code_only::<F>();
    // SAFETY: `F` is zero-sized (asserted at compile time above), so it has no bytes to
    // initialise and the empty bit pattern is its value. It is inhabited: `star_task` held a
    // value of it. On stable Rust only `fn` items, function pointers and closures implement
    // `Fn`, and a function pointer is not zero-sized; so `F` is a `fn` item or a closure that
    // captured nothing or only zero-sized values, and it is `Copy` (`StarTask` requires it),
    // so those values are `Copy` too: making one more `F` is what copying the one that
    // `star_task` held does. The assumption this rests on, stated in `StarTask`'s docs: a
    // zero-sized value whose existence vouches for something in *this* process (a "token")
    // is not captured by a star task, since in a worker process it stands for its copy there.
    let f = unsafe { std::mem::zeroed::<F>() };
    f.call_star(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three(a: u8, b: u16, c: u32) -> u64 {
        a as u64 + b as u64 + c as u64
    }

    #[test]
    fn star_tasks_unpack_tuples() {
        assert_eq!(three.call_star((1, 2, 3)), 6);
        let six = |a: u8, b: u8, c: u8, d: u8, e: u8, f: u8| a + b + c + d + e + f;
        assert_eq!(six.call_star((1, 1, 1, 1, 1, 1)), 6);
        let one = |a: i32| -a;
        assert_eq!(one.call_star((5,)), -5);
    }

    #[test]
    fn star_tasks_become_one_argument_tasks() {
        let t: Task<(u8, u16, u32), u64> = star_task(three);
        assert_eq!(t((1, 2, 3)), 6);
        let neg = star_task(|a: i32| -a);
        assert_eq!(neg((5,)), -5);
    }

    #[test]
    fn fn_items_and_plain_closures_are_code_only() {
        fn check<F>(_: &F) {
            assert_code_only::<F>()
        }
        check(&three);
        check(&|x: u32| x + 1);
    }
}
