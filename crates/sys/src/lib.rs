//! # multiproc-sys
//!
//! The OS layer under multiproc: every raw Linux call the workspace makes, in one place, each
//! with its `SAFETY` argument beside it. The other crates call this one instead of `libc`.
//!
//! | concept | calls | module |
//! |---|---|---|
//! | sleeping on a word of shared memory | `futex(FUTEX_WAIT)`, `FUTEX_WAIT_BITSET`, `FUTEX_WAKE` | [`futex`] |
//! | a child's end, and signalling exactly it | `pidfd_open`, `pidfd_send_signal`, `poll` | [`pidfd`] |
//! | shared memory another process can map but not shrink or write | `memfd_create`, `F_ADD_SEALS`, `F_GET_SEALS` | [`memfd`] |
//! | state, parent and start time of a process; memory counters | `/proc/<pid>/stat`, `/proc/<pid>/status`, `/proc/<pid>/smaps_rollup`, `/proc/meminfo` | [`procfs`] |
//! | handlers around `fork` | `pthread_atfork` | [`atfork`] |
//! | registering such a handler once per process, which a `fork` cannot wedge | atomics | [`once`] |
//! | handlers at `exit`, and leaving with or without them | `atexit`, `exit`, `_exit` | [`exit`] |
//! | this process's id, cached across calls and cleared in forked children; how many times it forked | `getpid`, `pthread_atfork` | [`process`] |
//! | the kernel's id of a thread; the CPUs this process may use, now or asked once | `gettid`, `sched_getaffinity` and cgroup files (through `available_parallelism`) | [`thread`] |
//! | secrets | `getrandom` | [`random`] |
//! | allocator and paging hints; filling a fresh vector with its page faults on several cores | `mallopt`, `madvise(MADV_HUGEPAGE)`, scoped threads | [`memory`] |
//! | huge pages for shared memory: what the system offers, hugetlb memfds, THP advice | `/proc/meminfo`, `shmem_enabled`, `MFD_HUGETLB`, `madvise(MADV_HUGEPAGE)` | [`pages`], [`memfd::create_shared`] |
//! | reading a socket straight into a `Vec`'s spare capacity; receiving descriptors without leaking those of a truncated message | `recv(MSG_WAITALL)`, `recvmsg` | [`socket`] |
//!
//! Where `nix` wraps a call well (`fork`, `waitpid`, `kill`, sockets, `mmap`) the crates call
//! `nix` directly; this crate holds what `nix` does not cover (futexes, pidfds, `atexit`,
//! `pthread_atfork`, `getrandom`, `mallopt`, `recv` into uninitialised memory) and the one
//! implementation of each concept the workspace needs more than once (the `/proc/<pid>/stat`
//! parser, the memfd seal policy). Safe wrappers take references and owned or borrowed
//! descriptors, never raw pointers or raw descriptors; where the caller must promise
//! something the function is an `unsafe fn` with a `# Safety` section.
//!
//! Linux only. An internal crate of multiproc: its API follows the other crates' needs and
//! may change in any release.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod atfork;
pub mod exit;
pub mod futex;
pub mod memfd;
pub mod memory;
pub mod once;
pub mod pages;
pub mod pidfd;
pub mod process;
pub mod procfs;
pub mod random;
pub mod socket;
pub mod thread;
