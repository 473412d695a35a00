//! Core's SyncPrimitive conformance suite for the process-shared family, with forked
//! processes as the workers (forked from the multithreaded test process).

mod common;

use multiproc_shared_array::ProcessSync;

multiproc_core::sync_conformance!(ProcessSync, crate::common::ForkHarness);
