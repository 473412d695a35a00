//! [`Batch`]: the items of one submission to a pool, split into chunks.

use std::num::NonZeroUsize;

/// The items of one submission, and how many go to a worker at a time.
///
/// Chunk `i` holds items `i * chunksize .. (i + 1) * chunksize` (the last may be shorter).
#[derive(Debug)]
pub struct Batch<A> {
    items: Vec<A>,
    chunksize: NonZeroUsize,
}

impl<A> Batch<A> {
    /// A batch of `items` in chunks of `chunksize`.
    pub fn new(items: Vec<A>, chunksize: NonZeroUsize) -> Self {
        Batch { items, chunksize }
    }

    /// The number of items per chunk.
    pub fn chunksize(&self) -> NonZeroUsize {
        self.chunksize
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The number of chunks: `ceil(len / chunksize)`.
    pub fn n_chunks(&self) -> usize {
        self.items.len().div_ceil(self.chunksize.get())
    }

    /// The items and the chunk size, for a backend that splits them itself.
    pub fn into_parts(self) -> (Vec<A>, NonZeroUsize) {
        (self.items, self.chunksize)
    }

    /// The chunks, in order, each with its index.
    pub fn into_chunks(self) -> impl Iterator<Item = (usize, Vec<A>)> {
        let size = self.chunksize.get();
        let mut items = self.items.into_iter();
        let mut index = 0;
        std::iter::from_fn(move || {
            let chunk: Vec<A> = items.by_ref().take(size).collect();
            if chunk.is_empty() {
                None
            } else {
                index += 1;
                Some((index - 1, chunk))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_into_ordered_chunks() {
        let b = Batch::new((0..7).collect::<Vec<u8>>(), NonZeroUsize::new(3).unwrap());
        assert_eq!(b.n_chunks(), 3);
        let chunks: Vec<_> = b.into_chunks().collect();
        assert_eq!(
            chunks,
            vec![(0, vec![0, 1, 2]), (1, vec![3, 4, 5]), (2, vec![6])]
        );
        let empty = Batch::new(Vec::<u8>::new(), NonZeroUsize::MIN);
        assert_eq!(empty.n_chunks(), 0);
        assert_eq!(empty.into_chunks().count(), 0);
    }
}
