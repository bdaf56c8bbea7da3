//! Seeded synthetic vectors for tests and benchmarks.
//!
//! The Gaussian mixture has the shape of `shared/bench`'s synthetic set: 1,000 centres drawn
//! from N(0, 1), each cluster with its own width in [0.3, 0.8]. Real embeddings have clusters;
//! uniform noise would make every index look worse than it is on real data.

use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, Normal};

const CENTRES: usize = 1000;

/// `n` row-major vectors of `dims` floats from the mixture seeded by `seed`. The same seed
/// gives the same centres, so `gaussian_mixture(n + q, ..)` split at `n` yields queries from
/// the same clusters as the data.
pub fn gaussian_mixture(n: usize, dims: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let unit = Normal::new(0.0f32, 1.0).expect("unit normal");
    let clusters: Vec<(Vec<f32>, f32)> = (0..CENTRES)
        .map(|_| {
            let centre = (0..dims).map(|_| unit.sample(&mut rng)).collect();
            (centre, rng.random_range(0.3f32..0.8))
        })
        .collect();
    let mut out = Vec::with_capacity(n * dims);
    for _ in 0..n {
        let (centre, sigma) = &clusters[rng.random_range(0..CENTRES)];
        out.extend(centre.iter().map(|x| x + sigma * unit.sample(&mut rng)));
    }
    out
}
