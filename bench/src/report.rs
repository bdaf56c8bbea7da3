//! What a run found, summarised as medians over rounds: the JSON document written with
//! `--json`, and the markdown tables printed (side by side with ratios when two servers ran).

use std::fmt::Write as _;

use serde::Serialize;

use crate::dataset::DatasetInfo;
use crate::server::{IndexSpec, LoadTimes};

#[derive(Debug, Serialize)]
pub struct Report {
    pub tool: String,
    /// When the run finished (UTC).
    pub date: String,
    pub machine: Machine,
    pub dataset: DatasetInfo,
    pub settings: Settings,
    pub targets: Vec<TargetReport>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_bytes: Option<u64>,
    pub kernel: String,
}

impl Machine {
    pub fn this() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')))
            .map_or("unknown".to_string(), |(_, model)| model.trim().to_string());
        let meminfo = read("/proc/meminfo");
        let memory_bytes = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib * 1024);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_bytes,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Settings {
    pub k: usize,
    pub table: String,
    pub index: IndexSpec,
    /// The statement sent, or none (exact search).
    pub index_statement: Option<String>,
    pub ef_search: Vec<usize>,
    pub connections: Vec<usize>,
    pub rounds: usize,
    pub load_rounds: usize,
    pub select1_round_trips: usize,
}

#[derive(Debug, Serialize)]
pub struct TargetReport {
    pub name: String,
    pub version: String,
    /// Whether the server took `SET hnsw.ef_search`; if not, every point ran at its default.
    pub ef_applied: bool,
    /// Medians over the load rounds; none with `--reuse`.
    pub load: Option<LoadSummary>,
    pub memory: Memory,
    pub select1: Vec<Rate>,
    pub points: Vec<Point>,
}

#[derive(Debug, Serialize)]
pub struct LoadSummary {
    pub copy_s: f64,
    pub index_s: f64,
    pub first_query_s: f64,
    pub rounds: Vec<LoadTimes>,
}

#[derive(Debug, Serialize)]
pub struct Memory {
    pub rows: usize,
    /// `pg_total_relation_size` of the table (heap, TOAST, indexes).
    pub relation_bytes: Option<u64>,
    /// Resident memory of the `--pid` process after the query rounds.
    pub resident_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Rate {
    pub connections: usize,
    pub per_second: f64,
    pub rounds: Vec<f64>,
}

/// One `(ef_search, connections)` point of the sweep: medians over rounds.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub ef_search: usize,
    pub connections: usize,
    pub recall: f64,
    pub qps: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub qps_rounds: Vec<f64>,
}

impl TargetReport {
    /// The fastest point with `connections` that reaches `min_recall`.
    pub fn best_at(&self, connections: usize, min_recall: f64) -> Option<&Point> {
        self.points
            .iter()
            .filter(|p| p.connections == connections && p.recall >= min_recall)
            .max_by(|a, b| a.qps.total_cmp(&b.qps))
    }
}

/// Recall levels the summary table picks the best QPS at.
pub const RECALL_TARGETS: [f64; 2] = [0.95, 0.99];

impl Report {
    /// Markdown: load, memory, the sweep, best QPS at each recall target, SELECT 1; with a
    /// ratio column (first server / second) when two servers ran.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let d = &self.dataset;
        let s = &self.settings;
        let _ = writeln!(
            out,
            "### {} ({} × {}, {}, {} queries, k = {}), medians of {} round(s)\n",
            d.name,
            d.rows,
            d.dim,
            d.metric.name(),
            d.queries,
            s.k,
            s.rounds
        );
        let _ = writeln!(
            out,
            "Index: `{}`\n",
            s.index_statement
                .as_deref()
                .unwrap_or("none (exact search)")
        );
        for t in self.targets.iter().filter(|t| !t.ef_applied) {
            let _ = writeln!(
                out,
                "**{} refused `SET hnsw.ef_search`: its points all ran at its default.**\n",
                t.name
            );
        }
        if self.pair().is_some() {
            let _ = writeln!(
                out,
                "Ratios are first/second: below 1 is better for times, above 1 for rates.\n"
            );
        }
        self.load_table(&mut out);
        self.best_table(&mut out);
        self.sweep_table(&mut out);
        self.select1_table(&mut out);
        out
    }

    fn pair(&self) -> Option<(&TargetReport, &TargetReport)> {
        match &self.targets[..] {
            [a, b] => Some((a, b)),
            _ => None,
        }
    }

    /// A table's header row and rule: the `leading` columns, one per server, and the ratio
    /// column when two servers ran.
    fn table_header(&self, out: &mut String, leading: &[&str]) {
        let ratio = self
            .pair()
            .map(|(a, b)| format!(" {}/{} |", a.name, b.name));
        let leading_cells: String = leading.iter().map(|c| format!(" {c} |")).collect();
        let _ = writeln!(
            out,
            "|{leading_cells}{}{}",
            names(&self.targets),
            ratio.as_deref().unwrap_or("")
        );
        let columns = leading.len() + self.targets.len() + usize::from(ratio.is_some());
        let _ = writeln!(out, "{}", rule(columns));
    }

    fn load_table(&self, out: &mut String) {
        if self.targets.iter().all(|t| t.load.is_none()) {
            return;
        }
        self.table_header(out, &["figure"]);
        type Figure = fn(&TargetReport) -> Option<f64>;
        let figures: [(&str, Figure); 6] = [
            ("COPY (s)", |t| t.load.as_ref().map(|l| l.copy_s)),
            ("CREATE INDEX (s)", |t| t.load.as_ref().map(|l| l.index_s)),
            ("load until the first indexed query (s)", |t| {
                t.load.as_ref().map(|l| l.first_query_s)
            }),
            ("table + index size (MB)", |t| {
                t.memory.relation_bytes.map(|b| b as f64 / 1e6)
            }),
            ("server resident memory (MB)", |t| {
                t.memory.resident_bytes.map(|b| b as f64 / 1e6)
            }),
            ("resident bytes per vector", |t| {
                t.memory
                    .resident_bytes
                    .map(|b| b as f64 / t.memory.rows as f64)
            }),
        ];
        for (label, figure) in figures {
            let values: Vec<Option<f64>> = self.targets.iter().map(figure).collect();
            if values.iter().all(Option::is_none) {
                continue;
            }
            let cells: String = values
                .iter()
                .map(|v| format!(" {} |", v.map_or("–".into(), fmt_num)))
                .collect();
            let _ = writeln!(out, "| {label} |{cells}{}", ratio_cell(&values));
        }
        out.push('\n');
    }

    fn best_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "Best QPS at a recall@{} target (ef_search, recall, p99 ms):\n",
            self.settings.k
        );
        self.table_header(out, &["recall ≥", "connections"]);
        for target in RECALL_TARGETS {
            for &c in &self.settings.connections {
                let best: Vec<Option<&Point>> =
                    self.targets.iter().map(|t| t.best_at(c, target)).collect();
                let cells: String = best
                    .iter()
                    .map(|p| match p {
                        Some(p) => format!(
                            " {} ({}, {:.3}, {:.2}) |",
                            fmt_num(p.qps),
                            p.ef_search,
                            p.recall,
                            p.p99_ms
                        ),
                        None => " not reached |".to_string(),
                    })
                    .collect();
                let qps: Vec<Option<f64>> = best.iter().map(|p| p.map(|p| p.qps)).collect();
                let _ = writeln!(out, "| {target} | {c} |{cells}{}", ratio_cell(&qps));
            }
        }
        out.push('\n');
    }

    fn sweep_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "| server | ef_search | connections | recall@{} | QPS | p50 ms | p95 ms | p99 ms |",
            self.settings.k
        );
        let _ = writeln!(out, "{}", rule(8));
        for t in &self.targets {
            for p in &t.points {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {:.4} | {} | {:.2} | {:.2} | {:.2} |",
                    t.name,
                    p.ef_search,
                    p.connections,
                    p.recall,
                    fmt_num(p.qps),
                    p.p50_ms,
                    p.p95_ms,
                    p.p99_ms
                );
            }
        }
        out.push('\n');
    }

    fn select1_table(&self, out: &mut String) {
        if self.targets.iter().all(|t| t.select1.is_empty()) {
            return;
        }
        self.table_header(out, &["`SELECT 1` per second, connections"]);
        let connections: Vec<usize> = self.targets[0]
            .select1
            .iter()
            .map(|r| r.connections)
            .collect();
        for c in connections {
            let rates: Vec<Option<f64>> = self
                .targets
                .iter()
                .map(|t| {
                    t.select1
                        .iter()
                        .find(|r| r.connections == c)
                        .map(|r| r.per_second)
                })
                .collect();
            let cells: String = rates
                .iter()
                .map(|v| format!(" {} |", v.map_or("–".into(), fmt_num)))
                .collect();
            let _ = writeln!(out, "| {c} |{cells}{}", ratio_cell(&rates));
        }
        out.push('\n');
    }
}

fn names(targets: &[TargetReport]) -> String {
    targets.iter().map(|t| format!(" {} |", t.name)).collect()
}

fn rule(columns: usize) -> String {
    format!("|{}", " --- |".repeat(columns))
}

/// `a/b` when there are exactly two values and both are known.
fn ratio_cell(values: &[Option<f64>]) -> String {
    match values {
        [Some(a), Some(b)] if *b != 0.0 => format!(" {:.2}× |", a / b),
        [_, _] => " – |".to_string(),
        _ => String::new(),
    }
}

/// Whole numbers from 100 up (thousands separated), one decimal from 10, two below.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    if x.abs() >= 1000.0 {
        let whole = x.round() as i64;
        let digits = whole.abs().to_string();
        let mut grouped = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        return if whole < 0 {
            format!("-{grouped}")
        } else {
            grouped
        };
    }
    let decimals = if x.abs() >= 100.0 {
        0
    } else if x.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{x:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(ef: usize, connections: usize, recall: f64, qps: f64) -> Point {
        Point {
            ef_search: ef,
            connections,
            recall,
            qps,
            p50_ms: 1.0,
            p95_ms: 2.0,
            p99_ms: 3.0,
            qps_rounds: vec![qps],
        }
    }

    fn target(name: &str, points: Vec<Point>) -> TargetReport {
        TargetReport {
            name: name.into(),
            version: "test".into(),
            ef_applied: true,
            load: Some(LoadSummary {
                copy_s: 1.0,
                index_s: 4.0,
                first_query_s: 5.0,
                rounds: vec![],
            }),
            memory: Memory {
                rows: 100,
                relation_bytes: Some(2_000_000),
                resident_bytes: None,
            },
            select1: vec![Rate {
                connections: 1,
                per_second: 10_000.0,
                rounds: vec![],
            }],
            points,
        }
    }

    #[test]
    fn the_best_point_reaches_the_recall_and_is_fastest() {
        let t = target(
            "a",
            vec![
                point(10, 1, 0.90, 900.0),
                point(40, 1, 0.96, 500.0),
                point(80, 1, 0.99, 300.0),
                point(40, 4, 0.96, 1500.0),
            ],
        );
        assert_eq!(t.best_at(1, 0.95).map(|p| p.ef_search), Some(40));
        assert_eq!(t.best_at(1, 0.99).map(|p| p.ef_search), Some(80));
        assert_eq!(t.best_at(4, 0.99).map(|p| p.ef_search), None);
    }

    #[test]
    fn two_servers_get_a_ratio_column() {
        let report = Report {
            tool: "t".into(),
            date: "2026-11-26".into(),
            machine: Machine::this(),
            dataset: DatasetInfo {
                name: "d".into(),
                rows: 100,
                dim: 4,
                queries: 10,
                metric: crate::vectors::Metric::L2,
            },
            settings: Settings {
                k: 10,
                table: "t".into(),
                index: IndexSpec {
                    m: 16,
                    ef_construction: 64,
                    sql: None,
                },
                index_statement: Some("CREATE INDEX".into()),
                ef_search: vec![40],
                connections: vec![1],
                rounds: 3,
                load_rounds: 1,
                select1_round_trips: 100,
            },
            targets: vec![
                target("a", vec![point(40, 1, 0.96, 3000.0)]),
                target("b", vec![point(40, 1, 0.97, 1000.0)]),
            ],
        };
        let text = report.markdown();
        assert!(text.contains("| figure | a | b | a/b |"), "{text}");
        assert!(
            text.contains("| COPY (s) | 1.00 | 1.00 | 1.00× |"),
            "{text}"
        );
        assert!(
            text.contains(
                "| 0.95 | 1 | 3,000 (40, 0.960, 3.00) | 1,000 (40, 0.970, 3.00) | 3.00× |"
            ),
            "{text}"
        );
        assert!(
            text.contains("| 0.99 | 1 | not reached | not reached | – |"),
            "{text}"
        );
        assert!(text.contains("| 1 | 10,000 | 10,000 | 1.00× |"), "{text}");
    }

    #[test]
    fn numbers_keep_three_figures() {
        assert_eq!(fmt_num(1234567.4), "1,234,567");
        assert_eq!(fmt_num(512.4), "512");
        assert_eq!(fmt_num(21.34), "21.3");
        assert_eq!(fmt_num(0.3209), "0.32");
        assert_eq!(fmt_num(f64::NAN), "–");
    }
}
