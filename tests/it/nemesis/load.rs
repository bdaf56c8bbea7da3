//! What the machine was doing while a probe was slow. A thread samples, every
//! `SAMPLE_EVERY_MS`, how many threads were runnable, how idle the cores were, and how much
//! CPU each node's process and the harness used. A slow `SELECT 1` is then told apart as a
//! busy machine (every core taken, by whom) or a gateway stalled on its own (cores idle).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::net::Id;

const SAMPLE_EVERY_MS: u64 = 20;
/// `/proc`'s CPU times are in clock ticks of 10 ms (`USER_HZ` is 100 on Linux).
const MS_PER_TICK: u64 = 10;

/// One look at `/proc`.
struct Sample {
    at: Instant,
    /// Threads runnable on the machine (`procs_running`).
    runnable: u64,
    /// The cores' idle and total ticks since boot.
    idle_ticks: u64,
    total_ticks: u64,
    /// Each node's process's CPU ticks (user + system) since it started, by node.
    node_ticks: BTreeMap<Id, u64>,
    harness_ticks: u64,
}

/// The sampler; it stops when dropped.
pub struct Load {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
}

impl Load {
    /// Samples until dropped; `pids` holds the pid of each node's running process.
    pub fn start(pids: Arc<Mutex<BTreeMap<Id, u32>>>) -> Load {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (kept, stopped) = (samples.clone(), stop.clone());
        std::thread::Builder::new()
            .name("nemesis-load".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    let pids = pids.lock().unwrap().clone();
                    if let Some(sample) = look(&pids) {
                        kept.lock().unwrap().push(sample);
                    }
                    std::thread::sleep(Duration::from_millis(SAMPLE_EVERY_MS)); // the pace
                }
            })
            .expect("the load sampler's thread");
        Load { samples, stop }
    }

    /// What the machine did between `from` and `to`, in a line: the most threads runnable at
    /// once, the cores' idle share, and the CPU milliseconds of each node and the harness.
    pub fn during(&self, from: Instant, to: Instant) -> String {
        let samples = self.samples.lock().unwrap();
        let first = samples.partition_point(|s| s.at < from).saturating_sub(1);
        let last = samples.partition_point(|s| s.at <= to).min(samples.len());
        let window = &samples[first..last.max(first)];
        let (Some(a), Some(b)) = (window.first(), window.last()) else {
            return "no load samples".into();
        };
        let runnable = window.iter().map(|s| s.runnable).max().unwrap_or(0);
        let total = b.total_ticks.saturating_sub(a.total_ticks).max(1);
        let idle_pct = 100 * b.idle_ticks.saturating_sub(a.idle_ticks) / total;
        let mut cpu: Vec<String> = b
            .node_ticks
            .iter()
            .map(|(id, ticks)| {
                let before = a.node_ticks.get(id).copied().unwrap_or(0);
                format!(
                    "node {id} {} ms",
                    MS_PER_TICK * ticks.saturating_sub(before)
                )
            })
            .collect();
        let harness = b.harness_ticks.saturating_sub(a.harness_ticks);
        cpu.push(format!("harness {} ms", MS_PER_TICK * harness));
        format!(
            "over {} ms: up to {runnable} threads runnable, cores {idle_pct}% idle; CPU: {}",
            b.at.duration_since(a.at).as_millis(),
            cpu.join(", ")
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn look(pids: &BTreeMap<Id, u32>) -> Option<Sample> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let runnable = stat
        .lines()
        .find_map(|l| l.strip_prefix("procs_running "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let node_ticks = pids
        .iter()
        .filter_map(|(id, pid)| Some((*id, process_ticks(&pid.to_string())?)))
        .collect();
    Some(Sample {
        at: Instant::now(),
        runnable,
        // idle and iowait
        idle_ticks: cpu.get(3).copied().unwrap_or(0) + cpu.get(4).copied().unwrap_or(0),
        total_ticks: cpu.iter().sum(),
        node_ticks,
        harness_ticks: process_ticks("self").unwrap_or(0),
    })
}

/// A process's user + system CPU ticks, from `/proc/<pid>/stat` (fields 14 and 15; the
/// command name in field 2 may hold spaces, so fields are counted after its `)`).
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after the name: field 3 is index 0, so fields 14 and 15 are 11 and 12
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}
