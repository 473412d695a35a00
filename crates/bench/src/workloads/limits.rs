//! The limit rows: what this machine allows, measured in the same run as the rows they bound
//! (see `limits.rs` for how a row declares its limit).
//!
//! - **read bandwidth**: rayon summing `size_mb` MiB of warm f64 (already faulted in, as the
//!   sum's data is), at 1 thread and at every worker count of the run;
//! - **memcpy**: copying the same buffer into another warm one, at 1 thread and at each
//!   worker count;
//! - **fault in fresh shm pages**: a fresh shared array of `size_mb` MiB, 128 at most (what
//!   the library's `RawArray::zeros` makes), and one write per 4 KiB page; the rate column is
//!   per page (the report's limits line gives it per 500 MiB too);
//! - **fault in fresh heap pages**: a fresh heap allocation of the same size (glibc gives one
//!   this large its own fresh mapping) and one write per page: what a vector built or decoded
//!   in the timed run pays before any byte of it is copied;
//! - **map resident shm pages**: the same size of shared memory, filled beforehand (its
//!   pages exist), mapped again and read one value per page: what a fresh worker pays to
//!   fault in a shared array that the parent made;
//! - **Unix socket round trip**: one byte to another process (this binary started again as
//!   an echo peer) and back, over a socket pair, one trip after the other;
//! - **fork, exit and reap**: forking as many children as the run's largest worker count,
//!   each calling `_exit` at once, and reaping them: the least a fork pool's start-up and
//!   shutdown cost (the rate column is per child);
//! - **spawn, exit and reap**: the same number of children that run this binary again (as
//!   an echo peer whose socket's other end is already closed: it starts, reads the end, and
//!   returns from `main`), started together and then reaped: the least a spawn pool's
//!   start-up and shutdown cost.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use multiproc_shared_array::RawArray;
use rayon::prelude::*;

use super::{chunk_sum, with_hugepages};
use crate::backend::{Backend, Strategy};
use crate::config::Config;
use crate::limits::{
    FAULT, FORK, HEAP_FAULT, MAP, MEMCPY, PAGE, READ, ROUND_TRIP, SPAWN, WORKLOAD,
};
use crate::runner::{CellId, Rate, Runner, Spec};
use crate::Res;

/// The most MiB the fault row maps.
const FAULT_MB: usize = 128;

/// The hidden subcommand that makes this binary an echo peer.
pub(crate) const ECHO_PEER: &str = "echo-peer";

/// Round trips per run: as many as the overhead's `apply` variant makes.
fn trips(cfg: &Config) -> u64 {
    super::overhead::apply_tasks(cfg.tasks)
}

/// The thread counts of the bandwidth rows: 1 and every count the run uses.
fn thread_counts(cfg: &Config) -> Vec<usize> {
    let mut counts = vec![1];
    counts.extend(&cfg.workers);
    counts.extend(&cfg.sweep);
    counts.sort_unstable();
    counts.dedup();
    counts
}

/// Measures the limit rows.
pub(crate) fn run(r: &mut Runner) -> Res<()> {
    r.status("limits: creating the buffers");
    let len = Config::f64s(r.cfg.size_mb);
    let bytes = (len * 8) as u64;
    let mut src: Vec<f64> = with_hugepages(len);
    src.resize(len, 1.0);
    let mut dst: Vec<f64> = with_hugepages(len);
    dst.resize(len, 0.0);
    let expected = len as f64;
    for threads in thread_counts(&r.cfg) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| e.to_string())?;
        let piece = len.div_ceil(threads * 4).next_multiple_of(8);
        let id = |variant| {
            CellId::new(
                WORKLOAD,
                variant,
                Backend::Rayon,
                Strategy::Direct,
                Some(threads),
            )
        };
        r.measure(
            id(READ),
            Spec::rate(Rate::Throughput(bytes)),
            || Ok(()),
            |()| Ok(pool.install(|| src.par_chunks(piece).map(chunk_sum).sum::<f64>())),
            |&got| super::same_f64("read", got, expected),
        );
        if threads == 1 || r.cfg.workers.contains(&threads) {
            let dst = std::cell::RefCell::new(&mut dst);
            r.measure(
                id(MEMCPY),
                Spec::rate(Rate::Throughput(bytes)),
                || Ok(()),
                |()| {
                    let mut guard = dst.borrow_mut();
                    let dst: &mut [f64] = &mut guard;
                    pool.install(|| {
                        dst.par_chunks_mut(piece)
                            .zip(src.par_chunks(piece))
                            .for_each(|(d, s)| d.copy_from_slice(s))
                    });
                    Ok(())
                },
                |()| {
                    let dst = dst.borrow();
                    if dst[0] == 1.0 && dst[len - 1] == 1.0 {
                        Ok(())
                    } else {
                        Err("the copy is not the source".into())
                    }
                },
            );
        }
    }
    drop((src, dst));

    // Faulting is linear in the pages: 128 MiB at most keeps the row short (the report
    // gives the cost per 500 MiB too).
    let len = Config::f64s(r.cfg.size_mb.min(FAULT_MB));
    let per_page = (PAGE / 8) as usize;
    let pages = len.div_ceil(per_page) as u64;
    r.measure(
        CellId::new(WORKLOAD, FAULT, Backend::Serial, Strategy::Shm, None),
        Spec::rate(Rate::PerPage(pages)),
        || Ok(()),
        |()| {
            let fresh = RawArray::<f64>::zeros(len).map_err(|e| e.to_string())?;
            for i in (0..len).step_by(per_page) {
                fresh.store(i, 1.0).map_err(|e| e.to_string())?;
            }
            // Returned, so that unmapping it is not timed.
            Ok(fresh)
        },
        |fresh| {
            if (0..len)
                .step_by(per_page)
                .all(|i| fresh.load(i).ok() == Some(1.0))
            {
                Ok(())
            } else {
                Err("a page was not written".into())
            }
        },
    );

    let bytes = len * 8;
    r.measure(
        CellId::new(
            WORKLOAD,
            HEAP_FAULT,
            Backend::Serial,
            Strategy::Direct,
            None,
        ),
        Spec::rate(Rate::PerPage(pages)),
        || Ok(()),
        |()| {
            let mut fresh: Vec<u8> = Vec::with_capacity(bytes);
            for byte in fresh.spare_capacity_mut().iter_mut().step_by(PAGE as usize) {
                byte.write(1);
            }
            // Returned, so that unmapping it is not timed.
            Ok(fresh)
        },
        |fresh| {
            if fresh.capacity() >= bytes {
                Ok(())
            } else {
                Err("the allocation is smaller than asked".into())
            }
        },
    );

    r.status("limits: filling a shared array");
    let resident = RawArray::<f64>::zeros(len).map_err(|e| e.to_string())?;
    resident.fill(1.0);
    r.measure(
        CellId::new(WORKLOAD, MAP, Backend::Serial, Strategy::Shm, None),
        Spec::rate(Rate::PerPage(pages)),
        || Ok(()),
        |()| {
            let mapping = resident.try_clone().map_err(|e| e.to_string())?;
            let mut sum = 0.0;
            for i in (0..len).step_by(per_page) {
                sum += mapping.load(i).map_err(|e| e.to_string())?;
            }
            // Returned, so that unmapping it is not timed.
            Ok((mapping, sum))
        },
        |(_, sum)| super::same_f64("pages read", *sum, pages as f64),
    );
    drop(resident);

    let trips = trips(&r.cfg);
    let mut peer = EchoPeer::start(Duration::from_secs_f64(r.cfg.cell_timeout));
    r.measure(
        CellId::new(
            WORKLOAD,
            ROUND_TRIP,
            Backend::Spawn,
            Strategy::Direct,
            Some(1),
        ),
        Spec::rate(Rate::PerTrip(trips)),
        || Ok(()),
        |()| {
            let peer = peer.as_mut().map_err(|e| e.clone())?;
            for i in 0..trips {
                peer.trip(i as u8)?;
            }
            Ok(())
        },
        |()| Ok(()),
    );
    if let Ok(peer) = peer {
        peer.stop()?;
    }

    let children = r.cfg.workers.iter().copied().max().unwrap_or(1);
    let starts: [(&str, Backend, StartAndReap); 2] = [
        (FORK, Backend::Fork, fork_exit_and_reap),
        (SPAWN, Backend::Spawn, spawn_exit_and_reap),
    ];
    for (variant, backend, start_and_reap) in starts {
        r.measure(
            CellId::new(WORKLOAD, variant, backend, Strategy::Direct, Some(children)),
            Spec::rate(Rate::PerChild(children as u64)),
            || Ok(()),
            |()| start_and_reap(children),
            |&reaped| all_exited(reaped, children),
        );
    }
    Ok(())
}

/// Starts `n` children and reaps them: how many exited cleanly.
type StartAndReap = fn(usize) -> Res<usize>;

/// Whether all `children` exited cleanly.
fn all_exited(reaped: usize, children: usize) -> Res<()> {
    if reaped == children {
        Ok(())
    } else {
        Err(format!("{reaped} of {children} children exited cleanly"))
    }
}

/// Starts `n` children with `start`, then reaps each with `reap` (whether it exited with
/// status 0); returns how many did. A child that cannot be started ends the run, after
/// those started are reaped.
fn start_then_reap<C>(
    n: usize,
    mut start: impl FnMut() -> Res<C>,
    mut reap: impl FnMut(C) -> Res<bool>,
) -> Res<usize> {
    let mut children = Vec::with_capacity(n);
    let mut failure = None;
    for _ in 0..n {
        match start() {
            Ok(child) => children.push(child),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let mut clean = 0;
    for child in children {
        match reap(child) {
            Ok(true) => clean += 1,
            Ok(false) => {}
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    failure.map_or(Ok(clean), Err)
}

/// Forks `n` children that exit at once, then reaps them all; returns how many exited with
/// status 0.
fn fork_exit_and_reap(n: usize) -> Res<usize> {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::ForkResult;
    start_then_reap(
        n,
        || {
            // SAFETY: the child of a multithreaded process may only call async-signal-safe
            // functions: it calls `_exit` and nothing else, so no lock another thread held
            // (and no memory it was changing) is touched.
            match unsafe { nix::unistd::fork() } {
                Ok(ForkResult::Child) => multiproc_sys::exit::exit_now(0),
                Ok(ForkResult::Parent { child }) => Ok(child),
                Err(e) => Err(format!("fork: {e}")),
            }
        },
        |child| match waitpid(child, None) {
            Ok(status) => Ok(status == WaitStatus::Exited(child, 0)),
            Err(e) => Err(format!("waitpid: {e}")),
        },
    )
}

/// Starts `n` children running this binary as echo peers with nothing to echo (the other
/// end of each one's socket is closed once it is started, so it exits as soon as it has
/// started), then reaps them all; returns how many exited with status 0.
fn spawn_exit_and_reap(n: usize) -> Res<usize> {
    let exe = std::env::current_exe().map_err(|e| format!("spawn: {e}"))?;
    start_then_reap(
        n,
        || {
            let (ours, theirs) = UnixStream::pair().map_err(|e| format!("spawn: {e}"))?;
            let child = Command::new(&exe)
                .arg(ECHO_PEER)
                .stdin(Stdio::from(OwnedFd::from(theirs)))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("spawn: {e}"));
            drop(ours);
            child
        },
        |mut child: Child| match child.wait() {
            Ok(status) => Ok(status.success()),
            Err(e) => Err(format!("wait: {e}")),
        },
    )
}

/// This binary started again as an echo peer, one end of a socket pair as its stdin and
/// stdout.
struct EchoPeer {
    socket: UnixStream,
    child: Child,
}

impl EchoPeer {
    fn start(timeout: Duration) -> Res<EchoPeer> {
        let err = |e: std::io::Error| format!("starting the echo peer: {e}");
        let (socket, theirs) = UnixStream::pair().map_err(err)?;
        socket.set_read_timeout(Some(timeout)).map_err(err)?;
        let theirs_out = theirs.try_clone().map_err(err)?;
        let child = Command::new(std::env::current_exe().map_err(err)?)
            .arg(ECHO_PEER)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::from(OwnedFd::from(theirs_out)))
            .stderr(Stdio::null())
            .spawn()
            .map_err(err)?;
        Ok(EchoPeer { socket, child })
    }

    /// One byte there and back.
    fn trip(&mut self, byte: u8) -> Res<()> {
        let err = |e: std::io::Error| format!("round trip to the echo peer: {e}");
        self.socket.write_all(&[byte]).map_err(err)?;
        let mut back = [0];
        self.socket.read_exact(&mut back).map_err(err)?;
        if back[0] == byte {
            Ok(())
        } else {
            Err(format!("the echo peer sent {} for {byte}", back[0]))
        }
    }

    /// Closes the socket (the peer sees the end and exits) and waits for the peer.
    fn stop(self) -> Res<()> {
        let EchoPeer { socket, mut child } = self;
        drop(socket);
        let status = child.wait().map_err(|e| format!("the echo peer: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("the echo peer exited with {status}"))
        }
    }
}

/// The echo peer's side: echoes every byte from stdin (one end of a socket pair) back on
/// it until the other end closes.
pub(crate) fn echo_peer() -> Res<()> {
    let fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("echo peer: {e}"))?;
    let mut socket = UnixStream::from(fd);
    let mut byte = [0];
    loop {
        match socket.read(&mut byte) {
            Ok(0) => return Ok(()),
            Ok(_) => socket
                .write_all(&byte)
                .map_err(|e| format!("echo peer: {e}"))?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("echo peer: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_rows_run_at_one_thread_and_every_count_of_the_run() {
        let mut cfg = crate::config::Config::for_tests();
        cfg.workers = vec![2, 4];
        cfg.sweep = vec![1, 2, 8];
        assert_eq!(thread_counts(&cfg), [1, 2, 4, 8]);
        cfg.tasks = 50_000;
        assert_eq!(trips(&cfg), 1_000);
        cfg.tasks = 10;
        assert_eq!(trips(&cfg), 10);
    }
}
