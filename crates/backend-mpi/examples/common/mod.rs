//! What the MPI examples share: reading `--name value` arguments and making the test data.

// Each example uses what it needs of this module.
#![allow(dead_code)]

/// The number after `name` on the command line, or `default`.
pub(crate) fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

/// `mb` MB of pseudo-random values in [0, 1): xorshift, so no dependency and the same data
/// every run.
pub(crate) fn random_data(mb: usize) -> Vec<f64> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..mb * (1_048_576 / 8))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect()
}
