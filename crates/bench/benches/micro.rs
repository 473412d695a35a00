//! Micro costs, with criterion: `cargo bench -p multiproc-bench --bench micro`.
//!
//! - `dispatch/*`: one `apply` round trip of a trivial task on each backend (a pool made
//!   beforehand), against a call inside a rayon pool;
//! - `lock/*`: an uncontended acquire + release of the threads backend's `Lock`, of the
//!   process-shared `ProcessLock`, and of `std::sync::Mutex` for reference;
//! - `create/*`: making (and dropping) a 1 MiB shared array, and a private `Vec` for
//!   reference;
//! - `queue/*`: `put` + `get` of one item on a `multiproc_ipc::Queue` in one thread;
//! - `options/*`: a fork pool's `apply` and `map` (1000 trivial tasks, `chunksize` 1) with
//!   every builder option off, against the same with `task_timeout` set and with every
//!   option set (`task_timeout`, `retries`, `max_tasks_per_child`, `memory_limit`), in one
//!   run.
//!
//! Spawned workers are this binary started again, so `main` calls `multiproc_spawn::init()`
//! first, and is written out instead of `criterion_main!`.

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use multiproc_core::{Executor, Lock as _};
use multiproc_fork::ForkPool;
use multiproc_ipc::Queue;
use multiproc_shared_array::{FrozenArray, LocalArray, ProcessLock, RawArray};
use multiproc_spawn::SpawnPool;
use multiproc_threads::{Lock, ThreadPool};

/// The trivial task.
fn inc(x: u64) -> u64 {
    x + 1
}

fn short<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g
}

fn dispatch(c: &mut Criterion) {
    let mut g = short(c, "dispatch");
    let rayon = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("rayon pool");
    g.bench_function("rayon install", |b| {
        b.iter(|| rayon.install(|| inc(black_box(1))))
    });
    let threads = ThreadPool::new(2).expect("thread pool");
    g.bench_function("threads apply", |b| {
        b.iter(|| threads.apply(inc, black_box(1)).expect("apply"))
    });
    let fork = ForkPool::new(2).expect("fork pool");
    g.bench_function("fork apply", |b| {
        b.iter(|| fork.apply(inc, black_box(1)).expect("apply"))
    });
    let spawn = SpawnPool::new(2).expect("spawn pool");
    g.bench_function("spawn apply", |b| {
        b.iter(|| spawn.apply(inc, black_box(1)).expect("apply"))
    });
    g.finish();
}

fn locks(c: &mut Criterion) {
    let mut g = short(c, "lock");
    let thread_lock = Lock::new();
    g.bench_function("threads Lock acquire+release", |b| {
        b.iter(|| {
            thread_lock.acquire();
            thread_lock.release().expect("held")
        })
    });
    let process_lock = ProcessLock::new().expect("process lock");
    g.bench_function("ProcessLock acquire+release", |b| {
        b.iter(|| {
            process_lock.acquire().expect("acquire");
            process_lock.release().expect("held")
        })
    });
    let mutex = std::sync::Mutex::new(0u64);
    g.bench_function("std Mutex lock+unlock", |b| {
        b.iter(|| *black_box(&mutex).lock().expect("not poisoned") += 1)
    });
    g.finish();
}

fn create(c: &mut Criterion) {
    const LEN: usize = 1 << 17; // 1 MiB of f64
    let mut g = short(c, "create 1 MiB");
    g.bench_function("Vec zeroed", |b| b.iter(|| black_box(vec![0.0f64; LEN])));
    g.bench_function("RawArray::zeros", |b| {
        b.iter(|| black_box(RawArray::<f64>::zeros(LEN).expect("array")))
    });
    g.bench_function("LocalArray::zeros + share", |b| {
        b.iter(|| black_box(LocalArray::<f64>::zeros(LEN).expect("array").share()))
    });
    let values = vec![1.0f64; LEN];
    g.bench_function("FrozenArray::from_slice", |b| {
        b.iter(|| black_box(FrozenArray::from_slice(&values).expect("array")))
    });
    g.finish();
}

fn queue(c: &mut Criterion) {
    let mut g = short(c, "queue");
    let q = Queue::<u64>::new(0).expect("queue");
    g.bench_function("put+get u64", |b| {
        b.iter(|| {
            q.put(&black_box(7)).expect("put");
            q.get().expect("get")
        })
    });
    let big = Queue::<Vec<u8>>::new(0).expect("queue");
    let item = vec![7u8; 1024];
    g.bench_function("put+get 1 KiB", |b| {
        b.iter(|| {
            big.put(&item).expect("put");
            big.get().expect("get")
        })
    });
    g.finish();
}

fn options(c: &mut Criterion) {
    let mut g = short(c, "options");
    let off = ForkPool::builder().processes(2).build().expect("fork pool");
    let timeout = ForkPool::builder()
        .processes(2)
        .task_timeout(Duration::from_secs(60))
        .build()
        .expect("fork pool");
    let all = ForkPool::builder()
        .processes(2)
        .task_timeout(Duration::from_secs(60))
        .retries(2)
        .max_tasks_per_child(1_000_000)
        .memory_limit(1 << 40)
        .build()
        .expect("fork pool");
    for (name, pool) in [("off", &off), ("task_timeout", &timeout), ("all", &all)] {
        g.bench_function(format!("fork apply, options {name}"), |b| {
            b.iter(|| pool.apply(inc, black_box(1)).expect("apply"))
        });
        g.bench_function(format!("fork map 1000 chunksize=1, options {name}"), |b| {
            b.iter(|| pool.map_chunked(inc, 0..1000u64, 1).expect("map"))
        });
    }
    g.finish();
}

fn main() {
    multiproc_spawn::init();
    let mut c = Criterion::default().configure_from_args();
    dispatch(&mut c);
    locks(&mut c);
    create(&mut c);
    queue(&mut c);
    options(&mut c);
    c.final_summary();
}
