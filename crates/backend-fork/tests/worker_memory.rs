//! A fork pool's workers keep the memory their tasks free (`retain_freed_memory`), and the
//! process that made the pool keeps its own allocator settings: the workers change theirs
//! after the fork, in the child. Its own binary, with one test, so that no other test
//! allocates in this process meanwhile.

use multiproc_core::testing::process::block_cost;
use multiproc_fork::{Executor, ForkPool};

#[test]
fn the_pool_owner_keeps_its_allocator_settings() {
    const MIB: usize = 48;
    let pool = ForkPool::builder().processes(1).build().unwrap();
    // The worker has applied its settings by the time it answers a task.
    pool.apply(block_cost, MIB).unwrap();
    for _ in 0..2 {
        let (_, kept) = block_cost(MIB);
        assert!(
            kept <= (MIB as u64) << 18,
            "this process kept {kept} bytes of a freed {MIB} MiB block: the pool changed its \
             allocator settings"
        );
    }
}
