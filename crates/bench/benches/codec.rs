//! Codec throughput, with criterion: `cargo bench -p multiproc-bench --bench codec`.
//!
//! Encoding (into a reused buffer, so its pages are warm) and decoding (into a fresh value)
//! of 16 MiB of plain numbers through `multiproc_process::codec`, the codec of every pool,
//! `Pipe` and `Queue`: a `Vec<u8>`, a `Vec<f64>`, a `Vec<u32>`, the same `f64`s as a
//! [`Packed`] block, and a `Vec<usize>` of values below 256 (the voxels workload's index
//! lists). Criterion reports bytes per second (the values' in-memory size). `encode` and
//! `decode` are the codec's entry points (a vector of plain numbers takes the block path,
//! wherever it is); the `element by element` rows are the path of a sequence that is not one
//! (the same values serialized from an iterator, and collected by a visitor of their own).
//! The references: a plain copy of the same values (`Vec::clone`), and postcard (the codec
//! multiproc used before its own format), encoding and decoding the same values.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use multiproc_core::Packed;
use multiproc_process::codec::{encode_into, take_from_bytes};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The bytes of each value.
const BYTES: usize = 16 << 20;

fn group<T: Serialize + DeserializeOwned + Clone + 'static>(
    c: &mut Criterion,
    name: &str,
    value: T,
) {
    let mut g = c.benchmark_group(format!("codec/{name}"));
    g.throughput(Throughput::Bytes(BYTES as u64))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    let mut buf = encode_into(&value, Vec::new()).expect("encodes");
    g.bench_function("encode", |b| {
        b.iter(|| {
            buf = encode_into(black_box(&value), std::mem::take(&mut buf)).expect("encodes");
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| black_box(take_from_bytes::<T>(black_box(&buf)).expect("decodes")))
    });
    let mut old = postcard::to_stdvec(&value).expect("encodes");
    g.bench_function("postcard encode (reference)", |b| {
        b.iter(|| {
            old.clear();
            old =
                postcard::to_extend(black_box(&value), std::mem::take(&mut old)).expect("encodes");
        })
    });
    g.bench_function("postcard decode (reference)", |b| {
        b.iter(|| black_box(postcard::from_bytes::<T>(black_box(&old)).expect("decodes")))
    });
    g.bench_function("clone (reference)", |b| {
        b.iter(|| black_box(black_box(&value).clone()))
    });
    g.finish();
}

/// Serialized from an iterator, which the block path does not take.
struct Elements<'a, E>(&'a [E]);

impl<E: Serialize> Serialize for Elements<'_, E> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

/// A `Vec<E>` collected by a visitor of its own, which the block path does not take.
struct ElementWise<E>(Vec<E>);

impl<'de, E: serde::Deserialize<'de>> serde::Deserialize<'de> for ElementWise<E> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<E>(std::marker::PhantomData<E>);
        impl<'de, E: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visit<E> {
            type Value = Vec<E>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<E>, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 17));
                while let Some(x) = seq.next_element()? {
                    v.push(x);
                }
                Ok(v)
            }
        }
        d.deserialize_seq(Visit(std::marker::PhantomData))
            .map(ElementWise)
    }
}

/// The element-by-element rows of a vector's group: the same bytes, encoded from an iterator
/// and decoded by a visitor of their own (serde's way, with its 1 MiB pre-allocation).
fn element_rows<E: Serialize + DeserializeOwned>(c: &mut Criterion, name: &str, values: &[E]) {
    let mut g = c.benchmark_group(format!("codec/{name}"));
    g.throughput(Throughput::Bytes(BYTES as u64))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    let mut buf = encode_into(&Elements(values), Vec::new()).expect("encodes");
    g.bench_function("encode element by element", |b| {
        b.iter(|| {
            buf = encode_into(&Elements(black_box(values)), std::mem::take(&mut buf))
                .expect("encodes");
        })
    });
    g.bench_function("decode element by element", |b| {
        b.iter(|| {
            black_box(
                take_from_bytes::<ElementWise<E>>(black_box(&buf))
                    .map(|(ElementWise(v), _)| v)
                    .expect("decodes"),
            )
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let bytes: Vec<u8> = (0..BYTES).map(|i| i as u8).collect();
    group(&mut c, "Vec<u8>", bytes.clone());
    element_rows(&mut c, "Vec<u8>", &bytes);
    let floats: Vec<f64> = (0..BYTES / 8).map(|i| i as f64 * 0.5).collect();
    group(&mut c, "Vec<f64>", floats.clone());
    element_rows(&mut c, "Vec<f64>", &floats);
    let words: Vec<u32> = (0..BYTES / 4).map(|i| i as u32).collect();
    group(&mut c, "Vec<u32>", words.clone());
    element_rows(&mut c, "Vec<u32>", &words);
    group(&mut c, "Packed<f64>", Packed::new(floats));
    // The voxels workload's index lists: small `usize`s (a coordinate of a 256³ image).
    let coordinates: Vec<usize> = (0..BYTES / 8).map(|i| i % 256).collect();
    group(&mut c, "Vec<usize> below 256", coordinates.clone());
    element_rows(&mut c, "Vec<usize> below 256", &coordinates);
    c.final_summary();
}
