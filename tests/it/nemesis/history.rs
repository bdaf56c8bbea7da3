//! What the nemesis's clients did and saw, and the checker over it.
//!
//! Writers insert rows with ids never used before, each once, and record whether the write
//! was acknowledged, refused, or ended with its outcome unknown. Readers count a table's rows
//! with strong reads. Probes ask every gateway `SELECT 1` over and over.
//!
//! The checker finds, over the whole run:
//! - lost: an acknowledged row missing at the end;
//! - phantom: a row at the end that no writer tried to insert;
//! - duplicate: a row twice at the end, or a write refused as a duplicate (its id was never
//!   written before: the cluster applied something twice);
//! - stale: a strong read that missed the row acknowledged last before it began, counted
//!   fewer rows than were acknowledged before it began, or fewer than a strong read that
//!   ended before it began (not monotonic).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A write's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Acked,
    /// Refused as a duplicate key: an anomaly, since every id is new.
    Duplicate,
    /// Failed in a way that leaves it unknown whether it was applied (57P03, a timeout, a
    /// connection that died).
    Unknown,
}

#[derive(Clone, Debug)]
pub struct Write {
    pub table: usize,
    pub id: i64,
    pub started: Instant,
    pub ended: Instant,
    pub outcome: Outcome,
}

#[derive(Clone, Debug)]
pub struct Read {
    /// The gateway that answered.
    pub node: u64,
    pub table: usize,
    pub started: Instant,
    pub ended: Instant,
    pub count: u64,
    /// The row acknowledged last before the read began, and whether the read saw it.
    pub required: Option<(i64, bool)>,
}

/// One `SELECT 1` on a gateway: when it was asked, and how long the answer took (`None`: it
/// failed, or took longer than the probe waits).
#[derive(Clone, Debug)]
pub struct Probe {
    pub node: u64,
    pub started: Instant,
    pub took: Option<Duration>,
}

/// Everything the clients recorded.
#[derive(Default)]
pub struct History {
    pub writes: Mutex<Vec<Write>>,
    pub reads: Mutex<Vec<Read>>,
    pub probes: Mutex<Vec<Probe>>,
    /// Each table's row acknowledged last, as soon as it is.
    pub latest_acked: Mutex<BTreeMap<usize, i64>>,
    /// Why writes ended with their outcome unknown, and how often.
    pub failures: Mutex<BTreeMap<String, usize>>,
}

/// What the checker found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Anomalies {
    pub lost: Vec<i64>,
    pub phantom: Vec<i64>,
    pub duplicate: Vec<i64>,
    pub stale: Vec<String>,
}

impl Anomalies {
    pub fn none(&self) -> bool {
        *self == Anomalies::default()
    }
}

impl History {
    /// Counts a write that ended without an acknowledgement, by why (the error's first words,
    /// numbers left out so alike failures count together).
    pub fn failed(&self, answer: &Result<u64, String>) {
        let why = match answer {
            Ok(rows) => format!("{rows} rows written"),
            Err(e) => e
                .chars()
                .filter(|c| !c.is_ascii_digit())
                .take(120)
                .collect(),
        };
        *self.failures.lock().unwrap().entry(why).or_default() += 1;
    }

    /// Checks the history against each table's rows at the end (`stored[table]`, every id
    /// as often as it is there).
    pub fn check(&self, stored: &[Vec<i64>]) -> Anomalies {
        let writes = self.writes.lock().unwrap();
        let mut found = Anomalies::default();
        for (table, ids) in stored.iter().enumerate() {
            let tried: BTreeSet<i64> = writes
                .iter()
                .filter(|w| w.table == table)
                .map(|w| w.id)
                .collect();
            let mut seen = BTreeSet::new();
            for &id in ids {
                if !seen.insert(id) {
                    found.duplicate.push(id);
                }
                if !tried.contains(&id) {
                    found.phantom.push(id);
                }
            }
            let acked = writes
                .iter()
                .filter(|w| w.table == table && w.outcome == Outcome::Acked);
            found
                .lost
                .extend(acked.map(|w| w.id).filter(|id| !seen.contains(id)));
        }
        found.duplicate.extend(
            writes
                .iter()
                .filter(|w| w.outcome == Outcome::Duplicate)
                .map(|w| w.id),
        );
        found.stale = self.stale_reads(&writes);
        found
    }

    /// Strong reads that missed an acknowledged row, or counted fewer than an earlier one.
    fn stale_reads(&self, writes: &[Write]) -> Vec<String> {
        let reads = self.reads.lock().unwrap();
        let tables = reads.iter().map(|r| r.table + 1).max().unwrap_or(0);
        let origin = writes.iter().map(|w| w.started).min();
        let mut stale = Vec::new();
        for table in 0..tables {
            // When each acknowledgement came, in order.
            let mut acks: Vec<Instant> = writes
                .iter()
                .filter(|w| w.table == table && w.outcome == Outcome::Acked)
                .map(|w| w.ended)
                .collect();
            acks.sort_unstable();
            // The table's reads by when they ended, with the highest count up to each.
            let mut ended: Vec<(Instant, u64)> = reads
                .iter()
                .filter(|r| r.table == table)
                .map(|r| (r.ended, r.count))
                .collect();
            ended.sort_unstable();
            let mut highest = 0;
            for (_, count) in &mut ended {
                highest = highest.max(*count);
                *count = highest;
            }
            for read in reads.iter().filter(|r| r.table == table) {
                if let Some((id, false)) = read.required {
                    stale.push(format!(
                        "table {table}: a strong read through node {} missed row {id}, \
                         acknowledged before it began",
                        read.node
                    ));
                }
                let acked_before = acks.partition_point(|t| *t < read.started) as u64;
                let n = ended.partition_point(|(t, _)| *t < read.started);
                let seen_before = n.checked_sub(1).map_or(0, |i| ended[i].1);
                if read.count < acked_before.max(seen_before) {
                    let at = origin.map(|o| read.started.duration_since(o));
                    stale.push(format!(
                        "table {table}: a strong read through node {} at {at:?} into the run \
                         counted {} rows; {acked_before} were acknowledged and {seen_before} \
                         counted before it began",
                        read.node, read.count
                    ));
                }
            }
        }
        stale
    }

    /// For a fault that began at `at`: how long until every table acknowledged a write that
    /// began after it (the slowest table's wait); `None` if one never did.
    pub fn next_ack_on_slowest(&self, at: Instant, tables: usize) -> Option<Duration> {
        let writes = self.writes.lock().unwrap();
        let mut first: BTreeMap<usize, Instant> = BTreeMap::new();
        for w in writes.iter() {
            if w.outcome == Outcome::Acked && w.started >= at {
                let e = first.entry(w.table).or_insert(w.ended);
                *e = (*e).min(w.ended);
            }
        }
        if first.len() < tables {
            return None;
        }
        first.values().max().map(|end| end.duration_since(at))
    }

    /// Whether every table has a write acknowledged that began after `at`.
    pub fn acked_on_every_table_since(&self, at: Instant, tables: usize) -> bool {
        let writes = self.writes.lock().unwrap();
        let tables_acked: BTreeSet<usize> = writes
            .iter()
            .filter(|w| w.outcome == Outcome::Acked && w.started >= at)
            .map(|w| w.table)
            .collect();
        tables_acked.len() == tables
    }
}
