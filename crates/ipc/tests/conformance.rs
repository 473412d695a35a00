//! The IPC conformance suite with workers that are threads, forked processes and spawned
//! processes.

use std::time::Duration;

use multiproc_core::{Payload, Result, Task};
use multiproc_ipc::testing::{Harness, ThreadHarness, Worker};
use multiproc_process::ProcessHandle;

// This test binary doubles as the spawned workers.
multiproc_spawn::test_worker!();

mod threads {
    multiproc_ipc::ipc_conformance!(multiproc_ipc::testing::ThreadHarness);
}

/// Workers are forked children (`multiproc_fork::Process`), started from this multithreaded
/// test process.
struct ForkHarness;

struct ForkWorker(ProcessHandle);

impl Harness for ForkHarness {
    type Worker = ForkWorker;

    fn start<A>(&self, f: Task<A, ()>, args: A) -> Result<ForkWorker>
    where
        A: Payload,
    {
        multiproc_fork::Process::new(f, args)
            .start()
            .map(ForkWorker)
    }
}

impl Worker for ForkWorker {
    fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.0.join_timeout(timeout)?;
        self.0.check()
    }

    fn kill(&self) -> Result<()> {
        self.0.kill()
    }
}

mod fork {
    multiproc_ipc::ipc_conformance!(super::ForkHarness, processes);
}

/// Workers are fresh processes of this test binary (`multiproc_spawn::Process`); their
/// queues and connections arrive as descriptors.
struct SpawnHarness;

impl Harness for SpawnHarness {
    type Worker = ForkWorker;

    fn start<A>(&self, f: Task<A, ()>, args: A) -> Result<ForkWorker>
    where
        A: Payload,
    {
        multiproc_spawn::Process::new(f, args)
            .start()
            .map(ForkWorker)
    }
}

mod spawn {
    multiproc_ipc::ipc_conformance!(super::SpawnHarness, processes);
}

#[test]
fn the_thread_harness_reports_panics_and_cannot_kill() {
    fn boom(_: u8) {
        panic!("boom");
    }
    let w = ThreadHarness.start(boom, 0).unwrap();
    assert!(w.join_timeout(Duration::from_secs(10)).is_err());
    assert!(w.kill().is_err());
}
