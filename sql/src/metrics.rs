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
    statements: IntCounterVec,
    errors: IntCounterVec,
    duration_seconds: HistogramVec,
    /// Executions that reused a kept physical plan, and plans built to be kept.
    pub plans_reused: IntCounter,
    pub plans_built: IntCounter,
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
            "Executions that ran a kept physical plan instead of planning"
        )
        .expect(once),
        plans_built: register_int_counter!(
            "vecraft_kept_plans_built_total",
            "Physical plans built to be kept (first execution, or after SET or DDL)"
        )
        .expect(once),
    }
});

impl GatewayMetrics {
    /// Starts timing a statement of `protocol`; stop it with [`StatementTimer::finish`].
    pub fn statement(&self, protocol: &'static str) -> StatementTimer {
        self.statements.with_label_values(&[protocol]).inc();
        StatementTimer(
            self.duration_seconds
                .with_label_values(&[protocol])
                .start_timer(),
        )
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

pub struct StatementTimer(prometheus::HistogramTimer);

impl StatementTimer {
    pub fn finish<T>(self, result: &Result<T, PgWireError>) {
        self.0.observe_duration();
        if let Err(e) = result {
            GATEWAY.failed(e);
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

/// Per-collection gauges, filled from each shard's stats when scraped.
struct CollectionsCollector {
    rows: IntGaugeVec,
    dead_rows: IntGaugeVec,
    segments: IntGaugeVec,
    applied_index: IntGaugeVec,
    durable_index: IntGaugeVec,
    descs: Vec<Desc>,
}

impl CollectionsCollector {
    fn new() -> Self {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let by = &["collection"];
        let rows = gauge("vecraft_collection_rows", "Live rows", by);
        let dead_rows = gauge(
            "vecraft_collection_dead_rows",
            "Deleted rows still in sealed segments (compaction drops them)",
            by,
        );
        let segments = gauge(
            "vecraft_collection_segments",
            "Segments, by state (growing rows live in memory until sealed)",
            &["collection", "state"],
        );
        let applied_index = gauge(
            "vecraft_collection_applied_index",
            "The last log index applied",
            by,
        );
        let durable_index = gauge(
            "vecraft_collection_durable_index",
            "The last log index persisted in segments (the log before it is purged)",
            by,
        );
        let descs = [&rows, &dead_rows, &segments, &applied_index, &durable_index]
            .iter()
            .flat_map(|g| g.desc().into_iter().cloned())
            .collect();
        CollectionsCollector {
            rows,
            dead_rows,
            segments,
            applied_index,
            durable_index,
            descs,
        }
    }
}

impl Collector for CollectionsCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let all = [
            &self.rows,
            &self.dead_rows,
            &self.segments,
            &self.applied_index,
            &self.durable_index,
        ];
        for gauge in all {
            gauge.reset(); // dropped collections disappear
        }
        let catalog = WATCHED.lock().as_ref().and_then(Weak::upgrade);
        for (name, collection) in catalog.iter().flat_map(|c| c.all()) {
            let stats = collection.shard().stats();
            let set = |g: &IntGaugeVec, labels: &[&str], v: u64| {
                g.with_label_values(labels).set(v as i64)
            };
            set(&self.rows, &[&name], stats.live_rows);
            set(&self.dead_rows, &[&name], stats.dead_rows);
            set(
                &self.segments,
                &[&name, "sealed"],
                stats.sealed_segments as u64,
            );
            set(
                &self.segments,
                &[&name, "frozen"],
                stats.frozen_segments as u64,
            );
            set(&self.applied_index, &[&name], stats.applied_index);
            set(&self.durable_index, &[&name], stats.durable_index);
        }
        all.iter().flat_map(|g| g.collect()).collect()
    }
}
