//! A shard's segments as they are now, one by one: what `vecraft_segments` shows of the
//! compactor's work (a merge makes fewer segments, a rewrite takes dead rows to 0).

use std::path::Path;

use super::Shard;
use super::state::{SlotData, segment_dir};
use crate::segment::Segment;

/// One segment of a shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    pub id: u64,
    /// `growing` (taking writes), `frozen` (full, waiting to be sealed) or `sealed` (on disk,
    /// with its graphs).
    pub state: &'static str,
    /// Rows it holds, dead ones included.
    pub rows: u64,
    /// Rows deleted (tombstoned) that it still holds.
    pub dead_rows: u64,
    /// Bytes of its files on disk (0 for segments in memory).
    pub size_bytes: u64,
}

impl Shard {
    /// Every segment: sealed and frozen ones oldest first, then the growing one.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let mut segments: Vec<SegmentInfo> = {
            let state = self.inner.state.read();
            let slots = state.slots.iter().map(|slot| SegmentInfo {
                id: slot.id,
                state: match slot.data {
                    SlotData::Frozen(_) => "frozen",
                    SlotData::Sealed(_) => "sealed",
                },
                rows: u64::from(slot.data.segment().num_rows()),
                dead_rows: slot.dead.len(),
                size_bytes: 0,
            });
            let growing = SegmentInfo {
                id: state.growing_id,
                state: "growing",
                rows: u64::from(state.growing.num_rows()),
                dead_rows: state.growing_dead.len(),
                size_bytes: 0,
            };
            slots.chain([growing]).collect()
        };
        // Sizes are read outside the lock; a segment merged away meanwhile reads as 0.
        for segment in segments.iter_mut().filter(|s| s.state == "sealed") {
            segment.size_bytes = dir_size(&segment_dir(&self.inner.dir, segment.id));
        }
        segments
    }
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}
