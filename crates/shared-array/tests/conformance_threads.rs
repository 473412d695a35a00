//! Core's SyncPrimitive conformance suite for the process-shared family, with threads as the
//! workers.

use multiproc_shared_array::ProcessSync;

multiproc_core::sync_conformance!(ProcessSync, multiproc_core::testing::ThreadHarness);
