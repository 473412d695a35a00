//! The tutorial's `Pool.map` / `starmap` / `apply_async` examples: "crunching" 20 images,
//! where each task waits (the tutorial's `time.sleep(2)`, scaled down by `--wait-scale`) and
//! returns a number — tasks that wait rather than compute, like I/O, on a pool of 16.
//!
//! The tutorial's results are random; here each result is derived from the file name (an
//! FNV-1a hash into the tutorial's range), so that every backend's results can be checked
//! against the serial ones. The wait travels with the arguments, so that a spawned worker
//! (which sets no statics) waits as long as the others.
//!
//! - **map**: `crunchImage(imgfile)` over `['00.nii.gz', ...]`.
//! - **starmap**: `crunchImage(imgfile, modality)` over t1 and t2 images.
//! - **apply_async**: `linear_registration` for every T1 (1 s scaled), then in a second
//!   pool `nonlinear_registration` initialised with each affine (3 s scaled), collecting
//!   every `AsyncResult` with `get`, as the tutorial does.
//!
//! A timed run creates the pool(s), runs the tasks and closes them. The arguments are file
//! names: the only strategy is copy.

use std::time::Duration;

use multiproc_core::{AsyncResult, Executor};
use rayon::prelude::*;

use crate::backend::{Backend, Pool, Strategy};
use crate::runner::{CellId, Runner, Spec};
use crate::{with_pool, Res};

/// A 4×4 affine transformation.
type Affine = [[f64; 4]; 4];

/// FNV-1a of `text`, in `lo..lo + span`.
fn pseudo_random(text: &str, lo: u32, span: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    lo + (h % u64::from(span)) as u32
}

fn wait(us: u64) {
    std::thread::sleep(Duration::from_micros(us));
}

/// `crunchImage(imgfile)`: "load a nifti image, do stuff to it".
fn crunch_image((imgfile, wait_us): (String, u64)) -> u32 {
    wait(wait_us);
    pseudo_random(&imgfile, 1, 99)
}

/// `crunchImage(imgfile, modality)`: t1 results in 1..100, t2 in 100..200.
fn crunch_image_modality(imgfile: String, modality: String, wait_us: u64) -> u32 {
    wait(wait_us);
    if modality == "t1" {
        pseudo_random(&imgfile, 1, 99)
    } else {
        pseudo_random(&imgfile, 100, 100)
    }
}

/// `linear_registration(src, ref)`: an identity affine.
fn linear_registration(_src: String, _ref: String, wait_us: u64) -> Affine {
    wait(wait_us);
    let mut eye = [[0.0; 4]; 4];
    for (i, row) in eye.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    eye
}

/// `nonlinear_registration(src, ref, affine)`: "a non-linear warp field".
fn nonlinear_registration(src: String, _ref: String, affine: Affine, wait_us: u64) -> u32 {
    wait(wait_us);
    pseudo_random(&src, 1, 99) + affine[3][3] as u32
}

const WORKLOAD: &str = "crunch";
const STD: &str = "MNI152_T1_2mm.nii.gz";

/// The three variants' inputs.
struct Inputs {
    images: Vec<(String, u64)>,
    modalities: Vec<(String, String, u64)>,
    t1s: Vec<String>,
    wait_1s: u64,
}

impl Inputs {
    fn new(n: usize, scale: f64) -> Inputs {
        let us = |secs: f64| (secs * scale * 1e6).round() as u64;
        let half = n / 2;
        Inputs {
            images: (0..n)
                .map(|i| (format!("{i:02}.nii.gz"), us(2.0)))
                .collect(),
            modalities: (0..half)
                .map(|i| (format!("t1_{i:02}.nii.gz"), "t1".to_string(), us(2.0)))
                .chain(
                    (0..n - half).map(|i| (format!("t2_{i:02}.nii.gz"), "t2".to_string(), us(2.0))),
                )
                .collect(),
            t1s: (0..n).map(|i| format!("{i:02}_t1.nii.gz")).collect(),
            wait_1s: us(1.0),
        }
    }

    fn map_serial(&self) -> Vec<u32> {
        self.images.iter().cloned().map(crunch_image).collect()
    }

    fn starmap_serial(&self) -> Vec<u32> {
        self.modalities
            .iter()
            .cloned()
            .map(|(f, m, w)| crunch_image_modality(f, m, w))
            .collect()
    }

    fn registration_serial(&self) -> Vec<u32> {
        let affines: Vec<Affine> = self
            .t1s
            .iter()
            .map(|t1| linear_registration(t1.clone(), STD.into(), self.wait_1s))
            .collect();
        self.t1s
            .iter()
            .zip(affines)
            .map(|(t1, aff)| nonlinear_registration(t1.clone(), STD.into(), aff, 3 * self.wait_1s))
            .collect()
    }

    /// The tutorial's two pools of `apply_async` calls.
    fn registration(&self, pool: impl Fn() -> Res<Pool>) -> Res<Vec<u32>> {
        let lin = pool()?;
        let affines = with_pool!(&lin, p => collect(
            self.t1s
                .iter()
                .map(|t1| p.apply_star_async(linear_registration, (t1.clone(), STD.to_string(), self.wait_1s)))
                .collect(),
        ))?;
        lin.finish()?;
        let nonlin = pool()?;
        let warps = with_pool!(&nonlin, p => collect(
            self.t1s
                .iter()
                .zip(affines)
                .map(|(t1, aff)| {
                    p.apply_star_async(
                        nonlinear_registration,
                        (t1.clone(), STD.to_string(), aff, 3 * self.wait_1s),
                    )
                })
                .collect(),
        ))?;
        nonlin.finish()?;
        Ok(warps)
    }
}

/// `[r.get() for r in results]`.
fn collect<T>(pending: Vec<multiproc_core::Result<AsyncResult<T>>>) -> Res<Vec<T>> {
    pending
        .into_iter()
        .map(|r| r.and_then(|r| r.get()).map_err(|e| e.to_string()))
        .collect()
}

fn same(got: &[u32], expected: &[u32]) -> Res<()> {
    if got == expected {
        Ok(())
    } else {
        Err(format!("got {got:?}, serial computed {expected:?}"))
    }
}

/// Measures the three variants on a pool of `--crunch-workers`.
pub(crate) fn run(r: &mut Runner) -> Res<()> {
    let inputs = Inputs::new(r.cfg.images, r.cfg.wait_scale);
    let workers = r.cfg.crunch_workers;
    // The results do not depend on the waits: compute the expected ones without them.
    let instant = Inputs::new(r.cfg.images, 0.0);
    let expected = [
        instant.map_serial(),
        instant.starmap_serial(),
        instant.registration_serial(),
    ];
    let rayon_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()
        .map_err(|e| e.to_string())?;
    for (v, variant) in ["map", "starmap", "apply_async"].into_iter().enumerate() {
        let expected = &expected[v];
        r.measure(
            CellId::new(WORKLOAD, variant, Backend::Serial, Strategy::Direct, None),
            Spec::default(),
            || Ok(()),
            |()| {
                Ok(match v {
                    0 => inputs.map_serial(),
                    1 => inputs.starmap_serial(),
                    _ => inputs.registration_serial(),
                })
            },
            |got| same(got, expected),
        );
        r.measure(
            CellId::new(
                WORKLOAD,
                variant,
                Backend::Rayon,
                Strategy::Direct,
                Some(workers),
            ),
            Spec::default(),
            || Ok(()),
            |()| {
                Ok(rayon_pool.install(|| match v {
                    0 => inputs
                        .images
                        .par_iter()
                        .cloned()
                        .map(crunch_image)
                        .collect(),
                    1 => inputs
                        .modalities
                        .par_iter()
                        .cloned()
                        .map(|(f, m, w)| crunch_image_modality(f, m, w))
                        .collect(),
                    _ => {
                        let affines: Vec<Affine> = inputs
                            .t1s
                            .par_iter()
                            .map(|t1| linear_registration(t1.clone(), STD.into(), inputs.wait_1s))
                            .collect();
                        inputs
                            .t1s
                            .par_iter()
                            .zip(affines)
                            .map(|(t1, aff)| {
                                nonlinear_registration(
                                    t1.clone(),
                                    STD.into(),
                                    aff,
                                    3 * inputs.wait_1s,
                                )
                            })
                            .collect()
                    }
                }))
            },
            |got: &Vec<u32>| same(got, expected),
        );
        for backend in Backend::POOLS {
            for strategy in [Strategy::Inherit, Strategy::Shm] {
                r.not_applicable(
                    CellId::new(WORKLOAD, variant, backend, strategy, Some(workers)),
                    "the arguments are file names: there is no data to share",
                );
            }
            r.measure(
                CellId::new(WORKLOAD, variant, backend, Strategy::Copy, Some(workers)),
                Spec::default(),
                || Ok(()),
                |()| match v {
                    0 | 1 => {
                        let pool = Pool::new(backend, workers)?;
                        let got = with_pool!(&pool, p => if v == 0 {
                            p.map(crunch_image, inputs.images.clone())
                        } else {
                            p.starmap(crunch_image_modality, inputs.modalities.clone())
                        })
                        .map_err(|e| e.to_string())?;
                        pool.finish()?;
                        Ok(got)
                    }
                    _ => inputs.registration(|| Pool::new(backend, workers)),
                },
                |got| same(got, expected),
            );
        }
    }
    Ok(())
}
