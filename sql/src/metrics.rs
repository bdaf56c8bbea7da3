//! The gateway's metrics, served by the node's exporter (`vecraft_cluster::http`): client
//! connections, statements and their errors by SQLSTATE, statement latency, how often a kept
//! plan was reused, and per-collection sizes read from the catalog at scrape time.

use std::sync::{Arc, LazyLock, Weak};

use parking_lot::Mutex;
use pgwire::error::PgWireError;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, exponential_buckets,
    histogram_opts, register_histogram_vec, register_int_counter, register_int_counter_vec,
    register_int_gauge,
};

use crate::catalog::Catalog;

pub struct GatewayMetrics {
    pub connections: IntGauge,
    pub connections_total: IntCounter,
    /// Sockets and sessions refused by a limit, by reason (sockets, accept, max_connections).
    refused: IntCounterVec,
    statements: IntCounterVec,
    errors: IntCounterVec,
    duration_seconds: HistogramVec,
    /// Executions that reused a kept physical plan (not the one that built it), and plans
    /// built to be kept.
    pub plans_reused: IntCounter,
    pub plans_built: IntCounter,
    /// Executions of a kept plan that was only a collection search's columns, run directly.
    pub plans_direct: IntCounter,
}

/// Registered once, in prometheus's default registry. Registration fails only on a duplicate
/// name, which would be a bug here.
pub static GATEWAY: LazyLock<GatewayMetrics> = LazyLock::new(|| {
    let once = "metric registers once";
    GatewayMetrics {
        connections: register_int_gauge!("vecraft_connections", "Open client connections")
            .expect(once),
        connections_total: register_int_counter!(
            "vecraft_connections_total",
            "Client connections accepted"
        )
        .expect(once),
        refused: register_int_counter_vec!(
            "vecraft_connections_refused_total",
            "Client sockets or sessions refused by a limit, by reason",
            &["reason"]
        )
        .expect(once),
        statements: register_int_counter_vec!(
            "vecraft_statements_total",
            "Statements executed, by protocol (simple, extended)",
            &["protocol"]
        )
        .expect(once),
        errors: register_int_counter_vec!(
            "vecraft_statement_errors_total",
            "Statements that failed, by SQLSTATE",
            &["sqlstate"]
        )
        .expect(once),
        duration_seconds: register_histogram_vec!(
            histogram_opts!(
                "vecraft_statement_duration_seconds",
                "Statement time in the gateway, from receipt to result (rows encoded)",
                exponential_buckets(0.000_025, 2.0, 20).expect("valid buckets")
            ),
            &["protocol"]
        )
        .expect(once),
        plans_reused: register_int_counter!(
            "vecraft_kept_plan_executions_total",
            "Executions that reused a kept physical plan instead of planning"
        )
        .expect(once),
        plans_built: register_int_counter!(
            "vecraft_kept_plans_built_total",
            "Physical plans built to be kept (first execution, or after SET or DDL)"
        )
        .expect(once),
        plans_direct: register_int_counter!(
            "vecraft_direct_search_executions_total",
            "Executions of a kept plan that is a collection search's columns, run without DataFusion's per-execution work"
        )
        .expect(once),
    }
});

impl GatewayMetrics {
    /// Starts timing a statement of `protocol`; stop it with [`StatementTimer::finish`].
    pub fn statement(&self, protocol: &'static str) -> StatementTimer {
        self.statements.with_label_values(&[protocol]).inc();
        StatementTimer {
            timer: Some(
                self.duration_seconds
                    .with_label_values(&[protocol])
                    .start_timer(),
            ),
        }
    }

    /// A socket or session refused for `reason`.
    pub fn refused(&self, reason: &'static str) {
        self.refused.with_label_values(&[reason]).inc();
    }

    pub fn failed(&self, error: &PgWireError) {
        let sqlstate = match error {
            PgWireError::UserError(info) => info.code.as_str(),
            PgWireError::QueryCanceled => "57014",
            _ => "08P01",
        };
        self.errors.with_label_values(&[sqlstate]).inc();
    }
}

/// A statement being timed. One dropped unfinished was cancelled: pgwire drops the statement's
/// future when a cancel request arrives, and that counts as a 57014 error.
pub struct StatementTimer {
    timer: Option<prometheus::HistogramTimer>,
}

impl StatementTimer {
    pub fn finish<T>(mut self, result: &Result<T, PgWireError>) {
        if let Some(timer) = self.timer.take() {
            timer.observe_duration();
        }
        if let Err(e) = result {
            GATEWAY.failed(e);
        }
    }
}

impl Drop for StatementTimer {
    fn drop(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.observe_duration();
            GATEWAY.failed(&PgWireError::QueryCanceled);
        }
    }
}

/// The node's catalog, read at scrape time. One per process; a later `watch` (a test server
/// started after another) replaces the earlier.
static WATCHED: Mutex<Option<Weak<Catalog>>> = Mutex::new(None);

/// Reports `catalog`'s collections in `/metrics` from now on.
pub fn watch(catalog: &Arc<Catalog>) {
    static REGISTERED: LazyLock<()> = LazyLock::new(|| {
        prometheus::register(Box::new(CollectionsCollector::new()))
            .expect("collector registers once");
    });
    LazyLock::force(&REGISTERED);
    *WATCHED.lock() = Some(Arc::downgrade(catalog));
}

/// Per-collection gauges, built afresh from each shard's stats at every scrape (so concurrent
/// scrapes never see each other's half-filled values, and dropped collections disappear).
struct CollectionsCollector {
    descs: Vec<Desc>,
}

struct CollectionGauges {
    rows: IntGaugeVec,
    dead_rows: IntGaugeVec,
    segments: IntGaugeVec,
    applied_index: IntGaugeVec,
    durable_index: IntGaugeVec,
    live_indexed_rows: IntGaugeVec,
    /// Segment searches since the shard opened (a counter: rebuilt from the shard's own
    /// count at each scrape).
    segment_searches: IntCounterVec,
    /// Merges of small sealed segments since the shard opened (a counter, as above).
    segment_merges: IntCounterVec,
}

impl CollectionGauges {
    fn new() -> Self {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let by = &["collection", "shard"];
        CollectionGauges {
            rows: gauge("vecraft_collection_rows", "Live rows", by),
            dead_rows: gauge(
                "vecraft_collection_dead_rows",
                "Deleted rows still in sealed segments (compaction drops them)",
                by,
            ),
            segments: gauge(
                "vecraft_collection_segments",
                "Segments, by state (growing rows live in memory until sealed)",
                &["collection", "shard", "state"],
            ),
            applied_index: gauge(
                "vecraft_collection_applied_index",
                "The last log index applied",
                by,
            ),
            durable_index: gauge(
                "vecraft_collection_durable_index",
                "The last log index persisted in segments (the log before it is purged)",
                by,
            ),
            live_indexed_rows: gauge(
                "vecraft_collection_live_indexed_rows",
                "Rows not yet sealed that the growing segments' live indexes have taken",
                by,
            ),
            segment_searches: IntCounterVec::new(
                Opts::new(
                    "vecraft_segment_searches_total",
                    "Segment searches, by what answered: a sealed graph, a live index, a scan",
                ),
                &["collection", "shard", "method"],
            )
            .expect("valid metric"),
            segment_merges: IntCounterVec::new(
                Opts::new(
                    "vecraft_segment_merges_total",
                    "Merges of small sealed segments into one, done in the background",
                ),
                by,
            )
            .expect("valid metric"),
        }
    }

    fn all(&self) -> [&dyn Collector; 8] {
        [
            &self.rows,
            &self.dead_rows,
            &self.segments,
            &self.applied_index,
            &self.durable_index,
            &self.live_indexed_rows,
            &self.segment_searches,
            &self.segment_merges,
        ]
    }
}

impl CollectionsCollector {
    fn new() -> Self {
        let gauges = CollectionGauges::new();
        let descs = gauges
            .all()
            .iter()
            .flat_map(|g| g.desc().into_iter().cloned())
            .collect();
        CollectionsCollector { descs }
    }
}

impl Collector for CollectionsCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let g = CollectionGauges::new();
        let catalog = WATCHED.lock().as_ref().and_then(Weak::upgrade);
        for (name, collection) in catalog.iter().flat_map(|c| c.all()) {
            let local = collection.shards().iter().map(|s| s.stats());
            for (shard, stats) in local.enumerate() {
                // Shards on other nodes are counted by those nodes.
                let Some(stats) = stats else { continue };
                let shard = shard.to_string();
                let set = |g: &IntGaugeVec, labels: &[&str], v: u64| {
                    g.with_label_values(labels).set(v as i64)
                };
                set(&g.rows, &[&name, &shard], stats.live_rows);
                set(&g.dead_rows, &[&name, &shard], stats.dead_rows);
                let segments = [
                    ("sealed", stats.sealed_segments),
                    ("frozen", stats.frozen_segments),
                ];
                for (state, n) in segments {
                    set(&g.segments, &[&name, &shard, state], n as u64);
                }
                set(&g.applied_index, &[&name, &shard], stats.applied_index);
                set(&g.durable_index, &[&name, &shard], stats.durable_index);
                set(
                    &g.live_indexed_rows,
                    &[&name, &shard],
                    stats.live_indexed_rows,
                );
                let searches = [
                    ("graph", stats.searches.graph),
                    ("live", stats.searches.live),
                    ("scan", stats.searches.scan),
                ];
                for (method, n) in searches {
                    let counter = g
                        .segment_searches
                        .with_label_values(&[&name, &shard, method]);
                    counter.inc_by(n);
                }
                g.segment_merges
                    .with_label_values(&[&name, &shard])
                    .inc_by(stats.merges);
            }
        }
        g.all().iter().flat_map(|g| g.collect()).collect()
    }
}
