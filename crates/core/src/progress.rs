//! The progress bar of a pool built with `.progress(true)` (feature `progress`): a
//! [`ChunkSink`] whose deliveries also advance an indicatif bar on stderr — items done, rate
//! and ETA — drawn only when stderr is a terminal (otherwise the sink is left as it is, and
//! nothing is drawn or counted). "A terminal" is `std::io::stderr().is_terminal()`, that is
//! `isatty(2)`: the test indicatif's `console` makes too before it draws, so the bar is never
//! made for a pipe or a file, and indicatif would not draw one there either.

use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::batch::Batch;
use crate::result::{ChunkSink, ChunkTarget};
use crate::Result;

/// `sink`, counting `batch`'s items on a bar, if `wanted` and stderr is a terminal.
pub(crate) fn attach<A, R: Send + 'static>(
    wanted: bool,
    sink: ChunkSink<R>,
    batch: &Batch<A>,
) -> ChunkSink<R> {
    if !wanted || batch.is_empty() || !std::io::stderr().is_terminal() {
        return sink;
    }
    attach_to(
        sink,
        batch.len(),
        batch.chunksize(),
        ProgressDrawTarget::stderr(),
    )
    .0
}

fn attach_to<R: Send + 'static>(
    sink: ChunkSink<R>,
    items: usize,
    chunksize: NonZeroUsize,
    target: ProgressDrawTarget,
) -> (ChunkSink<R>, ProgressBar) {
    let bar = ProgressBar::with_draw_target(Some(items as u64), target);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:40.cyan/blue} {pos}/{len} items  {per_sec}  elapsed {elapsed}  ETA {eta}",
    ) {
        bar.set_style(style);
    }
    let counter = bar.clone();
    let sink = sink.wrap(|inner| {
        Arc::new(Ticking {
            inner,
            bar,
            items,
            chunksize: chunksize.get(),
        })
    });
    (sink, counter)
}

/// Forwards every delivery to `inner` and advances `bar` by the chunk's items.
struct Ticking<R> {
    inner: Arc<dyn ChunkTarget<R>>,
    bar: ProgressBar,
    items: usize,
    chunksize: usize,
}

impl<R: Send> ChunkTarget<R> for Ticking<R> {
    fn deliver(&self, index: usize, outcome: Result<Vec<R>>) {
        let n = match &outcome {
            Ok(values) => values.len(),
            // A failed chunk is done too: count its items.
            Err(_) => self
                .chunksize
                .min(self.items.saturating_sub(index * self.chunksize)),
        };
        self.inner.deliver(index, outcome);
        self.bar.inc(n as u64);
    }

    fn deliver_whole(&self, outcome: Result<Vec<R>>) -> Option<Result<Vec<R>>> {
        let back = self.inner.deliver_whole(outcome);
        if back.is_none() {
            self.bar.inc(self.items as u64);
        }
        back
    }

    fn wants_whole(&self) -> bool {
        self.inner.wants_whole()
    }
}

impl<R> Drop for Ticking<R> {
    fn drop(&mut self) {
        self.bar.abandon();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn the_bar_counts_every_item_failed_chunks_included() {
        let (sink, result) = ChunkSink::<u8>::collect(3);
        let (sink, bar) = attach_to(
            sink,
            5,
            NonZeroUsize::new(2).unwrap(),
            ProgressDrawTarget::hidden(),
        );
        sink.deliver(0, Ok(vec![1, 2]));
        sink.deliver(2, Ok(vec![5]));
        sink.deliver(1, Err(Error::Cancelled));
        assert!(matches!(result.get(), Err(Error::Cancelled)));
        assert_eq!(bar.position(), 5);
        assert_eq!(bar.length(), Some(5));
    }
}
