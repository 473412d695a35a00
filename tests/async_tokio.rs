//! A pool's results awaited under tokio (the library has no tokio dependency: its futures
//! are woken by the pool's supervisor threads, on any executor).
#![cfg(feature = "fork")]

use std::future::IntoFuture;

use multiproc::fork::Pool;
use multiproc::prelude::*;

fn square(x: u64) -> u64 {
    x * x
}

#[tokio::test]
async fn results_and_imap_are_awaited_under_tokio() -> multiproc::Result<()> {
    let pool = Pool::new(2)?;
    // Two results awaited at once, on a single-threaded runtime: neither blocks it.
    let (a, b) = tokio::join!(
        pool.apply_async(square, 7)?.into_future(),
        pool.apply_async(square, 8)?.into_future()
    );
    assert_eq!((a?, b?), (49, 64));
    let mut imap = pool.imap(square, 0..5)?;
    let mut got = Vec::new();
    while let Some(r) = imap.next_async().await {
        got.push(r?);
    }
    assert_eq!(got, vec![0, 1, 4, 9, 16]);
    Ok(())
}
