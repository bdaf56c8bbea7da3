//! A small mutation fuzzer for the parsers that read what clients and other nodes send:
//! protocol frames, SQL text, vector text, COPY data, Flight tickets and actions, snapshots.
//! Each crate's tests run its targets through [`run`] (no nightly toolchain needed): inputs
//! grow from seed inputs by bit flips, byte changes, inserted and deleted runs, splices and
//! boundary values, from a fixed seed, so a failure repeats.
//!
//! A target fails when it panics. `cargo test` runs a short pass (`VECRAFT_FUZZ_ITERATIONS`,
//! default 2,000 per target); the long run is the same tests with a larger count, in release:
//!
//! ```text
//! VECRAFT_FUZZ_ITERATIONS=1000000 cargo test --release --workspace fuzz_ -- --nocapture
//! ```

use std::panic::{AssertUnwindSafe, catch_unwind};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Iterations per target when `VECRAFT_FUZZ_ITERATIONS` does not say.
pub const DEFAULT_ITERATIONS: u64 = 2_000;

/// Runs `target` on `iterations()` inputs grown from `seeds`; panics (failing the test) with
/// the first input that made `target` panic, after saying how many ran.
pub fn run(name: &str, seeds: &[&[u8]], target: impl Fn(&[u8])) {
    let iterations = iterations();
    let mut rng = StdRng::seed_from_u64(0x5eed ^ name.len() as u64);
    let mut corpus: Vec<Vec<u8>> = seeds.iter().map(|s| s.to_vec()).collect();
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    // Panics are expected to be caught here; keep the output to the report.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    // An input that hangs rather than panics: with VECRAFT_FUZZ_TRACE=FILE, each input is
    // written there before it runs, so the file holds the one that hung.
    let trace = std::env::var_os("VECRAFT_FUZZ_TRACE");
    let mut failure = None;
    for i in 0..iterations {
        let parent = &corpus[rng.random_range(0..corpus.len())];
        let input = mutate(parent, &corpus, &mut rng);
        if let Some(path) = &trace {
            let _ = std::fs::write(path, &input);
        }
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            failure = Some((i, input));
            break;
        }
        if corpus.len() < 256 && rng.random_ratio(1, 16) {
            corpus.push(input);
        }
    }
    std::panic::set_hook(hook);
    if let Some((i, input)) = failure {
        panic!(
            "fuzz target {name} panicked at input {i} of {iterations}: {:?}",
            String::from_utf8_lossy(&input)
        );
    }
    eprintln!("fuzz target {name}: {iterations} inputs, 0 panics");
}

/// How many inputs each target runs.
pub fn iterations() -> u64 {
    std::env::var("VECRAFT_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ITERATIONS)
}

/// Bytes that often sit on a parser's edge.
const INTERESTING: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, b'\n', b'\r', b'\t', b'\\', b'"', b'\'', b',', b'[', b']', b'(', b')',
    b'-', b'.', b'e', b'E', b';', b'$', b'N',
];

fn mutate(parent: &[u8], corpus: &[Vec<u8>], rng: &mut StdRng) -> Vec<u8> {
    let mut out = parent.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = out.len();
        match rng.random_range(0..8) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] = INTERESTING[rng.random_range(0..INTERESTING.len())];
            }
            2 => {
                let i = rng.random_range(0..=len);
                let run: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
                out.splice(i..i, run);
            }
            3 if len > 0 => {
                let i = rng.random_range(0..len);
                let end = (i + rng.random_range(1..16)).min(len);
                out.drain(i..end);
            }
            4 => {
                // A splice with another input.
                let other = &corpus[rng.random_range(0..corpus.len())];
                let cut = rng.random_range(0..=len);
                let from = rng.random_range(0..=other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            5 if len >= 4 => {
                // A length or count field at its edge.
                let i = rng.random_range(0..len - 3);
                let value: u32 =
                    [0, 1, 3, 4, u32::MAX, i32::MAX as u32, 0x8000_0000][rng.random_range(0..7)];
                out[i..i + 4].copy_from_slice(&value.to_be_bytes());
            }
            6 if len > 0 => {
                // Repeat a piece: long runs, deep nesting.
                let i = rng.random_range(0..len);
                let end = (i + rng.random_range(1..8)).min(len);
                let piece = out[i..end].to_vec();
                for _ in 0..rng.random_range(1..64) {
                    out.splice(i..i, piece.iter().copied());
                }
            }
            _ => out.truncate(rng.random_range(0..=len)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "fuzz target finds panicked")]
    fn a_panicking_target_fails_with_its_input() {
        run("finds", &[b"abc"], |input| assert!(!input.contains(&b'z')));
    }
}
