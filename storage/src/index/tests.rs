//! Index tests: graph search against brute force, filters, the file round trip.

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::VectorIndex;
use super::build::{BuildOptions, build_graph, build_graph_with, indexable_rows};
use super::file::{self, ColumnFile};
use super::graph::brute_force;
use super::vectors::{Query, VectorStore};
use crate::distance::Metric;
use crate::schema::HnswParams;

fn random_vectors(n: usize, dims: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n * dims)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect()
}

/// Recall@10 at `ef` 64 of a graph over `n` random rows, searched over the floats and, from
/// `sq8::MIN_DIMS` dimensions up, over SQ8 codes as a sealed segment searches it.
fn recall(metric: Metric, n: usize, dims: usize) -> (f64, Option<f64>) {
    let store = VectorStore::from_vec(dims, random_vectors(n, dims, 7));
    let rows = indexable_rows(&store, metric, &|_| false);
    let graph = build_graph(&store, &rows, metric, HnswParams::default()).unwrap();
    let queries = random_vectors(50, dims, 99);
    let of = |graph: &super::graph::HnswGraph| {
        let mut hits = 0;
        for q in queries.chunks_exact(dims) {
            let q = Query::new(q.to_vec());
            let exact = brute_force(store.len(), |r| store.score(metric, &q, r), 10, &|_| true);
            let approx = graph.search(&store.view(), metric, &q, 10, 64, &|_| true);
            assert_eq!(approx.len(), 10);
            assert!(
                approx.windows(2).all(|w| w[0].score <= w[1].score),
                "sorted"
            );
            hits += approx
                .iter()
                .filter(|a| exact.iter().any(|e| e.row == a.row))
                .count();
        }
        hits as f64 / 500.0
    };
    let quantised = (dims >= super::sq8::MIN_DIMS).then(|| {
        let mut walked = graph.clone();
        walked.codes = Some(std::sync::Arc::new(super::sq8::Sq8::encode(&store.view())));
        of(&walked)
    });
    (of(&graph), quantised)
}

#[test]
fn graph_search_finds_the_true_neighbours_for_every_metric() {
    for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct, Metric::L1] {
        let (r, _) = recall(metric, 3000, 16);
        assert!(r >= 0.9, "{metric:?} recall {r}");
        // Uniform noise in 96 dimensions is hard for any graph (about 0.9 at this `ef`); the
        // build walked codes, and a walk over codes finds what a walk over floats finds.
        let (floats, codes) = recall(metric, 3000, 96);
        let codes = codes.expect("96 dimensions walk codes");
        assert!(
            floats >= 0.85,
            "{metric:?} recall {floats} at 96 dimensions"
        );
        assert!(
            codes >= floats - 0.02,
            "{metric:?} recall over SQ8 {codes} against {floats} over floats"
        );
    }
}

#[test]
fn filtered_search_returns_k_passing_rows() {
    let dims = 8;
    let store = VectorStore::from_vec(dims, random_vectors(4000, dims, 3));
    let rows = indexable_rows(&store, Metric::L2, &|_| false);
    let graph = build_graph(&store, &rows, Metric::L2, HnswParams::default()).unwrap();
    let q = Query::new(vec![0.1; dims]);
    // 1% of rows pass.
    let accept = |row: u32| row % 100 == 7;
    let got = graph.search(&store.view(), Metric::L2, &q, 10, 40, &accept);
    assert_eq!(got.len(), 10);
    assert!(got.iter().all(|h| accept(h.row)));
    let exact = brute_force(store.len(), |r| store.score(Metric::L2, &q, r), 10, &accept);
    let overlap = got
        .iter()
        .filter(|g| exact.iter().any(|e| e.row == g.row))
        .count();
    assert!(overlap >= 8, "overlap {overlap}");
}

#[test]
fn column_file_round_trips_and_detects_corruption() {
    let dims = 12;
    let store = VectorStore::from_vec(dims, random_vectors(500, dims, 5));
    let rows = indexable_rows(&store, Metric::Cosine, &|r| r == 3);
    assert_eq!(rows.len(), 499);
    let graph = build_graph(&store, &rows, Metric::Cosine, HnswParams::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("col.vec");
    let column = ColumnFile {
        vectors: store.clone(),
        graph: Some((Metric::Cosine, graph.clone())),
    };
    file::write(&path, &column).unwrap();
    let back = file::open(&path).unwrap();
    assert_eq!(back.vectors.data(), store.data());
    let (metric, g) = back.graph.as_ref().unwrap();
    assert_eq!(*metric, Metric::Cosine);
    let q = Query::new(random_vectors(1, dims, 11));
    let a = graph.search(&store.view(), Metric::Cosine, &q, 5, 40, &|_| true);
    let b = g.search(&back.vectors.view(), Metric::Cosine, &q, 5, 40, &|_| true);
    assert_eq!(a, b);
    assert!(a.iter().all(|h| h.row != 3), "the null row is not indexed");

    drop(back);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        file::open(&path),
        Err(crate::error::Error::Corrupt { .. })
    ));
    std::fs::write(&path, &bytes[..10]).unwrap();
    assert!(file::open(&path).is_err());
}

#[test]
fn a_column_file_keeps_the_codes_its_build_made_and_reads_them_in_place() {
    let dims = super::sq8::MIN_DIMS;
    let store = VectorStore::from_vec(dims, random_vectors(600, dims, 7));
    let rows = indexable_rows(&store, Metric::L2, &|_| false);
    let graph = build_graph(&store, &rows, Metric::L2, HnswParams::default()).unwrap();
    let built = graph
        .codes
        .clone()
        .expect("a build from MIN_DIMS up makes codes");
    assert_eq!(built.len(), 600);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("col.vec");
    let mut column = ColumnFile {
        vectors: store.clone(),
        graph: Some((Metric::L2, graph.clone())),
    };
    file::write(&path, &column).unwrap();
    let back = file::open(&path).unwrap();
    let (_, g) = back.graph.as_ref().unwrap();
    let read = g.codes.as_ref().expect("codes stored in the file");
    assert!(read.is_mapped(), "codes are read from the map, not copied");
    assert_eq!(
        (read.lo(), read.step(), read.codes()),
        (built.lo(), built.step(), built.codes())
    );
    let q = Query::new(random_vectors(1, dims, 13));
    let a = graph.search(&store.view(), Metric::L2, &q, 10, 40, &|_| true);
    let b = g.search(&back.vectors.view(), Metric::L2, &q, 10, 40, &|_| true);
    assert_eq!(a, b);
    drop(back);

    // A flipped code byte is caught by the checksum like any other.
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last - 100] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        file::open(&path),
        Err(crate::error::Error::Corrupt { .. })
    ));

    // A file without codes (as written before they were stored) opens without them.
    column.graph.as_mut().unwrap().1.codes = None;
    file::write(&path, &column).unwrap();
    let back = file::open(&path).unwrap();
    assert!(back.graph.as_ref().unwrap().1.codes.is_none());
}

/// This process's resident bytes of the mapping that holds `addr` (`/proc/self/smaps`).
fn resident_bytes_of_mapping(addr: usize) -> usize {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-') {
            let parse = |hex| usize::from_str_radix(hex, 16).unwrap();
            inside = (parse(start)..parse(end)).contains(&addr);
        } else if inside && first == "Rss:" {
            let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
            return kb * 1024;
        }
    }
    panic!("no mapping holds {addr:#x}");
}

#[test]
fn opening_a_column_file_leaves_none_of_it_resident() {
    let dims = super::sq8::MIN_DIMS;
    let store = VectorStore::from_vec(dims, random_vectors(4000, dims, 3));
    let rows = indexable_rows(&store, Metric::L2, &|_| false);
    let graph = build_graph(&store, &rows, Metric::L2, HnswParams::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("col.vec");
    let column = ColumnFile {
        vectors: store,
        graph: Some((Metric::L2, graph)),
    };
    file::write(&path, &column).unwrap();
    let size_bytes = std::fs::metadata(&path).unwrap().len() as usize;
    assert!(size_bytes > 1 << 20, "a file of {size_bytes} bytes");

    let back = file::open(&path).unwrap();
    let addr = back.vectors.data().as_ptr() as usize;
    // The checksum and the graph's checks read every byte; none of it stays mapped in.
    assert_eq!(resident_bytes_of_mapping(addr), 0);
    let (_, g) = back.graph.as_ref().unwrap();
    let q = Query::new(random_vectors(1, dims, 4));
    assert_eq!(
        g.search(&back.vectors.view(), Metric::L2, &q, 10, 40, &|_| true)
            .len(),
        10
    );
    // ... and a search maps in what it reads (with the kernel's read-around, here all of it).
    assert!(resident_bytes_of_mapping(addr) > 0);
}

#[test]
fn zero_vectors_rank_last_under_cosine_in_brute_force() {
    let store = VectorStore::from_vec(2, vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0]);
    let q = Query::new(vec![1.0, 0.1]);
    let hits = brute_force(
        store.len(),
        |r| store.score(Metric::Cosine, &q, r),
        3,
        &|_| true,
    );
    assert_eq!(
        hits.iter().map(|h| h.row).collect::<Vec<_>>(),
        vec![1, 2, 0]
    );
    assert!(hits[2].score.is_nan());
}

/// Checks what every built graph must hold: lists within their width, no self links, no
/// duplicates, links only between indexed nodes, and every indexed node reachable on layer 0
/// from the entry point.
fn assert_graph_invariants(graph: &super::graph::HnswGraph, rows: &[u32]) {
    graph.validate().expect("layout");
    let n = graph.shape.nodes as usize;
    let mut indexed = vec![false; n];
    for &r in rows {
        indexed[r as usize] = true;
    }
    let levels = graph.levels.as_slice();
    for node in 0..n as u32 {
        for layer in 0..=levels[node as usize] {
            let list = graph.neighbours(node, layer);
            let width = if layer == 0 {
                graph.shape.m0
            } else {
                graph.shape.m
            };
            assert!(
                list.len() <= width as usize,
                "node {node} layer {layer} too long"
            );
            assert!(!list.contains(&node), "node {node} links to itself");
            let mut sorted = list.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(
                sorted.len(),
                list.len(),
                "node {node} layer {layer} duplicates"
            );
            if !indexed[node as usize] {
                assert!(list.is_empty(), "unindexed node {node} has links");
            }
            assert!(
                list.iter().all(|&v| indexed[v as usize]),
                "node {node} links to an unindexed node"
            );
        }
    }
    let mut reached = vec![false; n];
    let mut stack = vec![graph.shape.entry];
    reached[graph.shape.entry as usize] = true;
    while let Some(node) = stack.pop() {
        for &next in graph.neighbours(node, 0) {
            if !reached[next as usize] {
                reached[next as usize] = true;
                stack.push(next);
            }
        }
    }
    let strays = rows.iter().filter(|&&r| !reached[r as usize]).count();
    assert_eq!(strays, 0, "indexed nodes unreachable from the entry point");
}

#[test]
fn built_graphs_keep_their_invariants_on_random_and_clustered_data() {
    // 16 dimensions: inserts walk the floats; 64: they walk SQ8 codes.
    for (dims, n) in [(16, 20_000), (64, 5_000)] {
        graph_invariants_hold(dims, n);
    }
}

fn graph_invariants_hold(dims: usize, n: usize) {
    let uniform = random_vectors(n, dims, 21);
    let clustered = crate::synthetic::gaussian_mixture(n, dims, 22);
    for (name, data) in [("uniform", uniform), ("clustered", clustered)] {
        let store = VectorStore::from_vec(dims, data);
        // Every 50th row is null: a node of the layout, but not of the graph.
        let rows = indexable_rows(&store, Metric::L2, &|r| r % 50 == 0);
        for threads in [1, 2] {
            let params = HnswParams {
                m: 6,
                ef_construction: 24,
            };
            let options = BuildOptions { seed: 5, threads };
            let graph = build_graph_with(&store, &rows, Metric::L2, params, options).unwrap();
            assert!(graph.shape.max_level >= 2, "{name}: a multi-layer graph");
            assert_graph_invariants(&graph, &rows);
        }
    }
}

#[test]
fn one_thread_builds_the_same_graph_for_the_same_seed() {
    let dims = 8;
    let store = VectorStore::from_vec(dims, random_vectors(3000, dims, 8));
    let rows = indexable_rows(&store, Metric::Cosine, &|_| false);
    let build = |seed| {
        let options = BuildOptions { seed, threads: 1 };
        build_graph_with(
            &store,
            &rows,
            Metric::Cosine,
            HnswParams::default(),
            options,
        )
        .unwrap()
    };
    let (a, b, c) = (build(1), build(1), build(2));
    assert_eq!(a.level0.as_slice(), b.level0.as_slice());
    assert_eq!(a.upper.as_slice(), b.upper.as_slice());
    assert_eq!(a.shape, b.shape);
    assert_ne!(
        a.levels.as_slice(),
        c.levels.as_slice(),
        "the seed draws the levels"
    );
}

#[test]
fn a_live_index_answers_for_the_rows_it_took_and_scans_the_rest() {
    use super::live::LiveIndex;
    let dims = 16;
    let mut data = random_vectors(3000, dims, 31);
    data[7 * dims..8 * dims].fill(0.0); // a zero vector: outside a cosine graph
    let store = VectorStore::from_vec(dims, data);
    let mut nulls = roaring::RoaringBitmap::new();
    nulls.insert(9);
    let live = LiveIndex::new(Metric::Cosine, HnswParams::default(), dims).unwrap();
    assert!(LiveIndex::new(Metric::InnerProduct, HnswParams::default(), dims).is_none());

    // Take the first 2000 rows, in two batches as the feeder would.
    for _ in 0..2 {
        let backlog = live.backlog(store.view(), &nulls, 1000).unwrap();
        live.insert(&backlog);
    }
    assert_eq!(live.covered(), 2000);
    let accept = |row: u32| !nulls.contains(row);
    let view = store.view();
    let mut hits = 0;
    for row in (0..3000u32).step_by(150) {
        let q = Query::new(store.get(row).to_vec());
        let got = live.search(&view, Metric::Cosine, &q, 10, 40, &accept);
        let want = brute_force(3000, |r| view.score(Metric::Cosine, &q, r), 10, &accept);
        assert_eq!(got[0].row, row, "a row is its own nearest, taken or not");
        assert!(got.windows(2).all(|w| w[0] <= w[1]), "sorted");
        hits += got.iter().filter(|g| want.contains(g)).count();
    }
    assert!(hits as f64 / 200.0 >= 0.9, "recall {}", hits as f64 / 200.0);
    let all = live.search(
        &view,
        Metric::Cosine,
        &Query::new(vec![1.0; dims]),
        3000,
        40,
        &accept,
    );
    assert!(
        all.iter().all(|h| h.row != 9),
        "the null row is never a hit"
    );

    let rest = live.backlog(store.view(), &nulls, 5000).unwrap();
    live.insert(&rest);
    assert_eq!(live.covered(), 3000);
    assert!(live.backlog(store.view(), &nulls, 5000).is_none());
}

#[test]
fn rows_of_a_lattice_find_themselves() {
    // Two writers' rows, as in the crash test: a 3-d lattice, the second writer far away.
    let ids: Vec<i64> = (0..1600i64).chain(1_000_000..1_001_600).collect();
    let data: Vec<f32> = ids
        .iter()
        .flat_map(|i| [(i % 97) as f32, ((i * 7) % 31) as f32, (i / 10) as f32])
        .collect();
    let store = VectorStore::from_vec(3, data);
    let rows = indexable_rows(&store, Metric::L2, &|_| false);
    let misses = |threads: usize| {
        let mut misses = 0;
        for seed in 0..4 {
            let options = BuildOptions { seed, threads };
            let params = HnswParams::default();
            let graph = build_graph_with(&store, &rows, Metric::L2, params, options).unwrap();
            for row in 0..store.len() as u32 {
                let q = Query::new(store.get(row).to_vec());
                let got = graph.search(&store.view(), Metric::L2, &q, 1, 40, &|_| true);
                misses += usize::from(got[0].score != 0.0);
            }
        }
        misses
    };
    // Without the reverse links after the build, about 1% missed with either thread count;
    // with two threads, also when a new node's list overwrote links added to it meanwhile.
    assert_eq!(
        misses(1),
        0,
        "rows that did not find themselves, 1 build thread"
    );
    // Two build threads see each other's inserts half done (as hnswlib's do), so their graph
    // differs from run to run; on this lattice, all ties, 0 to 2 of the 12,800 lookups missed
    // in most runs, and more than 0.1% in about one run of twenty with other tests running.
    // Bounded at 0.5%, half the 1% before those fixes; one thread (above) is pinned at 0.
    let searches = 4 * store.len();
    let two = misses(2);
    assert!(
        two * 200 <= searches,
        "{two} of {searches} rows did not find themselves, 2 build threads"
    );
}
