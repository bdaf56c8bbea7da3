//! Storage-engine benchmark: build time, recall@10 and single-thread search QPS at several ef,
//! and exact search, on one sealed segment.
//!
//! ```text
//! cargo run --release -p vecraft-storage --example hnsw_bench                 # 100k x 128 mixture, L2
//! cargo run --release -p vecraft-storage --example hnsw_bench -- \
//!     --base bench/data/minilm_base.npy --queries bench/data/minilm_query.npy --metric cosine
//! options: --n ROWS --dims D --m M --ef-construction EFC --ef 10,20,40,80,160 --queries-count Q
//!          --dump DIR   also write the vectors as DIR/base.npy, DIR/queries.npy (for bench/peer_hnswlib.py)
//! ```
//! Ground truth is the engine's own exact search. Three figures per ef: the raw graph search
//! over the floats (what hnswlib's numbers compare with), the same graph walked over SQ8 codes
//! and re-scored exactly (what a sealed segment of 64 dimensions or more does), and the full
//! `Shard::search` (filter checks, tombstones, Arrow result batch).

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use vecraft_storage::command::Command;
use vecraft_storage::distance::Metric;
use vecraft_storage::index::VectorIndex;
use vecraft_storage::index::build::build_graph;
use vecraft_storage::index::graph::brute_force;
use vecraft_storage::index::sq8::Sq8;
use vecraft_storage::index::vectors::{Query, VectorStore};
use vecraft_storage::schema::{
    CollectionSchema, ColumnDef, ColumnType, HnswParams, VectorSpec, vector_array,
    vector_arrow_type,
};
use vecraft_storage::shard::{SearchRequest, Shard, ShardOptions};
use vecraft_storage::synthetic::gaussian_mixture;

struct Args {
    base: Option<String>,
    queries: Option<String>,
    n: usize,
    dims: usize,
    nq: usize,
    metric: Metric,
    params: HnswParams,
    efs: Vec<usize>,
    dump: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        base: None,
        queries: None,
        n: 100_000,
        dims: 128,
        nq: 1000,
        metric: Metric::L2,
        params: HnswParams::default(),
        efs: vec![10, 20, 40, 80, 160],
        dump: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--base" => a.base = Some(value()),
            "--queries" => a.queries = Some(value()),
            "--n" => a.n = value().parse().unwrap_or_else(|_| usage("--n")),
            "--dims" => a.dims = value().parse().unwrap_or_else(|_| usage("--dims")),
            "--queries-count" => {
                a.nq = value().parse().unwrap_or_else(|_| usage("--queries-count"))
            }
            "--metric" => {
                a.metric = Metric::parse(&value()).unwrap_or_else(|e| usage(&e.to_string()))
            }
            "--m" => a.params.m = value().parse().unwrap_or_else(|_| usage("--m")),
            "--ef-construction" => {
                a.params.ef_construction = value()
                    .parse()
                    .unwrap_or_else(|_| usage("--ef-construction"))
            }
            "--ef" => {
                a.efs = value()
                    .split(',')
                    .map(|s| s.parse().unwrap_or_else(|_| usage("--ef")))
                    .collect()
            }
            "--dump" => a.dump = Some(value()),
            "--help" | "-h" => usage(""),
            other => usage(&format!("unknown option {other}")),
        }
    }
    a
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "{problem}\nusage: hnsw_bench [--base F.npy --queries Q.npy] [--n ROWS] [--dims D] [--queries-count Q] [--metric l2|cosine|inner_product|l1] [--m M] [--ef-construction EFC] [--ef 10,40,...]"
    );
    std::process::exit(if problem.is_empty() { 0 } else { 2 })
}

/// Reads a 2-d little-endian float32 `.npy` file.
fn read_npy(path: &str) -> (Vec<f32>, usize, usize) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| usage(&format!("{path}: {e}")));
    assert!(bytes.starts_with(b"\x93NUMPY"), "{path}: not an .npy file");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).expect("ascii header");
    assert!(
        header.contains("'<f4'") && header.contains("False"),
        "{path}: need C-order <f4"
    );
    let shape = &header[header.find("(").unwrap() + 1..header.find(")").unwrap()];
    let dims: Vec<usize> = shape
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let data = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (data, dims[0], dims[1])
}

/// Writes row-major `data` as a 2-d little-endian float32 `.npy` file.
fn write_npy(path: &std::path::Path, data: &[f32], dims: usize) {
    let dict = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        data.len() / dims,
        dims
    );
    let mut header = dict.into_bytes();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend(data.iter().flat_map(|x| x.to_le_bytes()));
    std::fs::write(path, out).unwrap_or_else(|e| usage(&format!("{}: {e}", path.display())));
}

fn to_batch(first_id: usize, data: &[f32], dims: usize) -> RecordBatch {
    let vectors = vector_array(dims, data.to_vec(), None);
    let ids =
        Int64Array::from_iter_values((first_id..first_id + data.len() / dims).map(|i| i as i64));
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("embedding", vector_arrow_type(dims), false),
    ]);
    RecordBatch::try_new(Arc::new(schema), vec![Arc::new(ids), Arc::new(vectors)]).unwrap()
}

fn main() {
    let args = parse_args();
    let (base, queries, dims) = match (&args.base, &args.queries) {
        (Some(b), Some(q)) => {
            let (base, _, dims) = read_npy(b);
            let (queries, nq, _) = read_npy(q);
            (base, queries[..args.nq.min(nq) * dims].to_vec(), dims)
        }
        _ => {
            let mut all = gaussian_mixture(args.n + args.nq, args.dims, 42);
            let queries = all.split_off(args.n * args.dims);
            (all, queries, args.dims)
        }
    };
    let n = base.len() / dims;
    let nq = queries.len() / dims;
    if let Some(dir) = &args.dump {
        let dir = std::path::Path::new(dir);
        std::fs::create_dir_all(dir).unwrap_or_else(|e| usage(&format!("{}: {e}", dir.display())));
        write_npy(&dir.join("base.npy"), &base, dims);
        write_npy(&dir.join("queries.npy"), &queries, dims);
    }
    println!(
        "{n} x {dims}, {nq} queries, metric {}, m {}, ef_construction {}, build threads {}",
        args.metric.name(),
        args.params.m,
        args.params.ef_construction,
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );

    // Raw index: our builder, on the flat layout.
    let store = VectorStore::from_vec(dims, base.clone());
    let rows: Vec<u32> = (0..n as u32).collect();
    let t = Instant::now();
    let graph = build_graph(&store, &rows, args.metric, args.params).expect("build");
    println!("index build: {:.2} s", t.elapsed().as_secs_f64());

    let prepared: Vec<Query> = queries
        .chunks_exact(dims)
        .map(|q| Query::new(q.to_vec()))
        .collect();
    let view = store.view();
    // The same graph walked over SQ8 codes, as a sealed segment of this width does.
    let t = Instant::now();
    let mut quantized = graph.clone();
    quantized.codes = Some(Arc::new(Sq8::encode(&view)));
    println!("SQ8 codes: {:.2} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let truth: Vec<Vec<u32>> = prepared
        .iter()
        .map(|q| {
            brute_force(n, |r| view.score(args.metric, q, r), 10, &|_| true)
                .iter()
                .map(|h| h.row)
                .collect()
        })
        .collect();
    let exact_qps = nq as f64 / t.elapsed().as_secs_f64();

    // The same data through the whole engine (one sealed segment).
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = CollectionSchema::new(
        vec![
            ColumnDef::new("id", ColumnType::Int64, false),
            ColumnDef::new(
                "embedding",
                ColumnType::Vector(VectorSpec {
                    metric: args.metric,
                    hnsw: args.params,
                    ..VectorSpec::new(dims)
                }),
                false,
            ),
        ],
        "id",
    )
    .expect("schema");
    let opts = ShardOptions {
        seal_threshold_rows: usize::MAX,
        background_seal: false,
        live_index: false,
        merge_min_segments: 0,
        checkpoint_log_bytes: 0,
    };
    let shard = Shard::open(dir.path(), Some(schema), opts).expect("shard");
    let t = Instant::now();
    for (i, chunk) in base.chunks(10_000 * dims).enumerate() {
        shard
            .apply(
                i as u64 + 1,
                &Command::Upsert(to_batch(i * 10_000, chunk, dims)),
            )
            .expect("apply");
    }
    let apply_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    shard.flush().expect("seal");
    println!(
        "engine: apply {apply_s:.2} s, seal (graph build + files) {:.2} s",
        t.elapsed().as_secs_f64()
    );

    println!("\n| search | ef | recall@10 | QPS (1 thread) | mean µs |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| exact (brute force) | - | 1.0000 | {exact_qps:.0} | {:.0} |",
        1e6 / exact_qps
    );
    for &ef in &args.efs {
        for (name, walked) in [("graph", &graph), ("graph over SQ8", &quantized)] {
            let (recall, qps) = measure(&truth, |i| {
                walked
                    .search(&view, args.metric, &prepared[i], 10, ef, &|_| true)
                    .iter()
                    .map(|h| h.row)
                    .collect()
            });
            println!(
                "| {name} | {ef} | {recall:.4} | {qps:.0} | {:.0} |",
                1e6 / qps
            );
        }
        let (recall, qps) = measure(&truth, |i| {
            let mut req = SearchRequest::new("embedding", prepared[i].vector.clone(), 10);
            req.ef = ef;
            req.projection = Some(vec!["id".into()]);
            let batch = shard.search(&req).expect("search");
            let ids =
                arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(batch.column(0));
            ids.values().iter().map(|&id| id as u32).collect()
        });
        println!(
            "| Shard::search | {ef} | {recall:.4} | {qps:.0} | {:.0} |",
            1e6 / qps
        );
    }
}

/// Recall@10 against `truth` and queries per second of `search(query index)`, one thread:
/// the median of `ROUNDS` timed passes over all queries.
fn measure(truth: &[Vec<u32>], mut search: impl FnMut(usize) -> Vec<u32>) -> (f64, f64) {
    const ROUNDS: usize = 3;
    for i in 0..truth.len().min(50) {
        search(i); // warm up
    }
    let mut hits = 0;
    let mut qps = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        hits = 0;
        for (i, want) in truth.iter().enumerate() {
            hits += search(i).iter().filter(|r| want.contains(r)).count();
        }
        qps.push(truth.len() as f64 / t.elapsed().as_secs_f64());
    }
    qps.sort_by(f64::total_cmp);
    (hits as f64 / (10 * truth.len()) as f64, qps[ROUNDS / 2])
}
