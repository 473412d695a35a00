//! How a task crosses into a worker: by its code address, not its data.
//!
//! A task type `F` is zero-sized (checked at compile time by
//! [`assert_code_only`](multiproc_core::assert_code_only)): a value of it *is* just code. For
//! each `(F, A, R)` the pool takes the address of [`run_chunk::<F, A, R>`](run_chunk) — a
//! monomorphised function that decodes a chunk of `A`s, calls `F` on each and encodes the
//! `R`s — and sends it as an offset from [`anchor`], a fixed function of this crate. The
//! worker runs the same binary (a fork of this process, or the same executable started
//! again), so `anchor + offset` is the same function there.

use std::os::fd::OwnedFd;

use multiproc_core::handoff::{collect_fds, provide_fds};
use multiproc_core::{assert_code_only, Payload, Task};

/// Encoded bytes and the file descriptors that travel beside them (see
/// [`multiproc_core::handoff`]).
pub type Encoded = (Vec<u8>, Vec<OwnedFd>);

/// A chunk runner: encoded arguments in, encoded results out (or a decode/encode error).
pub type Trampoline = fn(&[u8], Vec<OwnedFd>) -> Result<Encoded, String>;

/// The fixed point that trampoline offsets are measured from.
#[inline(never)]
pub fn anchor() {}

fn base() -> u64 {
    anchor as fn() as usize as u64
}

/// The offset of `run_chunk::<F, A, R>` from [`anchor`]: what travels in a task frame.
pub fn offset_of<F: Task<A, R>, A: Payload, R: Payload>() -> u64 {
    let t: Trampoline = run_chunk::<F, A, R>;
    (t as usize as u64).wrapping_sub(base())
}

/// Turns an offset received from the pool back into the trampoline.
///
/// # Safety
///
/// `offset` must have been produced by [`offset_of`] in a process running the same binary
/// image as this one (a fork of it, or the same executable file started again, with the
/// same build). Any other value makes the returned pointer dangle, and calling it is
/// undefined behaviour.
pub unsafe fn resolve(offset: u64) -> Trampoline {
    let addr = base().wrapping_add(offset) as usize;
    // SAFETY: by the caller's contract, `addr` is the address of a `Trampoline` function
    // (computed by `offset_of` relative to `anchor` in an identical image), so
    // reinterpreting it as that function pointer type is valid.
    unsafe { std::mem::transmute::<usize, Trampoline>(addr) }
}

/// Makes a value of a zero-sized task type.
fn conjure<F: Copy>() -> F {
    assert_code_only::<F>();
    // SAFETY: `F` is zero-sized (asserted at compile time above), so it has no bytes to
    // initialise and any (empty) bit pattern is its value. It is inhabited: the sender held a
    // value of it. And it carries no invariant a library could rely on: on stable Rust only
    // `fn` items and closures implement `Fn`, and a zero-sized closure captured nothing.
    unsafe { std::mem::zeroed::<F>() }
}

/// Decodes a chunk of `A`s, applies `F` to each, encodes the `R`s.
pub fn run_chunk<F: Task<A, R>, A: Payload, R: Payload>(
    input: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<Encoded, String> {
    let args: Vec<A> = decode(input, fds).map_err(|e| format!("decoding the arguments: {e}"))?;
    let f = conjure::<F>();
    let results: Vec<R> = args.into_iter().map(f).collect();
    encode(&results).map_err(|e| format!("encoding the results: {e}"))
}

/// Encodes `value` with postcard, collecting the descriptors it owns.
pub fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Encoded, postcard::Error> {
    encode_into(value, Vec::new())
}

/// [`encode`] into `buf` (cleared first), reusing its allocation.
pub fn encode_into<T: serde::Serialize + ?Sized>(
    value: &T,
    mut buf: Vec<u8>,
) -> Result<Encoded, postcard::Error> {
    buf.clear();
    let (bytes, fds) = collect_fds(|| postcard::to_extend(value, buf));
    Ok((bytes?, fds))
}

/// Decodes a `T` from `bytes`, giving it the descriptors that came beside them.
pub fn decode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<T, postcard::Error> {
    provide_fds(fds, || postcard::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u32) -> u32 {
        x * 2
    }

    #[test]
    fn a_trampoline_round_trips_through_its_offset() {
        fn offset<F: Task<u32, u32>>(_: F) -> u64 {
            offset_of::<F, u32, u32>()
        }
        let o = offset(double);
        // SAFETY: the offset was produced by offset_of in this very process.
        let t = unsafe { resolve(o) };
        let input = postcard::to_stdvec(&vec![1u32, 2, 3]).unwrap();
        let (bytes, fds) = t(&input, Vec::new()).unwrap();
        assert!(fds.is_empty());
        let out: Vec<u32> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(out, vec![2, 4, 6]);
        assert!(t(b"\xff\xff\xff\xff\xff", Vec::new()).is_err());
    }
}
