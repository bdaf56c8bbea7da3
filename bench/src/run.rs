//! One benchmark run over one or more servers: the loads, then the query rounds, each round
//! visiting every server in turn (A B A B …) so drift on the machine hits all of them alike;
//! then medians per figure.

use std::time::Duration;

use anyhow::{Result, ensure};

use crate::dataset::Dataset;
use crate::query::{Session, knn_pass, open_sessions, select1_rate, set_ef_search};
use crate::report::{LoadSummary, Machine, Memory, Point, Rate, Report, Settings, TargetReport};
use crate::server::{self, IndexSpec, LoadTimes, Target};
use crate::stats::{Percentiles, median};
use crate::truth::recall_at;

/// What to do on each server.
#[derive(Clone, Debug)]
pub struct Plan {
    pub table: String,
    pub k: usize,
    pub index: IndexSpec,
    pub ef_search: Vec<usize>,
    pub connections: Vec<usize>,
    pub rounds: usize,
    pub load_rounds: usize,
    /// The table is already loaded and indexed: skip the load.
    pub reuse: bool,
    /// `SELECT 1` round trips per round and connection count (0: none).
    pub select1_round_trips: usize,
    /// Queries asked on one connection before each `ef_search`'s measured passes.
    pub warmup_queries: usize,
}

impl Plan {
    /// How many times each server is loaded: none with `reuse`, else at least once.
    fn loads(&self) -> usize {
        if self.reuse {
            0
        } else {
            self.load_rounds.max(1)
        }
    }
}

/// Raw measurements of one server.
#[derive(Default)]
struct Measured {
    version: String,
    ef_applied: bool,
    loads: Vec<LoadTimes>,
    memory: Option<Memory>,
    /// `(ef_search, connections, recall, qps, percentiles)` of every pass.
    passes: Vec<(usize, usize, f64, f64, Percentiles)>,
    /// `(connections, round trips per second)`.
    select1: Vec<(usize, f64)>,
}

pub async fn run(targets: &[Target], data: &Dataset, plan: &Plan) -> Result<Report> {
    ensure!(!targets.is_empty(), "no server to benchmark");
    ensure!(
        plan.rounds > 0 && !plan.ef_search.is_empty() && !plan.connections.is_empty(),
        "nothing to measure"
    );
    ensure!(
        data.truth.iter().all(|t| t.len() >= plan.k),
        "the ground truth holds fewer than k = {} neighbours",
        plan.k
    );
    let mut measured: Vec<Measured> = targets
        .iter()
        .map(|_| Measured {
            ef_applied: true,
            ..Default::default()
        })
        .collect();
    load_all(targets, data, plan, &mut measured).await?;
    for round in 1..=plan.rounds {
        for (target, m) in targets.iter().zip(&mut measured) {
            eprintln!(
                "vecraft-bench: round {round}/{}, {}",
                plan.rounds, target.name
            );
            measure_round(target, data, plan, m).await?;
        }
    }
    record_memory(targets, data, plan, &mut measured).await?;
    Ok(summarize(targets, data, plan, measured))
}

/// Loads every server `load_rounds` times, interleaved (or checks what `--reuse` finds).
async fn load_all(
    targets: &[Target],
    data: &Dataset,
    plan: &Plan,
    measured: &mut [Measured],
) -> Result<()> {
    let load_rounds = plan.loads();
    for round in 1..=load_rounds {
        for (target, m) in targets.iter().zip(measured.iter_mut()) {
            let client = server::connect(&target.dsn).await?;
            let times = server::load(&client, &plan.table, data, &plan.index, plan.k).await?;
            eprintln!(
                "vecraft-bench: load {round}/{load_rounds}, {}: COPY {:.2} s, index {:.2} s, first query after {:.2} s",
                target.name, times.copy_s, times.index_s, times.first_query_s
            );
            m.loads.push(times);
        }
    }
    for (target, m) in targets.iter().zip(measured.iter_mut()) {
        let client = server::connect(&target.dsn).await?;
        if plan.reuse {
            server::check_loaded(&client, &plan.table, data.base.len()).await?;
        }
        m.version = server::version(&client).await;
    }
    Ok(())
}

/// Sizes once every round has run: the table as the server counts it, and the resident
/// memory of a serving process (index and data paged in, the build's scratch gone).
async fn record_memory(
    targets: &[Target],
    data: &Dataset,
    plan: &Plan,
    measured: &mut [Measured],
) -> Result<()> {
    for (target, m) in targets.iter().zip(measured.iter_mut()) {
        let client = server::connect(&target.dsn).await?;
        m.memory = Some(Memory {
            rows: data.base.len(),
            relation_bytes: server::relation_bytes(&client, &plan.table).await,
            resident_bytes: target.pid.and_then(server::resident_bytes),
        });
    }
    Ok(())
}

async fn measure_round(
    target: &Target,
    data: &Dataset,
    plan: &Plan,
    m: &mut Measured,
) -> Result<()> {
    let most = plan
        .connections
        .iter()
        .copied()
        .chain(select1_connections(plan))
        .max()
        .unwrap_or(1);
    let sessions = open_sessions(&target.dsn, most, &plan.table, data.metric, plan.k).await?;
    let warmup = data.queries.clone().truncated(plan.warmup_queries);
    // Every connection answers a few queries first: a new PostgreSQL backend pays its cold
    // start on its first statements, which would otherwise land in the first measured pass.
    let first_queries = data
        .queries
        .clone()
        .truncated(WARMUP_PER_SESSION * sessions.len());
    knn_pass(&sessions, &first_queries).await?;
    for &ef in &plan.ef_search {
        m.ef_applied &= set_ef_search(&sessions, ef).await;
        if !warmup.is_empty() {
            knn_pass(&sessions[..1], &warmup).await?;
        }
        for &c in &plan.connections {
            let (recall, qps, latency) = knn_point(&sessions[..c], data, plan.k).await?;
            eprintln!(
                "vecraft-bench:   ef_search {ef:>4}, {c:>2} connection(s): recall@{} {recall:.4}, {qps:>8.0} q/s, p50 {:.2} ms, p99 {:.2} ms",
                plan.k, latency.p50_ms, latency.p99_ms
            );
            m.passes.push((ef, c, recall, qps, latency));
        }
    }
    for c in select1_connections(plan) {
        let rate = select1_rate(&sessions[..c], plan.select1_round_trips).await?;
        eprintln!("vecraft-bench:   SELECT 1, {c:>2} connection(s): {rate:.0} round trips/s");
        m.select1.push((c, rate));
    }
    Ok(())
}

async fn knn_point(
    sessions: &[Session],
    data: &Dataset,
    k: usize,
) -> Result<(f64, f64, Percentiles)> {
    let pass = knn_pass(sessions, &data.queries).await?;
    let recall = recall_at(k, &pass.answers, &data.truth);
    Ok((recall, pass.per_second(), Percentiles::of(&pass.latencies)))
}

/// Queries each connection asks before a round's measured passes.
const WARMUP_PER_SESSION: usize = 10;

/// `SELECT 1` is measured with 1 and 4 connections, when asked for.
fn select1_connections(plan: &Plan) -> Vec<usize> {
    if plan.select1_round_trips == 0 {
        vec![]
    } else {
        vec![1, 4]
    }
}

fn summarize(targets: &[Target], data: &Dataset, plan: &Plan, measured: Vec<Measured>) -> Report {
    let reports = targets
        .iter()
        .zip(measured)
        .map(|(target, m)| {
            let load = (!m.loads.is_empty()).then(|| {
                let of =
                    |f: fn(&LoadTimes) -> f64| median(&m.loads.iter().map(f).collect::<Vec<_>>());
                LoadSummary {
                    copy_s: of(|l| l.copy_s),
                    index_s: of(|l| l.index_s),
                    first_query_s: of(|l| l.first_query_s),
                    rounds: m.loads.clone(),
                }
            });
            let mut points = Vec::new();
            for &ef in &plan.ef_search {
                for &c in &plan.connections {
                    let passes: Vec<_> =
                        m.passes.iter().filter(|p| p.0 == ef && p.1 == c).collect();
                    let of = |f: fn(&(usize, usize, f64, f64, Percentiles)) -> f64| {
                        median(&passes.iter().map(|p| f(p)).collect::<Vec<_>>())
                    };
                    points.push(Point {
                        ef_search: ef,
                        connections: c,
                        recall: of(|p| p.2),
                        qps: of(|p| p.3),
                        p50_ms: of(|p| p.4.p50_ms),
                        p95_ms: of(|p| p.4.p95_ms),
                        p99_ms: of(|p| p.4.p99_ms),
                        qps_rounds: passes.iter().map(|p| p.3).collect(),
                    });
                }
            }
            let select1 = select1_connections(plan)
                .into_iter()
                .map(|c| {
                    let rounds: Vec<f64> =
                        m.select1.iter().filter(|s| s.0 == c).map(|s| s.1).collect();
                    Rate {
                        connections: c,
                        per_second: median(&rounds),
                        rounds,
                    }
                })
                .collect();
            TargetReport {
                name: target.name.clone(),
                version: m.version,
                ef_applied: m.ef_applied,
                load,
                memory: m.memory.unwrap_or(Memory {
                    rows: data.base.len(),
                    relation_bytes: None,
                    resident_bytes: None,
                }),
                select1,
                points,
            }
        })
        .collect();
    Report {
        tool: format!("vecraft-bench {}", env!("CARGO_PKG_VERSION")),
        date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        machine: Machine::this(),
        dataset: data.info(),
        settings: Settings {
            k: plan.k,
            table: plan.table.clone(),
            index: plan.index.clone(),
            index_statement: plan.index.statement(&plan.table, data.metric),
            ef_search: plan.ef_search.clone(),
            connections: plan.connections.clone(),
            rounds: plan.rounds,
            load_rounds: plan.loads(),
            select1_round_trips: plan.select1_round_trips,
        },
        targets: reports,
    }
}

/// How long `run` waits for a server that is still starting.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
