//! The threads backend against core's conformance suites.

use multiproc_core::testing::ThreadHarness;
use multiproc_threads::{ThreadPool, ThreadSync};

multiproc_core::executor_conformance!(ThreadPool::new);
multiproc_core::sync_conformance!(ThreadSync, ThreadHarness);
