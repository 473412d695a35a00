//! What is particular to the MPI backend, under `mpirun -n 3` (`run-suite`): initializers (by
//! broadcast and by message), a failing initializer, pools that share the worker ranks one
//! after another or split them between them, a pool asking for more ranks than are free,
//! values that hold descriptors, and `finalize`.

use std::sync::Mutex;

use multiproc_core::{Error, Executor, Packed};
use multiproc_mpi::{Pool, BCAST_MIN};

/// What the initializer left on this worker rank.
static DATA: Mutex<Vec<u64>> = Mutex::new(Vec::new());

fn load(data: Packed<u64>) {
    *DATA.lock().unwrap() = data.into_inner();
}

fn fail_to_load(_: u64) {
    panic!("no data today");
}

/// The sum of the initializer's data from `start`, `len` items: the chunked sum.
fn partial_sum((start, len): (usize, usize)) -> u64 {
    DATA.lock().unwrap()[start..start + len].iter().sum()
}

fn data_len(_: ()) -> usize {
    DATA.lock().unwrap().len()
}

fn rank_of(_: u32) -> u32 {
    std::env::var("OMPI_COMM_WORLD_RANK")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(u32::MAX)
}

fn check<F: FnOnce()>(name: &str, f: F) {
    let t = std::time::Instant::now();
    f();
    println!("test mpi::{name} ... ok ({:.2?})", t.elapsed());
}

fn main() {
    multiproc_mpi::init();
    let workers = multiproc_mpi::worker_ranks();
    assert!(workers >= 2, "run under `mpirun -n 3` or more");

    check("initializer_by_broadcast_reaches_every_rank", || {
        let n = BCAST_MIN; // u64s: 8 x BCAST_MIN bytes, so it goes by MPI_Bcast
        let data: Vec<u64> = (0..n as u64).collect();
        let pool = Pool::with_initializer(workers, load, &Packed::from(data)).unwrap();
        let chunks: Vec<(usize, usize)> =
            (0..n).step_by(1000).map(|s| (s, 1000.min(n - s))).collect();
        let sum: u64 = pool
            .map_chunked(partial_sum, chunks, 1)
            .unwrap()
            .iter()
            .sum();
        assert_eq!(sum, (n as u64) * (n as u64 - 1) / 2);
        let lens = pool
            .map_chunked(data_len, vec![(); 4 * workers], 1)
            .unwrap();
        assert!(lens.iter().all(|&l| l == n), "{lens:?}");
    });

    check("initializer_by_message_for_some_ranks", || {
        let pool = Pool::with_initializer(1, load, &Packed::from(vec![7u64; 10])).unwrap();
        assert_eq!(pool.apply(partial_sum, (0, 10)).unwrap(), 70);
    });

    check(
        "a_failing_initializer_fails_pool_creation_and_frees_the_ranks",
        || {
            match Pool::with_initializer(workers, fail_to_load, &0) {
                Err(Error::InitializerFailed(m)) => assert!(m.contains("no data today"), "{m}"),
                other => panic!("expected InitializerFailed, got {other:?}"),
            }
            let pool = Pool::new(workers).unwrap();
            assert!(pool.apply(rank_of, 0).unwrap() >= 1);
        },
    );

    check("live_pools_split_the_ranks_and_refuse_more", || {
        let a = Pool::new(1).unwrap();
        let b = Pool::new(workers - 1).unwrap();
        match Pool::new(1) {
            Err(Error::InvalidArgument {
                name: "processes",
                reason,
            }) => {
                assert!(reason.contains("free"), "{reason}")
            }
            other => panic!("a pool beyond the free ranks: {other:?}"),
        }
        let ra = a.map_chunked(rank_of, 0..8, 1).unwrap();
        let rb = b.map_chunked(rank_of, 0..8, 1).unwrap();
        assert!(
            ra.iter().all(|&r| r == ra[0]),
            "pool a used one rank: {ra:?}"
        );
        assert!(
            rb.iter().all(|r| !ra.contains(r)),
            "pools share no rank: {ra:?} {rb:?}"
        );
        drop(a);
        let c = Pool::new(1).unwrap(); // a's rank is free again
        assert_eq!(c.apply(rank_of, 0).unwrap(), ra[0]);
    });

    check("work_spreads_over_every_rank", || {
        let pool = Pool::new(workers).unwrap();
        let mut ranks = pool
            .map_chunked(rank_of, 0..(200 * workers as u32), 1)
            .unwrap();
        ranks.sort();
        ranks.dedup();
        assert_eq!(ranks, (1..=workers as u32).collect::<Vec<_>>());
    });

    check("large_arguments_and_results_cross_intact", || {
        fn reverse(v: Packed<u8>) -> Packed<u8> {
            let mut v = v.into_inner();
            v.reverse();
            v.into()
        }
        let pool = Pool::new(workers).unwrap();
        let big: Vec<Packed<u8>> = (0..6u8)
            .map(|i| Packed::from((0..(3 << 20)).map(|j| (j as u8) ^ i).collect::<Vec<u8>>()))
            .collect();
        let out = pool.map_chunked(reverse, big.clone(), 1).unwrap();
        for (a, b) in big.iter().zip(&out) {
            assert!(a.iter().rev().eq(b.iter()));
        }
    });

    check("shared_windows_are_read_in_place", || {
        fn sum_shared((start, len): (usize, usize)) -> u64 {
            multiproc_mpi::shared::<u64>().unwrap()[start..start + len]
                .iter()
                .sum()
        }
        fn shared_len(_: u8) -> usize {
            multiproc_mpi::shared::<u64>().unwrap().len()
        }
        fn as_u128(_: u8) -> String {
            match multiproc_mpi::shared::<[u64; 3]>() {
                Ok(_) => "fits".into(),
                Err(e) => e.to_string(),
            }
        }
        assert!(
            multiproc_mpi::shared::<u64>().is_err(),
            "rank 0 has no shared data"
        );
        let n = 1_000_003usize;
        let data: Vec<u64> = (0..n as u64).map(|x| x * 3).collect();
        match Pool::with_shared(1, &data) {
            Err(Error::InvalidArgument { .. }) => {}
            other => panic!("a shared pool of some ranks only: {other:?}"),
        }
        let pool = Pool::with_shared(workers, &data).unwrap();
        let chunks: Vec<(usize, usize)> = (0..n)
            .step_by(10_000)
            .map(|s| (s, 10_000.min(n - s)))
            .collect();
        let sum: u64 = pool
            .map_chunked(sum_shared, chunks, 1)
            .unwrap()
            .iter()
            .sum();
        assert_eq!(sum, data.iter().sum::<u64>());
        let lens = pool
            .map_chunked(shared_len, vec![0; 4 * workers], 1)
            .unwrap();
        assert!(lens.iter().all(|&l| l == n), "{lens:?}");
        let misfit = pool.apply(as_u128, 0).unwrap();
        assert!(misfit.contains("does not fit"), "{misfit}");
        drop(pool);
        let other = Pool::with_shared(workers, &[5u64; 7]).unwrap();
        assert_eq!(
            other.map_chunked(sum_shared, vec![(0, 7); 4], 1).unwrap(),
            vec![35; 4]
        );
    });

    check("a_spawn_pool_inside_a_task_works", || {
        fn double(x: u64) -> u64 {
            2 * x
        }
        fn spawn_and_sum(n: u64) -> u64 {
            let pool = multiproc_spawn::SpawnPool::new(2).expect("a spawn pool on a worker rank");
            pool.map(double, 0..n).expect("map").iter().sum()
        }
        let pool = Pool::new(workers).unwrap();
        assert_eq!(
            pool.map_chunked(spawn_and_sum, vec![10, 100], 1).unwrap(),
            vec![90, 9900]
        );
    });

    check("finalize_ends_the_pools", || {
        let pool = Pool::new(workers).unwrap();
        assert_eq!(pool.map(rank_of, 0..4).unwrap().len(), 4);
        multiproc_mpi::finalize();
        assert!(matches!(pool.map(rank_of, 0..4), Err(Error::PoolClosed(_))));
        assert!(matches!(Pool::new(1), Err(Error::PoolClosed(_))));
        multiproc_mpi::finalize(); // idempotent
    });
    println!("MPI backend checks on {workers} worker ranks passed");
}
