//! Distance kernels and metrics, shared by brute-force search, the HNSW graph and the planner.
//!
//! The kernels work on contiguous `f32` slices. Each is written once as an `#[inline(always)]`
//! body with eight independent accumulators (so LLVM vectorises it) and compiled twice: for the
//! baseline target and with AVX2 + FMA. The best variant is picked once, at first use, by
//! runtime CPU detection; callers never see the difference.
//!
//! Metrics follow pgvector: `<->` is the Euclidean distance, `<#>` the negative inner product,
//! `<=>` the cosine distance (`1 - cos`, NaN when either vector is zero), `<+>` the L1 distance.
//! Searches rank by a cheaper monotone *score* (squared L2 for `<->`) and convert the winners.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The distance a vector column is searched by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Euclidean distance, pgvector's `<->` and `vector_l2_ops`.
    L2,
    /// Cosine distance `1 - cos(a, b)`, pgvector's `<=>` and `vector_cosine_ops`.
    Cosine,
    /// Negative inner product `-(a · b)`, pgvector's `<#>` and `vector_ip_ops`.
    InnerProduct,
    /// Manhattan distance, pgvector's `<+>` and `vector_l1_ops`.
    L1,
}

impl Metric {
    /// Parses the names users write: `l2`/`euclidean`, `cosine`, `ip`/`inner_product`/`dot`, `l1`.
    pub fn parse(name: &str) -> Result<Metric> {
        match name.trim().to_ascii_lowercase().as_str() {
            "l2" | "euclidean" | "vector_l2_ops" => Ok(Metric::L2),
            "cosine" | "vector_cosine_ops" => Ok(Metric::Cosine),
            "ip" | "inner_product" | "dot" | "vector_ip_ops" => Ok(Metric::InnerProduct),
            "l1" | "manhattan" | "taxicab" | "vector_l1_ops" => Ok(Metric::L1),
            other => Err(Error::InvalidArgument(format!(
                "unknown metric \"{other}\" (expected l2, cosine, inner_product or l1)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::Cosine => "cosine",
            Metric::InnerProduct => "inner_product",
            Metric::L1 => "l1",
        }
    }

    /// The pgvector distance between two vectors of equal length, computed as pgvector does:
    /// sums in `f32`, the square root and division in `f64`. (pgvector's sums are compiled
    /// with FMA and GCC's vectorised order, so the last bits can differ; see the planner's
    /// `distances_print_as_pgvector_prints_them`.)
    pub fn distance(self, a: &[f32], b: &[f32]) -> f64 {
        match self {
            Metric::L2 => (l2_squared(a, b) as f64).sqrt(),
            Metric::Cosine => {
                let (ab, aa, bb) = (dot(a, b) as f64, dot(a, a) as f64, dot(b, b) as f64);
                let similarity = ab / (aa * bb).sqrt();
                if similarity.is_nan() {
                    return f64::NAN;
                }
                1.0 - similarity.clamp(-1.0, 1.0)
            }
            Metric::InnerProduct => -(dot(a, b) as f64),
            Metric::L1 => l1(a, b) as f64,
        }
    }

    /// The score searches rank by: monotone in `distance`, cheaper to compute.
    /// `inv_norm_a`/`inv_norm_b` are only read for `Cosine`.
    #[inline]
    pub fn score(self, a: &[f32], b: &[f32], inv_norm_a: f32, inv_norm_b: f32) -> f32 {
        match self {
            Metric::L2 => l2_squared(a, b),
            Metric::Cosine => cosine_from_parts(dot(a, b), inv_norm_a, inv_norm_b),
            Metric::InnerProduct => -dot(a, b),
            Metric::L1 => l1(a, b),
        }
    }

    /// Converts a `score` into the user-visible distance.
    #[inline]
    pub fn score_to_distance(self, score: f32) -> f32 {
        match self {
            Metric::L2 => score.sqrt(),
            _ => score,
        }
    }

    /// Whether the metric divides by norms, so a segment keeps `1/|v|` beside each vector.
    pub fn needs_norms(self) -> bool {
        self == Metric::Cosine
    }
}

/// `1 - a·b / (|a| |b|)`, clamped to pgvector's `[0, 2]`; NaN when a norm is zero.
#[inline]
pub fn cosine_from_parts(dot: f32, inv_norm_a: f32, inv_norm_b: f32) -> f32 {
    if inv_norm_a == 0.0 || inv_norm_b == 0.0 {
        return f32::NAN;
    }
    (1.0 - dot * inv_norm_a * inv_norm_b).clamp(0.0, 2.0)
}

/// `1 / |v|`, or 0 for the zero vector.
#[inline]
pub fn inv_norm(v: &[f32]) -> f32 {
    let n = dot(v, v).sqrt();
    if n > 0.0 { 1.0 / n } else { 0.0 }
}

/// Euclidean norm `|v|`.
pub fn norm(v: &[f32]) -> f32 {
    dot(v, v).sqrt()
}

/// Rejects vectors of the wrong length or holding NaN/Inf.
pub fn validate_vector(v: &[f32], dims: usize) -> Result<()> {
    if v.len() != dims {
        return Err(Error::DimensionMismatch {
            expected: dims,
            actual: v.len(),
        });
    }
    if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
        let what = if bad.is_nan() {
            "NaN"
        } else {
            "infinite value"
        };
        return Err(Error::InvalidVector(format!(
            "{what} not allowed in vector"
        )));
    }
    Ok(())
}

type Kernel = fn(&[f32], &[f32]) -> f32;

struct Kernels {
    l2_squared: Kernel,
    dot: Kernel,
    l1: Kernel,
}

static KERNELS: LazyLock<Kernels> = LazyLock::new(select_kernels);

fn select_kernels() -> Kernels {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        return Kernels {
            l2_squared: avx2::l2_squared,
            dot: avx2::dot,
            l1: avx2::l1,
        };
    }
    Kernels {
        l2_squared: portable::l2_squared,
        dot: portable::dot,
        l1: portable::l1,
    }
}

/// Squared Euclidean distance.
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    (KERNELS.l2_squared)(a, b)
}

/// Inner product.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    (KERNELS.dot)(a, b)
}

/// Manhattan distance.
#[inline]
pub fn l1(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    (KERNELS.l1)(a, b)
}

/// The kernel bodies, generic over how two lanes combine; compiled once per target below.
mod body {
    /// Four independent 8-wide accumulators: enough to hide FMA latency on AVX2.
    const LANES: usize = 32;

    #[inline(always)]
    pub fn reduce(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        let mut acc = [0.0f32; LANES];
        let (a_chunks, a_tail) = a.as_chunks::<LANES>();
        let (b_chunks, b_tail) = b.as_chunks::<LANES>();
        for (xa, xb) in a_chunks.iter().zip(b_chunks) {
            for i in 0..LANES {
                acc[i] += term(xa[i], xb[i]);
            }
        }
        let mut tail = 0.0f32;
        for (x, y) in a_tail.iter().zip(b_tail) {
            tail += term(*x, *y);
        }
        let mut width = LANES;
        while width > 1 {
            width /= 2;
            for i in 0..width {
                acc[i] += acc[i + width];
            }
        }
        acc[0] + tail
    }

    #[inline(always)]
    pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        reduce(a, b, |x, y| (x - y) * (x - y))
    }

    #[inline(always)]
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        reduce(a, b, |x, y| x * y)
    }

    #[inline(always)]
    pub fn l1(a: &[f32], b: &[f32]) -> f32 {
        reduce(a, b, |x, y| (x - y).abs())
    }
}

mod portable {
    pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        super::body::l2_squared(a, b)
    }
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        super::body::dot(a, b)
    }
    pub fn l1(a: &[f32], b: &[f32]) -> f32 {
        super::body::l1(a, b)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    #[target_feature(enable = "avx2,fma")]
    fn l2_squared_impl(a: &[f32], b: &[f32]) -> f32 {
        super::body::l2_squared(a, b)
    }
    #[target_feature(enable = "avx2,fma")]
    fn dot_impl(a: &[f32], b: &[f32]) -> f32 {
        super::body::dot(a, b)
    }
    #[target_feature(enable = "avx2,fma")]
    fn l1_impl(a: &[f32], b: &[f32]) -> f32 {
        super::body::l1(a, b)
    }

    // SAFETY (all three): only installed by `select_kernels` after runtime detection of AVX2
    // and FMA on this CPU.
    pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        unsafe { l2_squared_impl(a, b) }
    }
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        unsafe { dot_impl(a, b) }
    }
    pub fn l1(a: &[f32], b: &[f32]) -> f32 {
        unsafe { l1_impl(a, b) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(metric: Metric, a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        match metric {
            Metric::L2 => a
                .iter()
                .zip(b)
                .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
                .sum::<f64>()
                .sqrt(),
            Metric::Cosine => 1.0 - dot / (na * nb),
            Metric::InnerProduct => -dot,
            Metric::L1 => a
                .iter()
                .zip(b)
                .map(|(x, y)| (*x as f64 - *y as f64).abs())
                .sum(),
        }
    }

    #[test]
    fn kernels_match_a_naive_sum_for_every_length() {
        for len in 0..70usize {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos() + 0.5).collect();
            for metric in [Metric::L2, Metric::InnerProduct, Metric::L1] {
                let got = metric.distance(&a, &b);
                let want = naive(metric, &a, &b);
                assert!(
                    (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{metric:?} {len}"
                );
            }
            let got = Metric::Cosine.distance(&a, &b);
            let want = naive(Metric::Cosine, &a, &b).clamp(0.0, 2.0);
            assert!(
                (got - want).abs() <= 1e-5 || (got.is_nan() && want.is_nan()),
                "cosine {len}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn pgvector_examples() {
        let (a, b) = ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]);
        assert_eq!(Metric::L2.distance(&a, &b), 27.0f64.sqrt());
        assert_eq!(Metric::InnerProduct.distance(&a, &b), -32.0);
        assert_eq!(Metric::L1.distance(&a, &b), 9.0);
        assert!(Metric::Cosine.distance(&[0.0, 0.0], &[1.0, 1.0]).is_nan());
        assert_eq!(Metric::Cosine.distance(&[1.0, 1.0], &[2.0, 2.0]), 0.0);
        assert_eq!(Metric::Cosine.distance(&[1.0, 0.0], &[-1.0, 0.0]), 2.0);
    }

    #[test]
    fn score_orders_like_distance() {
        let q = [0.5f32, -1.0, 2.0];
        let (x, y) = ([0.0f32, 0.0, 2.0], [3.0f32, 1.0, -1.0]);
        for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct, Metric::L1] {
            let (nq, nx, ny) = (inv_norm(&q), inv_norm(&x), inv_norm(&y));
            let by_score = metric.score(&q, &x, nq, nx) < metric.score(&q, &y, nq, ny);
            let by_distance = metric.distance(&q, &x) < metric.distance(&q, &y);
            assert_eq!(by_score, by_distance, "{metric:?}");
            let s = metric.score(&q, &x, nq, nx);
            assert!((metric.score_to_distance(s) as f64 - metric.distance(&q, &x)).abs() < 1e-6);
        }
    }

    #[test]
    fn validation_rejects_bad_vectors() {
        assert!(validate_vector(&[1.0, 2.0], 2).is_ok());
        assert!(matches!(
            validate_vector(&[1.0], 2),
            Err(Error::DimensionMismatch {
                expected: 2,
                actual: 1
            })
        ));
        assert!(matches!(
            validate_vector(&[f32::NAN, 1.0], 2),
            Err(Error::InvalidVector(_))
        ));
        assert!(matches!(
            validate_vector(&[f32::INFINITY, 1.0], 2),
            Err(Error::InvalidVector(_))
        ));
        assert!(Metric::parse("COSINE").is_ok());
        assert!(Metric::parse("hamming").is_err());
    }
}
