//! `vecraft-bench` against a real node: a small `compare` run (the same server under two
//! names) loads, indexes, sweeps and reports, and its figures are sane.

use serde_json::Value;

use crate::support::single_node;

#[test]
fn the_benchmark_tool_measures_a_node_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(&dir.path().join("data"));
    let dsn = format!("postgresql://postgres@127.0.0.1:{}/postgres", node.sql_port);
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (json, svg, markdown) = (out("report.json"), out("curve.svg"), out("report.md"));
    vecraft_bench::cli::main_with([
        "vecraft-bench",
        "compare",
        &format!("a={dsn}"),
        &format!("b={dsn}"),
        "--a-pid",
        &node.child.id().to_string(),
        "--synthetic",
        "2000x16",
        "--queries",
        "50",
        "--rounds",
        "2",
        "--ef-search",
        "10,100",
        "--connections",
        "1,4",
        "--select1",
        "200",
        "--cache-dir",
        &out("cache"),
        "--json",
        &json,
        "--svg",
        &svg,
        "--markdown",
        &markdown,
    ])
    .expect("the benchmark runs");

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["dataset"]["rows"], 2000);
    assert_eq!(report["dataset"]["queries"], 50);
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2);
    for target in targets {
        let name = target["name"].as_str().unwrap();
        assert!(
            target["version"].as_str().unwrap().contains("Vecraft"),
            "{name}"
        );
        assert_eq!(
            target["ef_applied"], true,
            "{name}: SET hnsw.ef_search is taken"
        );
        let load = &target["load"];
        for figure in ["copy_s", "index_s", "first_query_s"] {
            assert!(load[figure].as_f64().unwrap() > 0.0, "{name}: {figure}");
        }
        assert!(load["first_query_s"].as_f64() >= load["copy_s"].as_f64());
        let points = target["points"].as_array().unwrap();
        assert_eq!(points.len(), 4, "{name}: 2 ef_search x 2 connection counts");
        for point in points {
            assert_eq!(
                point["qps_rounds"].as_array().unwrap().len(),
                2,
                "{name}: one figure per round"
            );
            assert!(point["qps"].as_f64().unwrap() > 0.0);
            assert!(point["p50_ms"].as_f64() <= point["p99_ms"].as_f64());
        }
        // 2,000 vectors of 16 dimensions: a wide beam finds nearly every true neighbour,
        // and never fewer than a narrow one.
        let recall = |ef: u64| {
            points
                .iter()
                .find(|p| p["ef_search"] == ef && p["connections"] == 1)
                .unwrap()["recall"]
                .as_f64()
                .unwrap()
        };
        assert!(
            recall(100) >= 0.95,
            "{name}: recall@10 at ef_search 100 is {}",
            recall(100)
        );
        assert!(recall(100) >= recall(10) - 0.02, "{name}");
        let select1 = target["select1"].as_array().unwrap();
        assert!(
            select1
                .iter()
                .all(|r| r["per_second"].as_f64().unwrap() > 0.0),
            "{name}"
        );
    }
    assert!(
        targets[0]["memory"]["resident_bytes"].as_u64().unwrap() > 0,
        "--a-pid reports memory"
    );
    assert!(targets[1]["memory"]["resident_bytes"].is_null());

    let tables = std::fs::read_to_string(&markdown).unwrap();
    assert!(tables.contains("| figure | a | b | a/b |"), "{tables}");
    assert!(tables.contains("| 0.95 | 1 |"), "{tables}");
    let curve = std::fs::read_to_string(&svg).unwrap();
    assert!(
        curve.contains("<svg") && curve.contains("recall@10") && curve.contains("a, 4 connections")
    );
}
