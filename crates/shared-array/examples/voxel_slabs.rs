//! The tutorial's read/write sharing example (`process_dataset`), with forked processes:
//! the input and output live in `RawArray`s made before the fork, each child squares one
//! contiguous slab of the 4×4×4 volume into its own part of the output, and the parent prints
//! both arrays after joining the children.
//!
//! ```text
//! cargo run -p multiproc-shared-array --example voxel_slabs
//! ```
//!
//! Why this is sound: the output is split with `chunks_mut` into disjoint slabs *before* the
//! fork, each child writes only its slab, the input is only read, and the parent looks at the
//! output only after every child has exited. That is the obligation that `fork` (an `unsafe`
//! call) puts on whoever shares a `RawArray` with another process.

use std::fmt::Write as _;

use multiproc_core::{Error, ExitCause, Result};
use multiproc_shared_array::RawArray;
use ndarray::{ArrayView3, ArrayViewMut2, Axis};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// Forks a child that runs `work` and exits (0, or 1 if it panicked).
///
/// # Safety
///
/// Call from a single-threaded process (or accept what a child of a multithreaded fork may
/// not do); `work` must touch only memory that no other process uses while the child runs.
unsafe fn fork_worker(work: impl FnOnce()) -> Result<Pid> {
    // SAFETY: the caller's contract; the child runs `work` and `_exit`s, never returning.
    match unsafe { fork() }.map_err(|e| Error::Io(e.into()))? {
        ForkResult::Child => {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).is_ok();
            // SAFETY: ends the child without running the parent's destructors twice.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        ForkResult::Parent { child } => Ok(child),
    }
}

/// Waits for a child; a failure becomes `Error::WorkerDied`.
fn join(pid: Pid) -> Result<()> {
    loop {
        match waitpid(pid, None).map_err(|e| Error::Io(e.into()))? {
            WaitStatus::Exited(_, 0) => return Ok(()),
            WaitStatus::Exited(_, code) => {
                return Err(Error::WorkerDied {
                    pid: pid.as_raw() as u32,
                    cause: ExitCause::Code(code),
                })
            }
            WaitStatus::Signaled(_, sig, _) => {
                return Err(Error::WorkerDied {
                    pid: pid.as_raw() as u32,
                    cause: ExitCause::Signal(sig as i32),
                })
            }
            _ => continue,
        }
    }
}

/// Squares `indata` into `outdata`, one forked process per slab along the first axis.
fn process_dataset(shape: (usize, usize, usize), input: &[f64]) -> Result<RawArray<f64>> {
    let (xlen, ylen, zlen) = shape;
    let indata = RawArray::from_slice(input)?;
    let mut outdata = RawArray::<f64>::zeros(indata.len())?;
    let volume = indata.view(shape)?;

    let mut children = Vec::new();
    for (x, slab) in outdata.as_mut_slice().chunks_mut(ylen * zlen).enumerate() {
        let src = volume.index_axis(Axis(0), x);
        let work = move || {
            let mut dst = ArrayViewMut2::from_shape((ylen, zlen), slab).expect("a slab");
            dst.zip_mut_with(&src, |o, &i| *o = i * i);
            println!("process {} squared slab {x} of {xlen}", std::process::id());
        };
        // SAFETY: this example is single-threaded; each child writes only its own slab (the
        // chunks are disjoint), reads only the input, which nobody writes; the parent reads
        // the output only after joining every child below.
        children.push(unsafe { fork_worker(work) }?);
    }
    for pid in children {
        join(pid)?;
    }
    Ok(outdata)
}

/// Formats a 3-D array the way numpy prints it with `suppress=True`.
fn numpy_str(a: &ArrayView3<'_, f64>) -> String {
    let fmt = |v: f64| {
        if v.fract() == 0.0 && v.abs() < 1e16 {
            format!("{v:.0}.")
        } else {
            format!("{v}")
        }
    };
    let width = a.iter().map(|&v| fmt(v).len()).max().unwrap_or(1);
    let mut s = String::from("[");
    for (i, plane) in a.outer_iter().enumerate() {
        if i > 0 {
            s.push_str("\n\n ");
        }
        s.push('[');
        for (j, row) in plane.outer_iter().enumerate() {
            if j > 0 {
                s.push_str("\n  ");
            }
            s.push('[');
            let cells: Vec<String> = row.iter().map(|&v| format!("{:>width$}", fmt(v))).collect();
            let _ = write!(s, "{}]", cells.join(" "));
        }
        s.push(']');
    }
    s.push(']');
    s
}

fn main() -> Result<()> {
    let shape = (4, 4, 4);
    let input: Vec<f64> = (0..64).map(f64::from).collect();
    let outdata = process_dataset(shape, &input)?;

    let indata = RawArray::from_slice(&input)?;
    println!("Input");
    println!("{}", numpy_str(&indata.view(shape)?));
    println!();
    println!("Output");
    println!("{}", numpy_str(&outdata.view(shape)?));

    let expected: Vec<f64> = input.iter().map(|v| v * v).collect();
    assert_eq!(
        outdata.as_slice(),
        expected.as_slice(),
        "a slab was not squared"
    );
    Ok(())
}
