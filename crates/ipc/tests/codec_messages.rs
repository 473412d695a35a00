//! One codec for pools, pipes and queues: a value whose `Serialize` or `Deserialize` fails
//! with a message of its own fails with that message whichever way it travels.

use multiproc_core::{Error, Executor};
use multiproc_fork::ForkPool;
use multiproc_ipc::{pipe, Queue};
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Decodes only numbers other than 13, and encodes only numbers other than 7: each refusal
/// with a message of its own, through serde's `custom`.
#[derive(Debug, PartialEq)]
struct Picky(u32);

impl Serialize for Picky {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 7 {
            return Err(S::Error::custom("bad encode: 7 is not to be written"));
        }
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Picky {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u32::deserialize(d)? {
            13 => Err(D::Error::custom("bad thing: 13 is unlucky")),
            n => Ok(Picky(n)),
        }
    }
}

/// Inside a struct, an enum and a sequence, so that the message must cross every level of
/// the format, not only the outermost.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Nested {
    Plain(u8),
    Deep {
        items: Vec<Option<Picky>>,
        tag: String,
    },
}

fn deep(n: u32) -> Nested {
    Nested::Deep {
        items: vec![Some(Picky(1)), None, Some(Picky(n))],
        tag: "t".into(),
    }
}

fn identity(x: Nested) -> Nested {
    x
}

fn make(n: u32) -> Nested {
    deep(n)
}

fn message(e: Error) -> String {
    match e {
        Error::Serialization(m) => m,
        other => panic!("expected a serialization error, got {other:?}"),
    }
}

#[test]
fn a_custom_deserialize_message_survives_a_pool_and_a_pipe() {
    let pool = ForkPool::new(1).unwrap();
    // As an argument: the worker fails to decode it.
    let as_argument = message(pool.apply(identity, deep(13)).unwrap_err());
    assert!(as_argument.contains("bad thing"), "{as_argument}");
    // As a result: the parent fails to decode it.
    let as_result = message(pool.apply(make, 13).unwrap_err());
    assert!(as_result.contains("bad thing"), "{as_result}");
    // A good value still crosses.
    assert_eq!(pool.apply(identity, deep(2)).unwrap(), deep(2));
    assert_eq!(
        pool.apply(identity, Nested::Plain(3)).unwrap(),
        Nested::Plain(3)
    );

    let (a, b) = pipe(true).unwrap();
    a.send(&deep(13)).unwrap();
    let over_pipe = message(b.recv::<Nested>().unwrap_err());
    assert!(over_pipe.contains("bad thing"), "{over_pipe}");

    let q = Queue::<Nested>::new(0).unwrap();
    q.put(&deep(13)).unwrap();
    let over_queue = message(q.get().unwrap_err());
    assert!(over_queue.contains("bad thing"), "{over_queue}");
}

#[test]
fn a_custom_serialize_message_survives_a_pool_and_a_pipe() {
    let pool = ForkPool::new(1).unwrap();
    let as_argument = message(pool.apply(identity, deep(7)).unwrap_err());
    assert!(as_argument.contains("bad encode"), "{as_argument}");
    let as_result = message(pool.apply(make, 7).unwrap_err());
    assert!(as_result.contains("bad encode"), "{as_result}");

    let (a, _b) = pipe(true).unwrap();
    let over_pipe = message(a.send(&deep(7)).unwrap_err());
    assert!(over_pipe.contains("bad encode"), "{over_pipe}");

    let q = Queue::<Nested>::new(0).unwrap();
    let over_queue = message(q.put(&deep(7)).unwrap_err());
    assert!(over_queue.contains("bad encode"), "{over_queue}");
}
