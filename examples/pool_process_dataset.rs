//! Run with: `cargo run --release --features fork,spawn,shared-array --example pool_process_dataset`
//!
//! Tutorial: "Read/write sharing" — `process_dataset` squares every voxel of a 3-D image in
//! a pool of 8 worker processes, reading from and writing to shared memory.
//!
//! (`MULTIPROC_START_METHOD=spawn` for spawned workers; fork by default)
//!
//! Inherited memory is copy-on-write: what a worker writes there stays in the worker (see
//! `fork_copy_on_write`). So the input and output live in [`RawArray`]s — memory mapped
//! *shared*. The tutorial hands them to the workers as module-level globals made before the
//! pool, which only fork can do. Here they go through the pool's initializer (Python's
//! `Pool(initializer=..., initargs=(indata, outdata))`, the way that works with every start
//! method): each worker receives the two arrays once — as file descriptors of the same shared
//! memory, not as copies — and keeps them in its `static`s. Each job then writes its own
//! voxels of the output, and the parent sees them.
//!
//! Two ways to split the work, run one after the other:
//!
//! 1. the tutorial's: lists of voxel coordinates from `np.meshgrid`, 8 lists (and the
//!    remainder) — each job loads and stores voxel by voxel;
//! 2. contiguous slabs: each job gets a `(start, len)` range and copies it in and out with
//!    `read_range` / `write_range`.
//!
//! `load`/`store`/`read_range`/`write_range` are atomic accesses, sound whatever other
//! processes do; giving each job different voxels is what makes the result right.

use multiproc::prelude::*;
use multiproc::shared_array::RawArray;
use multiproc::Inherited;
use multiproc::Pool;

/// `(xlen, ylen, zlen)`
type Shape = (usize, usize, usize);

/// Voxel coordinates: `(xs, ys, zs)`, three lists of the same length.
type Indices = (Vec<usize>, Vec<usize>, Vec<usize>);

/// The tutorial's `process_chunk.input_data`: shared memory, set in each worker by [`share`].
static INDATA: Inherited<RawArray<f64>> = Inherited::new("INDATA");
/// The tutorial's `process_chunk.output_data`.
static OUTDATA: Inherited<RawArray<f64>> = Inherited::new("OUTDATA");

/// The pool's initializer: runs once in each worker, with the arrays the parent passed.
fn share((indata, outdata): (RawArray<f64>, RawArray<f64>)) {
    INDATA.set(indata).expect("each worker is initialised once");
    OUTDATA
        .set(outdata)
        .expect("each worker is initialised once");
}

/// Number of worker processes.
const NPROCS: usize = 8;

/// `outdata[idxs] = indata[idxs] ** 2` for the voxels `idxs`, in an array of `shape` stored
/// in C order.
///
/// A job that fails panics: the pool reports it as `Error::TaskPanicked` with the message.
fn process_chunk(shape: Shape, (xs, ys, zs): Indices) {
    let indata = INDATA.get().expect("INDATA is set by the initializer");
    let outdata = OUTDATA.get().expect("OUTDATA is set by the initializer");
    let (_, ylen, zlen) = shape;
    for ((x, y), z) in xs.into_iter().zip(ys).zip(zs) {
        let i = (x * ylen + y) * zlen + z;
        let v = indata.load(i).expect("voxel within the array");
        outdata.store(i, v * v).expect("voxel within the array");
    }
}

/// The same for `len` voxels from `start`, copied in and out in one go.
fn process_slab(start: usize, len: usize) {
    let indata = INDATA.get().expect("INDATA is set by the initializer");
    let outdata = OUTDATA.get().expect("OUTDATA is set by the initializer");
    let mut slab = vec![0.0; len];
    indata
        .read_range(start, &mut slab)
        .expect("slab within the array");
    for v in &mut slab {
        *v *= *v;
    }
    outdata
        .write_range(start, &slab)
        .expect("slab within the array");
}

/// The shared input and output (steps 1–3 of the tutorial's `process_dataset`).
struct Dataset {
    indata: RawArray<f64>,
    outdata: RawArray<f64>,
}

impl Dataset {
    /// Creates the shared input and output and copies the input in. The output starts as NaN
    /// ("not computed"), so that a voxel no job wrote cannot pass for a correct zero.
    fn new(data: &[f64]) -> multiproc::Result<Dataset> {
        Ok(Dataset {
            indata: RawArray::from_slice(data)?,
            outdata: RawArray::from_slice(&vec![f64::NAN; data.len()])?,
        })
    }

    /// A pool of `NPROCS` workers, each given both arrays once by the initializer.
    fn pool(&self) -> multiproc::Result<Pool> {
        let arrays = (self.indata.try_clone()?, self.outdata.try_clone()?);
        Pool::with_initializer(NPROCS, share, &arrays)
    }
}

/// Steps 4–5, the tutorial's way: lists of voxel coordinates, one per job.
fn process_dataset_by_indices(ds: &Dataset, shape: Shape) -> multiproc::Result<Vec<f64>> {
    let (xlen, ylen, zlen) = shape;
    let size = xlen * ylen * zlen;

    // Number of voxels to be computed by each worker process.
    let nvox = size / NPROCS;

    // Generate coordinates for every voxel in the image, as `np.meshgrid(arange(xlen),
    // arange(ylen), arange(zlen))` does: its default 'xy' indexing makes arrays of shape
    // (ylen, xlen, zlen), so the flattened order runs over y, then x, then z.
    let (mut xs, mut ys, mut zs) = (Vec::new(), Vec::new(), Vec::new());
    for y in 0..ylen {
        for x in 0..xlen {
            for z in 0..zlen {
                xs.push(x);
                ys.push(y);
                zs.push(z);
            }
        }
    }

    // Each job gets a list of indices: nvox voxels for each of NPROCS jobs, plus a last job
    // for whatever is left over (here nothing, as in the tutorial).
    let part =
        |v: &[usize], i: usize| v[(nvox * i).min(size)..(nvox * i + nvox).min(size)].to_vec();
    let rest = |v: &[usize]| v[nvox * NPROCS..].to_vec();
    let mut args: Vec<(Shape, Indices)> = (0..NPROCS)
        .map(|i| (shape, (part(&xs, i), part(&ys, i), part(&zs, i))))
        .collect();
    args.push((shape, (rest(&xs), rest(&ys), rest(&zs))));

    // Create a pool of worker processes and run the jobs.
    let pool = ds.pool()?;
    pool.starmap(process_chunk, args)?;
    Ok(ds.outdata.to_vec())
}

/// Steps 4–5 with contiguous slabs: one `(start, len)` range per job.
fn process_dataset_by_slabs(ds: &Dataset, shape: Shape) -> multiproc::Result<Vec<f64>> {
    let size = shape.0 * shape.1 * shape.2;
    let slab = size.div_ceil(NPROCS);
    let args: Vec<(usize, usize)> = (0..size)
        .step_by(slab)
        .map(|start| (start, slab.min(size - start)))
        .collect();

    let pool = ds.pool()?;
    pool.starmap(process_slab, args)?;
    Ok(ds.outdata.to_vec())
}

/// Prints a 3-D array of `shape` (C order) the way numpy does with `suppress=True`.
fn numpy_str(values: &[f64], (_, ylen, zlen): Shape) -> String {
    let fmt = |v: f64| {
        if v.fract() == 0.0 && v.abs() < 1e16 {
            format!("{v:.0}.")
        } else {
            format!("{v}")
        }
    };
    let width = values.iter().map(|&v| fmt(v).len()).max().unwrap_or(1);
    let planes: Vec<String> = values
        .chunks(ylen * zlen)
        .map(|plane| {
            let rows: Vec<String> = plane
                .chunks(zlen)
                .map(|row| {
                    let cells: Vec<String> =
                        row.iter().map(|&v| format!("{:>width$}", fmt(v))).collect();
                    format!("[{}]", cells.join(" "))
                })
                .collect();
            format!("[{}]", rows.join("\n  "))
        })
        .collect();
    format!("[{}]", planes.join("\n\n "))
}

fn main() -> multiproc::Result<()> {
    multiproc::init(); // first: a spawned worker runs from here and never returns
    println!("Start method: {}", multiproc::get_start_method()?);
    // indata = np.array(np.arange(64).reshape((4, 4, 4)), dtype=np.float64)
    let shape = (4, 4, 4);
    let data: Vec<f64> = (0..64).map(f64::from).collect();
    let expected: Vec<f64> = data.iter().map(|v| v * v).collect();

    let ds = Dataset::new(&data)?;

    println!("Input");
    println!("{}", numpy_str(&data, shape));

    let by_indices = process_dataset_by_indices(&ds, shape)?;
    println!();
    println!("Output (voxel index lists, as in the tutorial)");
    println!("{}", numpy_str(&by_indices, shape));

    // Start the second run from a fresh output. This is shared memory: the parent's write is
    // seen by the next pool's workers (and would be by running ones too).
    ds.outdata.write_range(0, &vec![f64::NAN; data.len()])?;
    let by_slabs = process_dataset_by_slabs(&ds, shape)?;
    println!();
    println!("Output (contiguous slabs)");
    println!("{}", numpy_str(&by_slabs, shape));

    for (name, output) in [("index lists", &by_indices), ("slabs", &by_slabs)] {
        if *output != expected {
            eprintln!("wrong output with {name}: some voxels were not squared (or not written)");
            std::process::exit(1);
        }
    }
    println!();
    println!("Both outputs equal the input squared: every job's writes reached the parent.");
    Ok(())
}
