//! The seeded synthetic dataset: a Gaussian mixture shaped like `shared/bench`'s synthetic set
//! (1,000 centres from N(0, 1), each cluster with its own width in [0.3, 0.8] and its own
//! weight). Real embeddings have clusters; uniform noise would make every index look worse
//! than it is on real data.

use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, Gamma, Normal};

use crate::vectors::Vectors;

const MAX_CENTRES: usize = 1000;

/// `rows` base vectors and `queries` query vectors of `dim` floats, drawn from the same
/// clusters. The same seed gives the same data, whatever the machine.
pub fn gaussian_mixture(rows: usize, queries: usize, dim: usize, seed: u64) -> (Vectors, Vectors) {
    assert!(dim > 0, "vectors have at least one dimension");
    let mut rng = StdRng::seed_from_u64(seed);
    let unit = Normal::new(0.0f32, 1.0).expect("a unit normal");
    // Small sets get fewer clusters, so each still has ~100 members.
    let centres = (rows / 100).clamp(1, MAX_CENTRES);
    let clusters: Vec<(Vec<f32>, f32)> = (0..centres)
        .map(|_| {
            let centre = (0..dim).map(|_| unit.sample(&mut rng)).collect();
            (centre, rng.random_range(0.3f32..0.8))
        })
        .collect();
    // Dirichlet(2, …, 2) weights: cluster sizes differ, as real topics do.
    let gamma = Gamma::new(2.0f64, 1.0).expect("a gamma distribution");
    let mut cumulative: Vec<f64> = (0..centres).map(|_| gamma.sample(&mut rng)).collect();
    for i in 1..centres {
        cumulative[i] += cumulative[i - 1];
    }
    let total = cumulative[centres - 1];
    let draw = |n: usize, rng: &mut StdRng| {
        let mut data = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let u = rng.random::<f64>() * total;
            let c = cumulative.partition_point(|&w| w <= u).min(centres - 1);
            let (centre, sigma) = &clusters[c];
            data.extend(centre.iter().map(|x| x + sigma * unit.sample(rng)));
        }
        Vectors::new(dim, data)
    };
    let base = draw(rows, &mut rng);
    // Queries come from their own stream, so asking for more queries leaves the base alone.
    let mut query_rng = StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
    let queries = draw(queries, &mut query_rng);
    (base, queries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_decides_the_data() {
        let (a, qa) = gaussian_mixture(500, 20, 8, 7);
        let (b, qb) = gaussian_mixture(500, 20, 8, 7);
        assert_eq!((a.len(), a.dim(), qa.len()), (500, 8, 20));
        assert_eq!(a, b);
        assert_eq!(qa, qb);
        let (c, _) = gaussian_mixture(500, 20, 8, 8);
        assert_ne!(a, c);
        // More queries, same base.
        let (d, qd) = gaussian_mixture(500, 30, 8, 7);
        assert_eq!(d, a);
        assert_eq!(qd.row(0), qa.row(0));
    }

    #[test]
    fn points_cluster_around_their_centres() {
        // One centre: two points differ by 2 * sigma^2 per dimension in expectation, at most
        // 1.28 (sigma < 0.8), where points of two independent clusters differ by at least 2.
        let (v, _) = gaussian_mixture(50, 0, 64, 1);
        let mean_sq: f32 = (1..v.len())
            .map(|i| crate::vectors::squared_l2(v.row(0), v.row(i)))
            .sum::<f32>()
            / (v.len() - 1) as f32;
        assert!(mean_sq < 64.0 * 1.6, "{mean_sq}");
        assert!(v.as_slice().iter().all(|x| x.is_finite()));
    }
}
