//! One `Value` handed to two spawned processes, a clone each (Python's
//! `Process(target=f, args=(v,))` twice): both children update the parent's value.
//! (Clones in one process and in forked children: `crates/shared-array/tests/clone.rs`.)

use multiproc::shared_array::Value;
use multiproc::spawn::Process;

// This test binary doubles as the spawned children.
multiproc::spawn::test_worker!();

const ADDS: u64 = 500;

fn add(v: Value<u64>) {
    for _ in 0..ADDS {
        *v.lock().expect("lock") += 1;
    }
}

#[test]
fn a_value_clone_handed_to_two_spawned_processes_works() {
    let v = Value::new(0_u64).unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| Process::new(add, v.try_clone().unwrap()).start().unwrap())
        .collect();
    for child in &children {
        child.join().unwrap();
        assert_eq!(child.exitcode(), Some(0));
    }
    assert_eq!(v.get().unwrap(), 2 * ADDS);
}
