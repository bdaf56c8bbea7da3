//! Which shard a row lives on, and putting per-shard answers back together.
//!
//! A row's shard is a stable function of its primary key alone, the same on every node and
//! release: `jump(fnv1a64(key bytes), shards)`, where the key bytes are an integer key's 8
//! little-endian bytes or a text key's UTF-8 bytes, FNV-1a is the 64-bit variant (offset
//! 0xcbf29ce484222325, prime 0x100000001b3), and `jump` is Lamping and Veach's jump
//! consistent hash (growing from n to n + 1 shards moves only 1/(n + 1) of the keys).
//!
//! Searches ask every shard for its `k` nearest and keep the `k` nearest of those.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take, take_record_batch};
use arrow::datatypes::Float64Type;
use vecraft_storage::key::{Key, keys_of};
use vecraft_storage::{Error, Result};

/// The shard of `key` among `shards`.
pub fn shard_of(key: &Key, shards: usize) -> usize {
    assert!(shards > 0, "a collection has at least one shard");
    let hash = match key {
        Key::Int(v) => fnv1a64(&v.to_le_bytes()),
        Key::Text(s) => fnv1a64(s.as_bytes()),
    };
    jump(hash, shards)
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Jump consistent hash (Lamping and Veach, 2014).
fn jump(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j) = (-1i64, 0i64);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as usize
}

/// `batch`'s rows by shard (by their `keys`, one per row), in their order; `None` for a shard
/// that gets no rows.
pub fn split_rows(
    batch: &RecordBatch,
    keys: &ArrayRef,
    shards: usize,
) -> Result<Vec<Option<RecordBatch>>> {
    debug_assert_eq!(keys.len(), batch.num_rows(), "a key per row");
    let keys = keys_of(keys)?;
    let mut rows: Vec<Vec<u32>> = vec![Vec::new(); shards];
    for (row, key) in keys.iter().enumerate() {
        rows[shard_of(key, shards)].push(row as u32);
    }
    rows.into_iter()
        .map(|rows| {
            if rows.is_empty() {
                return Ok(None);
            }
            Ok(Some(take_record_batch(batch, &UInt32Array::from(rows))?))
        })
        .collect()
}

/// `keys` by shard, in their order.
pub fn split_keys(keys: &[Key], shards: usize) -> Vec<Vec<Key>> {
    let mut split = vec![Vec::new(); shards];
    for key in keys {
        split[shard_of(key, shards)].push(key.clone());
    }
    split
}

/// The `k` nearest rows of several shards' answers (each closest first, `_distance` last),
/// closest first; ties keep shard order. NaN distances sort last.
pub fn merge_nearest(answers: Vec<RecordBatch>, k: usize) -> Result<RecordBatch> {
    let Some(first) = answers.first() else {
        return Err(Error::InvalidArgument("no shard answered".into()));
    };
    let schema = first.schema();
    let all = concat_batches(&schema, &answers)?;
    let distance: &ArrayRef = all.column(all.num_columns() - 1);
    // A stable sort: rows at equal distances keep shard order, so answers repeat exactly.
    let distance = distance
        .as_primitive_opt::<Float64Type>()
        .ok_or_else(|| Error::InvalidArgument("a search answer without its _distance".into()))?;
    let mut rows: Vec<u32> = (0..all.num_rows() as u32).collect();
    rows.sort_by(|a, b| {
        distance
            .value(*a as usize)
            .total_cmp(&distance.value(*b as usize))
    });
    rows.truncate(k);
    let order = UInt32Array::from(rows);
    let columns = all
        .columns()
        .iter()
        .map(|c| take(c, &order, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(Arc::clone(&schema), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The placement of keys is part of the on-disk format: these must never change.
    #[test]
    fn placement_is_stable() {
        let ints: Vec<usize> = (0..8).map(|i| shard_of(&Key::Int(i), 4)).collect();
        let texts: Vec<usize> = ["a", "b", "vecraft", ""]
            .iter()
            .map(|s| shard_of(&Key::Text(s.to_string()), 4))
            .collect();
        assert_eq!((ints, texts), (PINNED_INTS.to_vec(), PINNED_TEXTS.to_vec()));
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c, "FNV-1a 64 of \"a\"");
        assert!((0..1000).all(|i| shard_of(&Key::Int(i), 1) == 0));
    }

    const PINNED_INTS: [usize; 8] = [3, 3, 3, 3, 1, 0, 0, 2];
    const PINNED_TEXTS: [usize; 4] = [2, 3, 3, 1];

    /// Jump hash moves only the keys that must move when a shard is added.
    #[test]
    fn adding_a_shard_moves_about_one_key_in_n_plus_one() {
        let moved = (0..10_000)
            .filter(|i| shard_of(&Key::Int(*i), 4) != shard_of(&Key::Int(*i), 5))
            .count();
        assert!(
            (1_500..2_500).contains(&moved),
            "{moved} of 10,000 keys moved"
        );
        let counts = (0..10_000).fold([0usize; 4], |mut c, i| {
            c[shard_of(&Key::Int(i), 4)] += 1;
            c
        });
        assert!(
            counts.iter().all(|n| (2_200..2_800).contains(n)),
            "{counts:?}"
        );
    }
}
