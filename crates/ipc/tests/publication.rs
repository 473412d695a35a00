//! The shared-memory ring publishes what it carries: everything a producer wrote before
//! `put` is visible to the consumer after its `get`. The ring's own words are atomics, so a
//! commit with too weak an ordering would show no race *in* the ring; here each item is the
//! address of a heap block the producer has just written with plain stores, and the consumer
//! reads the block with plain loads. Under ThreadSanitizer (`.ci/run`), a `get` that did not
//! happen after its `put` is a reported data race on the block. A ring of the minimum size
//! makes producers wait for space and records wrap around its end.

use std::sync::Arc;
use std::thread;

use multiproc_ipc::ring::MIN_RING_BYTES;
use multiproc_ipc::Queue;

const PRODUCERS: u64 = 2;
const CONSUMERS: u64 = 2;
const ITEMS: u64 = 200; // per producer

type Block = [u64; 8];

#[test]
fn what_a_producer_wrote_before_put_is_seen_after_get() {
    let q = Arc::new(Queue::<u64>::with_capacity(0, MIN_RING_BYTES).unwrap());
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = q.clone();
            thread::spawn(move || {
                for i in 0..ITEMS {
                    let value = p * ITEMS + i + 1;
                    let block: Box<Block> = Box::new([value; 8]); // plain stores
                    q.put(&(Box::into_raw(block) as usize as u64)).unwrap();
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let q = q.clone();
            thread::spawn(move || {
                let mut sum = 0;
                loop {
                    let addr = q.get().unwrap();
                    if addr == 0 {
                        return sum; // the end marker
                    }
                    // SAFETY: every non-zero item is the address of a block leaked by
                    // `Box::into_raw` in this process, and the queue delivers each item to
                    // exactly one consumer, so it is taken back exactly once.
                    let block = unsafe { Box::from_raw(addr as usize as *mut Block) };
                    assert!(block.iter().all(|&v| v == block[0]), "torn block {block:?}");
                    sum += block[0]; // plain loads
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    for _ in 0..CONSUMERS {
        q.put(&0).unwrap();
    }
    let total: u64 = consumers.into_iter().map(|c| c.join().unwrap()).sum();
    let n = PRODUCERS * ITEMS;
    assert_eq!(total, n * (n + 1) / 2, "items lost or duplicated");
}
