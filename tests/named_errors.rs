//! The named errors as a user of the facade meets them: `multiproc::Error` variants from
//! `multiproc::Pool` (whatever its start method) and from `multiproc::ipc`.

#[cfg(feature = "fork")]
#[test]
fn join_on_a_running_facade_pool_is_join_before_close() {
    use multiproc::{Error, Executor, Pool, StartMethod};
    let pool = Pool::with_start_method(1, StartMethod::Fork).unwrap();
    match pool.join() {
        Err(Error::JoinBeforeClose) => {}
        other => panic!("join before close gave {other:?}"),
    }
    assert_eq!(
        pool.apply(|x: u8| x + 1, 1).unwrap(),
        2,
        "the pool still works"
    );
    pool.close();
    pool.join().unwrap();
}

#[cfg(feature = "ipc")]
#[test]
fn facade_queues_and_pipes_give_named_errors() {
    use multiproc::Error;
    let q = multiproc::ipc::Queue::<u8>::new(1).unwrap();
    assert!(matches!(q.get_nowait(), Err(Error::Empty)));
    q.put(&1).unwrap();
    assert!(matches!(q.put_nowait(&2), Err(Error::Full)));
    q.close();
    assert!(matches!(q.put(&3), Err(Error::QueueClosed)));
    assert_eq!(q.get().unwrap(), 1);
    assert!(matches!(q.get(), Err(Error::QueueClosed)));
    let (a, b) = multiproc::ipc::pipe(true).unwrap();
    drop(b);
    assert!(matches!(a.recv::<u8>(), Err(Error::PipeClosed)));
    assert!(matches!(a.send(&1u8), Err(Error::PipeClosed)));
}
