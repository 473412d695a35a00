//! Timing of `Queue` and `Pipe` between processes (a plain timing binary, not criterion):
//!
//! ```text
//! cargo bench -p multiproc-ipc --bench queue
//! ```
//!
//! - Queue put+get of a small value (a `u64`) between two processes, both ways of counting:
//!   *streaming* (a producer puts N items, a forked consumer gets them; time per item), and
//!   *ping-pong* (each side waits for the other's item before putting its own; one put+get is
//!   half a round trip);
//! - the wake-up path: put -> get latency when the getter has waited long enough to sleep
//!   on the futex (median of 300);
//! - the same, uncontended, in one thread (the floor: encoding, locks, ring);
//! - Pipe (`Connection::send`/`recv`) round trip between two processes;
//! - JoinableQueue put+get+task_done in one thread.
//!
//! Every figure is the best of 5 runs. The target: a put+get of a small value between
//! two processes in at most 5 µs.

use std::time::{Duration, Instant};

use multiproc_ipc::{pipe, JoinableQueue, Queue};

const RUNS: usize = 5;
const LONG: Duration = Duration::from_secs(60);

fn best(mut run: impl FnMut() -> f64) -> f64 {
    (0..RUNS).map(|_| run()).fold(f64::INFINITY, f64::min)
}

fn fork(f: impl FnOnce() + Send) -> multiproc_fork::ProcessHandle {
    multiproc_fork::Process::from_closure(f)
        .start()
        .expect("fork")
}

fn finish(p: multiproc_fork::ProcessHandle) {
    p.join_timeout(LONG).expect("join");
    p.check().expect("the child failed");
}

/// ns per item: the parent puts `n` items, a forked child gets them.
fn streaming(n: u64) -> f64 {
    let q = Queue::<u64>::new(0).unwrap();
    let ready = Queue::<u8>::new(0).unwrap();
    let child = {
        let (q, ready) = (q.clone(), ready.clone());
        fork(move || {
            ready.put(&1).unwrap();
            for i in 0..n {
                assert_eq!(q.get_timeout(LONG).unwrap(), i);
            }
            ready.put(&2).unwrap();
        })
    };
    ready.get_timeout(LONG).unwrap();
    let t = Instant::now();
    for i in 0..n {
        q.put(&i).unwrap();
    }
    ready.get_timeout(LONG).unwrap();
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    finish(child);
    ns
}

/// ns per round trip: parent → child on one queue, child → parent on another.
fn ping_pong(n: u64) -> f64 {
    let ping = Queue::<u64>::new(0).unwrap();
    let pong = Queue::<u64>::new(0).unwrap();
    let child = {
        let (ping, pong) = (ping.clone(), pong.clone());
        fork(move || {
            for _ in 0..=n {
                let x = ping.get_timeout(LONG).unwrap();
                pong.put(&x).unwrap();
            }
        })
    };
    // One warm-up exchange: the child is running and both rings are mapped.
    ping.put(&0).unwrap();
    pong.get_timeout(LONG).unwrap();
    let t = Instant::now();
    for i in 0..n {
        ping.put(&i).unwrap();
        assert_eq!(pong.get_timeout(LONG).unwrap(), i);
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    finish(child);
    ns
}

fn mono_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// Median ns from a put to the get that returns it, when the getter has been waiting long
/// enough to be asleep on the futex (past its spin window): the wake-up path.
fn wake_up_latency(n: usize) -> f64 {
    let q = Queue::<u64>::new(0).unwrap();
    let results = Queue::<Vec<u64>>::new(0).unwrap();
    let child = {
        let (q, results) = (q.clone(), results.clone());
        fork(move || {
            let mut lat: Vec<u64> = (0..n)
                .map(|_| {
                    let sent = q.get_timeout(LONG).unwrap();
                    mono_ns() - sent
                })
                .collect();
            lat.sort_unstable();
            results.put(&lat).unwrap();
        })
    };
    for _ in 0..n {
        std::thread::sleep(Duration::from_millis(2));
        q.put(&mono_ns()).unwrap();
    }
    let lat = results.get_timeout(LONG).unwrap();
    finish(child);
    lat[lat.len() / 2] as f64
}

/// ns per round trip over a duplex Pipe.
fn pipe_round_trip(n: u64) -> f64 {
    let (here, there) = pipe(true).unwrap();
    let child = fork(move || {
        for _ in 0..=n {
            let x: u64 = there.recv_timeout(LONG).unwrap();
            there.send(&x).unwrap();
        }
    });
    here.send(&0u64).unwrap();
    here.recv_timeout::<u64>(LONG).unwrap();
    let t = Instant::now();
    for i in 0..n {
        here.send(&i).unwrap();
        assert_eq!(here.recv_timeout::<u64>(LONG).unwrap(), i);
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    finish(child);
    ns
}

fn one_thread(n: u64) -> f64 {
    let q = Queue::<u64>::new(0).unwrap();
    let t = Instant::now();
    for i in 0..n {
        q.put(&i).unwrap();
        assert_eq!(q.get().unwrap(), i);
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn joinable_one_thread(n: u64) -> f64 {
    let q = JoinableQueue::<u64>::new(0).unwrap();
    let t = Instant::now();
    for i in 0..n {
        q.put(&i).unwrap();
        assert_eq!(q.get().unwrap(), i);
        q.task_done().unwrap();
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let stream = best(|| streaming(1_000_000));
    println!("Queue<u64> put+get between 2 processes, streaming: {stream:.0} ns per item");
    let rtt = best(|| ping_pong(100_000));
    println!(
        "Queue<u64> ping-pong between 2 processes: {rtt:.0} ns per round trip = {:.0} ns per put+get",
        rtt / 2.0
    );
    let wake = wake_up_latency(300);
    println!(
        "Queue<u64> put -> get when the getter sleeps on the futex (wake-up path): {wake:.0} ns median"
    );
    let local = best(|| one_thread(1_000_000));
    println!("Queue<u64> put+get in one thread (uncontended floor): {local:.0} ns");
    let joinable = best(|| joinable_one_thread(1_000_000));
    println!("JoinableQueue<u64> put+get+task_done in one thread: {joinable:.0} ns");
    let prtt = best(|| pipe_round_trip(50_000));
    println!(
        "Pipe send+recv of a u64 between 2 processes: {prtt:.0} ns per round trip = {:.0} ns per message",
        prtt / 2.0
    );
    let target = 5_000.0;
    let worst = stream.max(rtt / 2.0);
    println!(
        "target: put+get between processes <= {target:.0} ns: {}",
        if worst <= target { "met" } else { "NOT met" }
    );
}
