//! Micro costs, with criterion: `cargo bench -p multiproc-bench --bench micro`.
//!
//! - `dispatch/*`: one `apply` round trip of a trivial task on each backend (a pool made
//!   beforehand), against a call inside a rayon pool;
//! - `lock/*`: an uncontended acquire + release of each family's `Lock` and `RLock` (the
//!   threads backend's and the process-shared one), and of `std::sync::Mutex` for reference;
//!   `set` + `is_set` (an event already set) and `set` + `clear` (a real change each time) of
//!   each `Event`, `acquire` + `release` of each `Semaphore`, and making (and dropping) a
//!   `Lock` of each family;
//! - `create/*`: making (and dropping) a 1 MiB shared array, and a private `Vec` for
//!   reference;
//! - `queue/*`: `put` + `get` of one item on a `multiproc_ipc::Queue` in one thread;
//! - `options/*`: a fork pool's `apply` and `map` (1000 trivial tasks, `chunksize` 1) with
//!   every builder option off, against the same with `task_timeout` set and with every
//!   option set (`task_timeout`, `retries`, `max_tasks_per_child`, `memory_limit`), in one
//!   run;
//! - `rtt/*`: the limit of a round trip: 8 bytes written to a forked process over a Unix
//!   socket and read back (both sides blocking in `read`), beside a fork and a spawn pool's
//!   `apply` of a trivial task, in one run, so that their ratio is measured on one machine
//!   state.
//!
//! Spawned workers are this binary started again, so `main` calls `multiproc_spawn::init()`
//! first, and is written out instead of `criterion_main!`.

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use criterion::Criterion;
use multiproc_core::{Event as _, Executor, Lock as _, Semaphore as _};
use multiproc_fork::{ForkPool, Process};
use multiproc_ipc::Queue;
use multiproc_shared_array::{
    FrozenArray, LocalArray, ProcessEvent, ProcessLock, ProcessRLock, ProcessSemaphore, RawArray,
};
use multiproc_spawn::SpawnPool;
use multiproc_threads::{Event, Lock, RLock, Semaphore, ThreadPool};

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
    let thread_rlock = RLock::new();
    g.bench_function("threads RLock acquire+release", |b| {
        b.iter(|| {
            thread_rlock.acquire();
            thread_rlock.release().expect("held")
        })
    });
    let process_rlock = ProcessRLock::new().expect("process rlock");
    g.bench_function("ProcessRLock acquire+release", |b| {
        b.iter(|| {
            process_rlock.acquire().expect("acquire");
            process_rlock.release().expect("held")
        })
    });
    let thread_event = Event::new();
    g.bench_function("threads Event set+is_set", |b| {
        b.iter(|| {
            thread_event.set();
            black_box(thread_event.is_set())
        })
    });
    let process_event = ProcessEvent::new().expect("process event");
    g.bench_function("ProcessEvent set+is_set", |b| {
        b.iter(|| {
            process_event.set().expect("set");
            black_box(process_event.is_set())
        })
    });
    g.bench_function("threads Event set+clear", |b| {
        b.iter(|| {
            thread_event.set();
            thread_event.clear()
        })
    });
    g.bench_function("ProcessEvent set+clear", |b| {
        b.iter(|| {
            process_event.set().expect("set");
            process_event.clear().expect("clear")
        })
    });
    let thread_sem = Semaphore::new(1);
    g.bench_function("threads Semaphore acquire+release", |b| {
        b.iter(|| {
            thread_sem.acquire();
            thread_sem.release(1).expect("unbounded")
        })
    });
    let process_sem = ProcessSemaphore::new(1).expect("process semaphore");
    g.bench_function("ProcessSemaphore acquire+release", |b| {
        b.iter(|| {
            process_sem.acquire().expect("acquire");
            process_sem.release(1).expect("unbounded")
        })
    });
    g.bench_function("threads Lock new+drop", |b| {
        b.iter(|| black_box(Lock::new()))
    });
    g.bench_function("ProcessLock new+drop", |b| {
        b.iter(|| black_box(ProcessLock::new().expect("process lock")))
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

/// A raw round trip: `echo` (a forked process) reads 8 bytes and writes them back until its
/// end of the socket closes; the parent writes 8 bytes and reads them back.
fn rtt(c: &mut Criterion) {
    let mut g = short(c, "rtt");
    let (mut ours, mut theirs) = UnixStream::pair().expect("socket pair");
    // The closure (and with it this process's copy of `theirs`) is dropped here once the
    // child runs; the child's copy of `ours` is closed by nothing, so the end is signalled
    // with `shutdown` below.
    let echo = Process::from_closure(move || {
        let mut word = [0u8; 8];
        while theirs.read_exact(&mut word).is_ok() {
            if theirs.write_all(&word).is_err() {
                break;
            }
        }
    })
    .start()
    .expect("echo process");
    g.bench_function("raw unix socket", |b| {
        let mut word = [0u8; 8];
        b.iter(|| {
            ours.write_all(&black_box(7u64).to_le_bytes())
                .expect("write");
            ours.read_exact(&mut word).expect("read");
            u64::from_le_bytes(word)
        })
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
    ours.shutdown(std::net::Shutdown::Both).expect("shutdown");
    echo.join().expect("echo ends");
}

fn main() {
    multiproc_spawn::init();
    let mut c = Criterion::default().configure_from_args();
    dispatch(&mut c);
    locks(&mut c);
    create(&mut c);
    queue(&mut c);
    options(&mut c);
    rtt(&mut c);
    c.final_summary();
}
