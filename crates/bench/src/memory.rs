//! Peak memory of the process tree: a background thread samples the sum of PSS over this
//! process and its descendants (`multiproc_core::self_tree_pss`) while a cell runs.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One sample: seconds since the sampler started, and the tree's total PSS in bytes.
pub(crate) type Point = (f64, u64);

/// A running sampler; [`stop`](Sampler::stop) ends it and returns what it saw.
#[derive(Debug)]
pub(crate) struct Sampler {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Vec<Point>>,
}

impl Sampler {
    /// Samples now and then every `interval` until stopped.
    pub(crate) fn start(interval: Duration) -> Sampler {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("pss-sampler".into())
            .spawn(move || {
                let t0 = Instant::now();
                let mut trace = Vec::new();
                let sample = |trace: &mut Vec<Point>| {
                    if let Some(pss) = tree_pss() {
                        trace.push((t0.elapsed().as_secs_f64(), pss));
                    }
                };
                loop {
                    sample(&mut trace);
                    match stopped.recv_timeout(interval) {
                        Err(mpsc::RecvTimeoutError::Timeout) => continue,
                        // `stop`: a last sample, of the memory as it is when the cell ends.
                        Ok(()) => {
                            sample(&mut trace);
                            break;
                        }
                        // The sampler was dropped: nobody reads the trace.
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                trace
            })
            .expect("starting the memory sampler thread");
        Sampler { stop, thread }
    }

    /// Takes a last sample and returns the trace (empty if `/proc` could not be read).
    pub(crate) fn stop(self) -> Vec<Point> {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_default()
    }
}

/// The sum of PSS over this process and its descendants, consistent across a fork or an
/// exit: the sample is retaken if the tree changed while it was read (a child forked after
/// the listing would be missed while the parent's PSS already counts the pages as shared
/// with it), or if a child read as gone or empty (an exiting worker whose memory is being
/// torn down).
fn tree_pss() -> Option<u64> {
    let me = std::process::id();
    for _ in 0..10 {
        let mut tree = multiproc_core::process_tree(me).ok()?;
        let mut total = 0;
        let mut settled = true;
        for (i, &pid) in tree.iter().enumerate() {
            match multiproc_core::pss_bytes(pid) {
                Ok(b) if b > 0 || i == 0 => total += b,
                _ => settled = false,
            }
        }
        let mut again = multiproc_core::process_tree(me).ok()?;
        tree.sort_unstable();
        again.sort_unstable();
        if settled && again == tree {
            return Some(total);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// The largest sample of a trace.
pub(crate) fn peak(trace: &[Point]) -> u64 {
    trace.iter().map(|&(_, b)| b).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampler_sees_memory_touched_while_it_runs() {
        let before = multiproc_core::self_tree_pss().unwrap();
        let sampler = Sampler::start(Duration::from_millis(2));
        let block = vec![1u8; 64 << 20];
        // `stop` takes a last sample, with the block in place, after the first one.
        let trace = sampler.stop();
        drop(std::hint::black_box(block));
        assert!(trace.len() >= 2, "{trace:?}");
        assert!(peak(&trace) >= before + (32 << 20));
        assert!(trace.windows(2).all(|w| w[0].0 <= w[1].0));
    }
}
