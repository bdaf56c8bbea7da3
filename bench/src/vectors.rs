//! A set of equal-length float vectors in one row-major buffer, and the distance metrics the
//! benchmark asks servers to search by (each with its pgvector operator and operator class).

use serde::Serialize;

/// `len()` vectors of `dim()` floats, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Vectors {
    dim: usize,
    data: Vec<f32>,
}

impl Vectors {
    pub fn new(dim: usize, data: Vec<f32>) -> Vectors {
        assert!(dim > 0, "vectors have at least one dimension");
        assert_eq!(data.len() % dim, 0, "the buffer holds whole vectors");
        Vectors { dim, data }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    pub fn rows(&self) -> impl ExactSizeIterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim)
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// The first `n` vectors (all of them when there are fewer).
    pub fn truncated(mut self, n: usize) -> Vectors {
        self.data.truncate(n.min(self.len()) * self.dim);
        self
    }
}

/// How distance is measured: the ground truth and the server's operator must agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Euclidean distance, pgvector's `<->`.
    L2,
    /// Cosine distance, pgvector's `<=>`.
    Cosine,
    /// Negative inner product, pgvector's `<#>`.
    Ip,
}

impl Metric {
    /// The pgvector operator that orders by this metric.
    pub fn operator(self) -> &'static str {
        match self {
            Metric::L2 => "<->",
            Metric::Cosine => "<=>",
            Metric::Ip => "<#>",
        }
    }

    /// The pgvector operator class an HNSW index on this metric uses.
    pub fn opclass(self) -> &'static str {
        match self {
            Metric::L2 => "vector_l2_ops",
            Metric::Cosine => "vector_cosine_ops",
            Metric::Ip => "vector_ip_ops",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::Cosine => "cosine",
            Metric::Ip => "ip",
        }
    }

    /// A distance that orders vectors as the server's operator does (L2 is left squared,
    /// which orders the same). `b_norm` is `|b|`, precomputed for cosine.
    pub fn distance(self, a: &[f32], b: &[f32], a_norm: f32, b_norm: f32) -> f32 {
        match self {
            Metric::L2 => squared_l2(a, b),
            Metric::Ip => -dot(a, b),
            Metric::Cosine => {
                let denominator = a_norm * b_norm;
                if denominator == 0.0 {
                    // pgvector answers NaN for a zero vector; it sorts last there.
                    f32::INFINITY
                } else {
                    1.0 - dot(a, b) / denominator
                }
            }
        }
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    reduce(a, b, |x, y| x * y)
}

pub fn squared_l2(a: &[f32], b: &[f32]) -> f32 {
    reduce(a, b, |x, y| (x - y) * (x - y))
}

/// The sum of `term` over the pairs of elements, in eight independent accumulators so the
/// compiler keeps them in vector registers.
#[inline(always)]
fn reduce(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut lanes = [0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b8, b_rest) = b.split_at(a8.len());
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for i in 0..8 {
            lanes[i] += term(x[i], y[i]);
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| term(*x, *y)).sum();
    lanes.iter().sum::<f32>() + tail
}

pub fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_slices_of_the_buffer() {
        let v = Vectors::new(2, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(v.len(), 3);
        assert_eq!(v.row(1), &[3.0, 4.0]);
        assert_eq!(v.rows().last(), Some(&[5.0, 6.0][..]));
        assert_eq!(v.truncated(2).as_slice(), &[1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn distances_match_their_definitions() {
        // 11 dimensions: eight in the unrolled loop, three in the tail.
        let a: Vec<f32> = (0..11).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..11).map(|i| (i * i) as f32 * 0.5).collect();
        let naive_dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let naive_l2: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        assert!((dot(&a, &b) - naive_dot).abs() < 1e-3);
        assert!((squared_l2(&a, &b) - naive_l2).abs() < 1e-3);
        let (na, nb) = (norm(&a), norm(&b));
        assert!((Metric::Ip.distance(&a, &b, na, nb) + naive_dot).abs() < 1e-3);
        let cosine = Metric::Cosine.distance(&a, &b, na, nb);
        assert!((cosine - (1.0 - naive_dot / (na * nb))).abs() < 1e-6);
        assert_eq!(
            Metric::Cosine.distance(&a, &[0.0; 11], na, 0.0),
            f32::INFINITY
        );
    }
}
