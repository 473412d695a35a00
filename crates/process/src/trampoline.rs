//! How a task crosses into a worker: by its code address, not its data.
//!
//! A task is a function pointer ([`Task<A, R>`](multiproc_core::Task) = `fn(A) -> R`): a
//! value of it *is* just code. For each `(A, R)` the pool also takes the address of
//! `run_chunk::<A, R>` — a monomorphised function that decodes a chunk of `A`s,
//! calls the task on each and encodes the `R`s. Both addresses travel as offsets from
//! [`anchor`], a fixed function of this crate, packed in the frame's `call` word (see
//! [`offset_of`]). The worker runs the same binary (a fork of this process, or the same
//! executable started again), so `anchor + offset` is the same function there.

use std::os::fd::OwnedFd;
use std::sync::Mutex;

use multiproc_core::{Error, Payload, Result, Task};

use crate::codec::{decode_items_fds, Encoded};
use crate::payload::{encode_body, Body, Spare};

/// Encoded results: a byte vector, or a shared-memory buffer from [`crate::bulk::BULK_MIN`]
/// bytes on; and the descriptors they own.
pub(crate) type Results = (Body, Vec<OwnedFd>);

/// A chunk runner: the task's address, encoded arguments in, encoded results out (into a
/// buffer from the worker's spares, or a decode/encode error).
///
/// Unsafe to call: the address must be that of the `fn(A) -> R` the runner was made for.
type Trampoline =
    unsafe fn(usize, &[u8], Vec<OwnedFd>, &Mutex<Spare>) -> std::result::Result<Results, String>;

/// The fixed point that offsets are measured from.
#[inline(never)]
pub fn anchor() {}

fn base() -> usize {
    anchor as fn() as usize
}

/// `addr`'s distance from [`anchor`], if it fits the 32 bits a half of the `call` word has.
fn relative(addr: usize) -> Option<u32> {
    i32::try_from(addr.wrapping_sub(base()) as isize)
        .ok()
        .map(|d| d as u32)
}

fn absolute(half: u32) -> usize {
    base().wrapping_add(half as i32 as isize as usize)
}

/// What travels in a task frame's `call` word for task `f`: the offsets from [`anchor`] of
/// `run_chunk::<A, R>` (high half) and of `f` itself (low half).
///
/// An executable's code lies within 2 GiB of itself (x86-64's and aarch64's default code
/// models require it), so an offset within it fits 32 bits. A function outside it — in a
/// shared library loaded at a different address in another process — is refused with
/// [`Error::InvalidArgument`].
pub fn offset_of<A: Payload, R: Payload>(f: Task<A, R>) -> Result<u64> {
    let runner: Trampoline = run_chunk::<A, R>;
    let far = || {
        Error::invalid(
            "f",
            "the task is not a function of this program's executable (it is more than 2 GiB \
             away from it, in a shared library), so a worker could not find it",
        )
    };
    let run = relative(runner as usize).ok_or_else(far)?;
    let func = relative(f as usize).ok_or_else(far)?;
    Ok((u64::from(run) << 32) | u64::from(func))
}

/// A task received from the pool, ready to run on encoded arguments.
#[derive(Clone, Copy)]
pub struct Call {
    run: Trampoline,
    func: usize,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call").field("func", &self.func).finish()
    }
}

impl Call {
    /// Decodes a chunk of arguments from `input` (with the descriptors that came beside it),
    /// applies the task to each, and encodes the results into a byte vector (with the
    /// descriptors they own) — for transports of their own (a `Process`'s target, the MPI
    /// backend); the pools' workers use the shared-memory path instead.
    pub fn run(&self, input: &[u8], fds: Vec<OwnedFd>) -> std::result::Result<Encoded, String> {
        let (body, fds) = self.run_into(input, fds, &Mutex::new(Spare::default()))?;
        Ok((body.into_bytes(), fds))
    }

    /// Decodes a chunk of arguments from `input` (with the descriptors that came beside it),
    /// applies the task to each, and encodes the results into a buffer from `spare`.
    pub(crate) fn run_into(
        &self,
        input: &[u8],
        fds: Vec<OwnedFd>,
        spare: &Mutex<Spare>,
    ) -> std::result::Result<Results, String> {
        // SAFETY: `resolve`'s contract: `run` is `run_chunk::<A, R>` and `func` the
        // `fn(A) -> R` that `offset_of::<A, R>` packed beside it.
        unsafe { (self.run)(self.func, input, fds, spare) }
    }
}

/// Turns a `call` word received from the pool back into the task it names.
///
/// # Safety
///
/// `call` must have been produced by [`offset_of`] in a process running the same binary
/// image as this one (a fork of it, or the same executable file started again, with the
/// same build). Any other value makes the returned pointers dangle, and running the
/// returned [`Call`] is undefined behaviour.
pub unsafe fn resolve(call: u64) -> Call {
    let run = absolute((call >> 32) as u32);
    let func = absolute(call as u32);
    Call {
        // SAFETY: by the caller's contract, `run` is the address of a `Trampoline`
        // (`run_chunk::<A, R>`, located by `offset_of` relative to `anchor` in an identical
        // image), so reinterpreting it as that function pointer type is valid.
        run: unsafe { std::mem::transmute::<usize, Trampoline>(run) },
        func,
    }
}

/// Decodes a chunk of `A`s, applies the task at `func` to each, encodes the `R`s.
///
/// # Safety
///
/// `func` must be the address of a function of type `fn(A) -> R` in this process.
unsafe fn run_chunk<A: Payload, R: Payload>(
    func: usize,
    input: &[u8],
    fds: Vec<OwnedFd>,
    spare: &Mutex<Spare>,
) -> std::result::Result<Results, String> {
    // SAFETY: by this function's contract `func` is the address of an `fn(A) -> R`; a
    // function pointer has the size and representation of an address.
    let f = unsafe { std::mem::transmute::<usize, Task<A, R>>(func) };
    let args: Vec<A> =
        decode_items_fds(input, fds).map_err(|e| format!("decoding the arguments: {e}"))?;
    let results: Vec<R> = args.into_iter().map(f).collect();
    encode_body(&results, spare).map_err(|e| format!("encoding the results: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u32) -> u32 {
        x * 2
    }

    #[test]
    fn a_trampoline_round_trips_through_its_offset() {
        let o = offset_of(double as Task<u32, u32>).unwrap();
        // SAFETY: the offset was produced by offset_of in this very process.
        let t = unsafe { resolve(o) };
        let input = crate::codec::encode_into(&vec![1u32, 2, 3], Vec::new()).unwrap();
        let spare = Mutex::new(Spare::default());
        let (body, fds) = t.run_into(&input, Vec::new(), &spare).unwrap();
        assert!(fds.is_empty());
        let out: Vec<u32> = crate::codec::take_from_bytes(body.as_slice()).unwrap().0;
        assert_eq!(out, vec![2, 4, 6]);
        assert!(t.run(b"\xff\xff\xff\xff\xff", Vec::new()).is_err());
        // Two tasks of one type share the runner and differ in the function half.
        let p = offset_of((|x: u32| x + 1) as Task<u32, u32>).unwrap();
        assert_eq!(p >> 32, o >> 32);
        // SAFETY: as above.
        let out = unsafe { resolve(p) }
            .run_into(&input, Vec::new(), &spare)
            .unwrap()
            .0;
        assert_eq!(
            crate::codec::take_from_bytes::<Vec<u32>>(out.as_slice())
                .unwrap()
                .0,
            vec![2, 3, 4]
        );
    }
}
