//! Exact nearest neighbours (the ground truth recall is measured against), by brute force on
//! every core, and recall@k of a server's answers against them.

use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::ProgressBar;

use crate::vectors::{Metric, Vectors, norm};

/// For each query, the ids (row numbers in `base`) of its `k` nearest base vectors, nearest
/// first; equal distances are ordered by id. `progress` counts finished queries.
pub fn exact_top_k(
    base: &Vectors,
    queries: &Vectors,
    metric: Metric,
    k: usize,
    progress: &ProgressBar,
) -> Vec<Vec<u32>> {
    assert_eq!(
        base.dim(),
        queries.dim(),
        "base and queries have the same dimension"
    );
    assert!(base.len() <= u32::MAX as usize, "ids fit in u32");
    let k = k.min(base.len());
    let base_norms: Vec<f32> = match metric {
        Metric::Cosine => base.rows().map(norm).collect(),
        Metric::L2 | Metric::Ip => vec![0.0; base.len()],
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicUsize::new(0);
    let mut answers: Vec<Vec<u32>> = vec![Vec::new(); queries.len()];
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut found = Vec::new();
                    let mut scratch = Vec::with_capacity(base.len());
                    loop {
                        let q = next.fetch_add(1, Ordering::Relaxed);
                        if q >= queries.len() {
                            return found;
                        }
                        let query = queries.row(q);
                        let query_norm = norm(query);
                        scratch.clear();
                        scratch.extend(base.rows().zip(&base_norms).enumerate().map(
                            |(id, (row, &row_norm))| {
                                (metric.distance(query, row, query_norm, row_norm), id as u32)
                            },
                        ));
                        found.push((q, nearest(&mut scratch, k)));
                        progress.inc(1);
                    }
                })
            })
            .collect();
        for worker in workers {
            for (q, ids) in worker.join().expect("a ground-truth worker panicked") {
                answers[q] = ids;
            }
        }
    });
    debug_assert!(answers.iter().all(|a| a.len() == k));
    answers
}

/// The ids of the `k` smallest `(distance, id)` pairs, in order.
fn nearest(scored: &mut [(f32, u32)], k: usize) -> Vec<u32> {
    let order = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    if k < scored.len() {
        scored.select_nth_unstable_by(k, order);
    }
    let top = &mut scored[..k];
    top.sort_unstable_by(order);
    top.iter().map(|&(_, id)| id).collect()
}

/// recall@k: the share of the true `k` nearest neighbours found among the first `k` ids
/// answered, over all queries. Answers and truth are in the same query order; a truth row
/// needs at least `k` ids.
pub fn recall_at(k: usize, answers: &[Vec<u32>], truth: &[Vec<u32>]) -> f64 {
    assert_eq!(answers.len(), truth.len(), "one answer per query");
    if answers.is_empty() || k == 0 {
        return 0.0;
    }
    let mut hits = 0usize;
    for (answer, true_ids) in answers.iter().zip(truth) {
        assert!(
            true_ids.len() >= k,
            "the ground truth holds {} ids, not {k}",
            true_ids.len()
        );
        let wanted = &true_ids[..k];
        // Duplicate ids in an answer count once.
        let mut seen: Vec<u32> = answer.iter().take(k).copied().collect();
        seen.sort_unstable();
        seen.dedup();
        hits += seen.iter().filter(|id| wanted.contains(id)).count();
    }
    hits as f64 / (k * answers.len()) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(points: &[f32]) -> Vectors {
        Vectors::new(1, points.to_vec())
    }

    #[test]
    fn exact_search_orders_by_distance_then_id() {
        let base = line(&[0.0, 10.0, 3.0, -3.0, 4.0]);
        let queries = line(&[0.5, 9.0]);
        let truth = exact_top_k(&base, &queries, Metric::L2, 3, &ProgressBar::hidden());
        // For 0.5: 0, then 2 (2.5 away), then 3 and 4 tie (3.5 away) and the lower id wins.
        assert_eq!(truth, vec![vec![0, 2, 3], vec![1, 4, 2]]);
        // Ties broken by id: -1 and 1 are both at distance 1 from 0.
        let tied = exact_top_k(
            &line(&[1.0, -1.0, 5.0]),
            &line(&[0.0]),
            Metric::L2,
            2,
            &ProgressBar::hidden(),
        );
        assert_eq!(tied, vec![vec![0, 1]]);
    }

    #[test]
    fn exact_search_agrees_with_a_naive_sort_for_every_metric() {
        let (base, queries) = crate::synthetic::gaussian_mixture(400, 25, 12, 3);
        for metric in [Metric::L2, Metric::Cosine, Metric::Ip] {
            let truth = exact_top_k(&base, &queries, metric, 10, &ProgressBar::hidden());
            for (q, found) in truth.iter().enumerate() {
                let query = queries.row(q);
                let mut all: Vec<(f32, u32)> = (0..base.len())
                    .map(|i| {
                        let row = base.row(i);
                        (
                            metric.distance(query, row, norm(query), norm(row)),
                            i as u32,
                        )
                    })
                    .collect();
                all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let want: Vec<u32> = all[..10].iter().map(|p| p.1).collect();
                assert_eq!(found, &want, "{metric:?}, query {q}");
            }
        }
    }

    #[test]
    fn k_beyond_the_base_returns_every_row() {
        let truth = exact_top_k(
            &line(&[2.0, 1.0]),
            &line(&[0.0]),
            Metric::L2,
            100,
            &ProgressBar::hidden(),
        );
        assert_eq!(truth, vec![vec![1, 0]]);
    }

    #[test]
    fn recall_counts_true_neighbours_among_the_first_k() {
        let truth = vec![vec![1, 2, 3, 9], vec![4, 5, 6, 9]];
        // 2 of 3, then 3 of 3 (order within the k does not matter).
        let answers = vec![vec![1, 7, 3], vec![6, 4, 5]];
        assert!((recall_at(3, &answers, &truth) - 5.0 / 6.0).abs() < 1e-12);
        // Short answers miss; ids past k are not looked at; duplicates count once.
        let answers = vec![vec![1], vec![4, 4, 4, 5]];
        assert!((recall_at(3, &answers, &truth) - 2.0 / 6.0).abs() < 1e-12);
        assert_eq!(recall_at(3, &[], &[]), 0.0);
    }
}
