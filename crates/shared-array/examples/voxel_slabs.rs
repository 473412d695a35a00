//! Run with: `cargo run --release -p multiproc-shared-array --features ndarray --example voxel_slabs`
//!
//! The tutorial's read/write sharing example (`process_dataset`), with forked processes and
//! no `unsafe`: the input is built with plain slices and frozen (immutable shared memory,
//! which every process may slice), the output is a shared `RawArray`, each child squares one
//! contiguous slab of the 4×4×4 volume into its part of the output, and the parent freezes the
//! output after joining the children and prints both arrays.
//!
//! Why no step needs `unsafe`:
//! - the input is a [`FrozenArray`]: sealed by the kernel, so children read it through a
//!   plain ndarray view while no one can write it;
//! - the output is a [`RawArray`]: each child writes its slab with one atomic range copy
//!   (`write_range`); giving each child its own slab is what makes the *answer* right;
//! - after the children have exited, no process but the parent maps the output, so the kernel
//!   lets it freeze too, and the parent reads it through views without a copy.

use std::fmt::Write as _;

use multiproc_core::Result;
use multiproc_fork::Process;
use multiproc_shared_array::{FrozenArray, LocalArray, RawArray};
use ndarray::{ArrayView3, Axis};

/// Squares `indata` into a new array, one forked process per slab along the first axis.
fn process_dataset(
    shape: (usize, usize, usize),
    indata: &FrozenArray<f64>,
) -> Result<FrozenArray<f64>> {
    let (xlen, ylen, zlen) = shape;
    let outdata = RawArray::<f64>::zeros(indata.len())?;
    let volume = indata.view(shape)?;

    let mut children = Vec::new();
    for x in 0..xlen {
        let src = volume.index_axis(Axis(0), x);
        let out = &outdata;
        let work = move || {
            let squared: Vec<f64> = src.iter().map(|v| v * v).collect();
            out.write_range(x * ylen * zlen, &squared)
                .expect("the slab lies within the output");
            println!("process {} squared slab {x} of {xlen}", std::process::id());
        };
        children.push(
            Process::from_closure(work)
                .name(format!("slab-{x}"))
                .start()?,
        );
    }
    for child in &children {
        child.join()?;
        child.check()?;
    }
    // Every child has exited: no other process maps the output any more.
    Ok(outdata.freeze()?)
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
    // indata = np.array(np.arange(64).reshape((4, 4, 4)), dtype=np.float64)
    let mut indata = LocalArray::<f64>::zeros(64)?;
    for (i, v) in indata.iter_mut().enumerate() {
        *v = i as f64;
    }
    let indata = indata.freeze()?;
    let outdata = process_dataset(shape, &indata)?;

    println!("Input");
    println!("{}", numpy_str(&indata.view(shape)?));
    println!();
    println!("Output");
    println!("{}", numpy_str(&outdata.view(shape)?));

    let expected: Vec<f64> = indata.iter().map(|v| v * v).collect();
    assert_eq!(&outdata[..], expected.as_slice(), "a slab was not squared");
    Ok(())
}
