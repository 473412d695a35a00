//! `Queue` and `Pipe` between processes, with criterion:
//!
//! ```text
//! cargo bench -p multiproc-ipc --bench queue
//! cargo bench -p multiproc-ipc --bench queue -- --quick      # a few seconds
//! ```
//!
//! - `queue between 2 processes/streaming`: a producer puts `u64`s, a forked consumer gets
//!   them; time per item;
//! - `queue between 2 processes/ping-pong`: each side waits for the other's item before
//!   putting its own; time per round trip (two put+get pairs);
//! - `queue wake-up/put to get, getter asleep`: from a put to the get that returns it, when
//!   the getter has waited long enough to sleep on the futex (past its spin window);
//! - `queue in one thread/*`: put+get (and put+get+task_done on a `JoinableQueue`) with no
//!   other process: the floor (encoding, locks, ring);
//! - `pipe between 2 processes/round trip`: `Connection::send`/`recv` of a `u64` there and
//!   back (two messages).
//!
//! Each cross-process bench forks one partner for all of its samples; a sample tells the
//! partner how many iterations it is, and is timed by `iter_custom` from a handshake on.
//! The target: a put+get of a small value between two processes in at most 5 µs (half a
//! ping-pong round trip, and a streaming item).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use multiproc_fork::{Process, ProcessHandle};
use multiproc_ipc::{pipe, Connection, JoinableQueue, Queue};

const LONG: Duration = Duration::from_secs(60);
/// The count that tells a partner to exit.
const STOP: u64 = u64::MAX;

fn fork<'a>(f: impl FnOnce() + Send + 'a) -> ProcessHandle {
    Process::from_closure(f).start().expect("fork")
}

fn finish(p: ProcessHandle) {
    p.join_timeout(LONG).expect("join");
    p.check().expect("the partner process failed");
}

fn get<T: serde::de::DeserializeOwned + 'static>(q: &Queue<T>) -> T {
    q.get_timeout(LONG).expect("get")
}

fn between_processes(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue between 2 processes");
    g.throughput(Throughput::Elements(1));

    // Streaming: the partner gets `n` items per sample, announced on `control`.
    let (items, control, ready) = (
        Queue::<u64>::new(0).unwrap(),
        Queue::<u64>::new(0).unwrap(),
        Queue::<u8>::new(0).unwrap(),
    );
    let partner = fork(|| loop {
        let n = get(&control);
        if n == STOP {
            break;
        }
        ready.put(&1).unwrap();
        for i in 0..n {
            assert_eq!(get(&items), i);
        }
        ready.put(&2).unwrap();
    });
    g.bench_function("streaming (per item)", |b| {
        b.iter_custom(|n| {
            control.put(&n).unwrap();
            get(&ready);
            let t = Instant::now();
            for i in 0..n {
                items.put(&i).unwrap();
            }
            get(&ready);
            t.elapsed()
        })
    });
    control.put(&STOP).unwrap();
    finish(partner);

    // Ping-pong: the partner echoes every item; STOP ends it.
    let (ping, pong) = (Queue::<u64>::new(0).unwrap(), Queue::<u64>::new(0).unwrap());
    let partner = fork(|| loop {
        let x = get(&ping);
        pong.put(&x).unwrap();
        if x == STOP {
            break;
        }
    });
    g.bench_function("ping-pong (per round trip)", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            for i in 0..n {
                ping.put(&i).unwrap();
                assert_eq!(get(&pong), i);
            }
            t.elapsed()
        })
    });
    ping.put(&STOP).unwrap();
    assert_eq!(get(&pong), STOP);
    finish(partner);
    g.finish();
}

fn mono_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// How long the putter waits before each put, so that the getter has gone to sleep on the
/// futex: 25 times its spin window.
const LET_IT_SLEEP: Duration = Duration::from_micros(500);

fn wake_up(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue wake-up");
    // Each iteration also waits LET_IT_SLEEP, which the measurement leaves out: criterion
    // plans iteration counts from the measured time alone, so this group sets times (which
    // the command line does not override) that keep it to a few hundred to a few thousand
    // iterations, a few seconds at most.
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(10))
        .measurement_time(Duration::from_millis(100));
    let (items, control, total) = (
        Queue::<u64>::new(0).unwrap(),
        Queue::<u64>::new(0).unwrap(),
        Queue::<u64>::new(0).unwrap(),
    );
    // The partner gets `n` timestamps and sends back the sum of their latencies.
    let partner = fork(|| loop {
        let n = get(&control);
        if n == STOP {
            break;
        }
        let sum: u64 = (0..n)
            .map(|_| {
                let sent = get(&items);
                mono_ns() - sent
            })
            .sum();
        total.put(&sum).unwrap();
    });
    g.bench_function("put to get, getter asleep", |b| {
        b.iter_custom(|n| {
            control.put(&n).unwrap();
            for _ in 0..n {
                std::thread::sleep(LET_IT_SLEEP);
                items.put(&mono_ns()).unwrap();
            }
            Duration::from_nanos(get(&total))
        })
    });
    control.put(&STOP).unwrap();
    finish(partner);
    g.finish();
}

fn one_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue in one thread");
    let q = Queue::<u64>::new(0).unwrap();
    g.bench_function("Queue put+get", |b| {
        b.iter(|| {
            q.put(black_box(&7)).unwrap();
            q.get().unwrap()
        })
    });
    let q = JoinableQueue::<u64>::new(0).unwrap();
    g.bench_function("JoinableQueue put+get+task_done", |b| {
        b.iter(|| {
            q.put(black_box(&7)).unwrap();
            let x = q.get().unwrap();
            q.task_done().unwrap();
            x
        })
    });
    g.finish();
}

fn pipes(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipe between 2 processes");
    let (here, there) = pipe(true).unwrap();
    let echo = |end: Connection| loop {
        let x: u64 = end.recv_timeout(LONG).expect("recv");
        end.send(&x).expect("send");
        if x == STOP {
            break;
        }
    };
    let partner = fork(move || echo(there));
    g.bench_function("round trip (2 messages)", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            for i in 0..n {
                here.send(&i).unwrap();
                assert_eq!(here.recv_timeout::<u64>(LONG).unwrap(), i);
            }
            t.elapsed()
        })
    });
    here.send(&STOP).unwrap();
    assert_eq!(here.recv_timeout::<u64>(LONG).unwrap(), STOP);
    finish(partner);
    g.finish();
}

// Written out instead of `criterion_group!`/`criterion_main!`, whose generated function has
// no documentation (the workspace denies `missing_docs`).
fn main() {
    let mut c = Criterion::default().configure_from_args();
    between_processes(&mut c);
    wake_up(&mut c);
    one_thread(&mut c);
    pipes(&mut c);
    c.final_summary();
}
