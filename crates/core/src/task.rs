//! What may cross into a worker: task functions and their payloads.
//!
//! A task is a plain `fn` item or a non-capturing closure. Such a value is zero-sized: all it
//! is, is code, so a worker process running the same binary can call it knowing only its
//! type. A closure that captures data cannot cross a process boundary that way, so every
//! [`Executor`](crate::Executor) method rejects it **at compile time** with a message that
//! says why (see [`assert_code_only`]).
//!
//! Arguments and results are serde types ([`Payload`]): the Rust form of "must be pickleable".

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A value that can travel to and from a worker: `Serialize + DeserializeOwned + Send + 'static`.
///
/// Implemented for every such type; there is nothing to implement by hand.
pub trait Payload: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> Payload for T {}

/// A one-argument task: a `fn` item or non-capturing closure from `A` to `R`.
///
/// Implemented for every `Fn(A) -> R + Copy + Send + Sync + 'static`; the zero-size rule is
/// checked where the task is submitted.
pub trait Task<A, R>: Fn(A) -> R + Copy + Send + Sync + 'static {}
impl<T, A, R> Task<A, R> for T where T: Fn(A) -> R + Copy + Send + Sync + 'static {}

/// A task taking its arguments unpacked from a tuple, as Python's `starmap` does:
/// `f(a, b, c)` called with `(a, b, c)`. Implemented for functions of 1 to 6 parameters.
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
/// Every [`Executor`](crate::Executor) method calls this, so that one workload compiles for
/// every backend: a capturing closure fails the build (on `cargo build`, as a post-monomorphization
/// error naming this check) instead of failing at run time on a process backend.
///
/// ```compile_fail
/// let captured = vec![1, 2, 3];
/// let task = move |i: usize| captured[i];
/// fn check<F>(_: &F) { multiproc_core::assert_code_only::<F>() }
/// check(&task); // error: a task must be a plain `fn` item or a closure that captures nothing
/// ```
#[inline(always)]
pub const fn assert_code_only<F>() {
    #[allow(clippy::let_unit_value)]
    let () = CodeOnly::<F>::CHECK;
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
    fn fn_items_and_plain_closures_are_code_only() {
        fn check<F>(_: &F) {
            assert_code_only::<F>()
        }
        check(&three);
        check(&|x: u32| x + 1);
    }
}
