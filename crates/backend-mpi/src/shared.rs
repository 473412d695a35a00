//! Read-only data in MPI-3 shared-memory windows: one copy per node, read in place by every
//! rank of that node (`MPI_Win_allocate_shared`), each node's copy filled by a broadcast
//! among the nodes' leaders.

use std::ffi::{c_int, c_void};
use std::sync::Mutex;

use mpi::ffi;
use mpi::topology::{Color, Communicator, SimpleCommunicator};
use mpi::traits::{AsRaw, Root};

/// The communicators the windows need, made once in `init` (their creation is collective
/// over every rank, and every rank is in `init` then).
pub(crate) struct Comms {
    /// The ranks of this node (`MPI_Comm_split_type(SHARED)`), ordered by world rank: world
    /// rank 0 is rank 0 of its node's communicator.
    node: SimpleCommunicator,
    /// One rank per node (rank 0 of each node's communicator); `None` on the others.
    leaders: Option<SimpleCommunicator>,
}

impl Comms {
    /// Collective over `world`. `MULTIPROC_MPI_RANKS_PER_NODE=k` (the same on every rank,
    /// e.g. `mpirun -x`) groups ranks k by k as if each group were a node — one machine
    /// then exercises the broadcast among nodes' leaders that a cluster takes.
    pub(crate) fn new(world: &SimpleCommunicator) -> Comms {
        let per_node = std::env::var("MULTIPROC_MPI_RANKS_PER_NODE")
            .ok()
            .and_then(|v| v.parse::<i32>().ok())
            .filter(|&k| k > 0);
        let node = match per_node {
            Some(k) => world
                .split_by_color_with_key(Color::with_value(world.rank() / k), world.rank())
                .expect("every rank has a color"),
            None => world.split_shared(world.rank()),
        };
        let color = if node.rank() == 0 {
            Color::with_value(0)
        } else {
            Color::undefined()
        };
        let leaders = world.split_by_color_with_key(color, world.rank());
        Comms { node, leaders }
    }
}

/// The bytes of the latest shared pool this rank served (see [`crate::shared`]).
pub(crate) static CURRENT: Mutex<&'static [u8]> = Mutex::new(&[]);

/// Collective over every rank of the job: allocates each node's window of `len` bytes, fills
/// it (rank 0 copies `src` into its node's; the other nodes' leaders receive it by broadcast
/// among leaders), and returns this node's copy. The window is never freed: the returned
/// slice lives until the process ends (a worker rank exits right after `MPI_Finalize`, and
/// nothing writes the memory after this returns).
///
/// `src` must be `Some` (of `len` bytes) on world rank 0 and `None` elsewhere.
pub(crate) fn publish(comms: &Comms, len: usize, src: Option<&[u8]>) -> &'static [u8] {
    if len == 0 {
        return &[];
    }
    let leader = comms.node.rank() == 0;
    let size = if leader { len as ffi::MPI_Aint } else { 0 };
    let mut base: *mut c_void = std::ptr::null_mut();
    let mut win = std::mem::MaybeUninit::<ffi::MPI_Win>::uninit();
    // SAFETY: MPI is initialised and this is the process's MPI thread; `base` and `win` are
    // valid out-parameters (MPI writes the segment's address into `base`, as
    // MPI_Win_allocate_shared's `baseptr` is a pointer to a pointer); the call is collective
    // over the node's communicator, and every rank of the node makes it (the caller's
    // contract: every rank of the job is publishing).
    let win = unsafe {
        ffi::MPI_Win_allocate_shared(
            size,
            1,
            ffi::RSMPI_INFO_NULL,
            comms.node.as_raw(),
            (&mut base as *mut *mut c_void).cast::<c_void>(),
            win.as_mut_ptr(),
        );
        win.assume_init()
    };
    let mut qsize: ffi::MPI_Aint = 0;
    let mut disp: c_int = 0;
    let mut seg: *mut c_void = std::ptr::null_mut();
    // SAFETY: `win` is the window just allocated; rank 0 of the node owns a segment of `len`
    // bytes, whose address in this process MPI writes into `seg`.
    unsafe {
        ffi::MPI_Win_shared_query(
            win,
            0,
            &mut qsize,
            &mut disp,
            (&mut seg as *mut *mut c_void).cast::<c_void>(),
        );
        ffi::MPI_Win_fence(0, win);
    }
    assert_eq!(
        qsize as usize, len,
        "the node's shared segment has the asked size"
    );
    if leader {
        // SAFETY: `seg` is this node's segment of `len` bytes, mapped in this process;
        // between the two fences only this rank (the node's leader) touches it.
        let mine = unsafe { std::slice::from_raw_parts_mut(seg.cast::<u8>(), len) };
        if let Some(src) = src {
            mine.copy_from_slice(src);
        }
        if let Some(leaders) = &comms.leaders {
            leaders.process_at_rank(0).broadcast_into(mine);
        }
    }
    // SAFETY: collective over the window's group (every rank of the node); it ends the epoch
    // in which the leader wrote, so its stores are visible to the node's ranks after it.
    unsafe {
        ffi::MPI_Win_fence(0, win);
    }
    // SAFETY: the segment stays mapped for the life of the process (the window is never
    // freed) and nobody writes it after the fence above.
    unsafe { std::slice::from_raw_parts(seg.cast::<u8>().cast_const(), len) }
}
