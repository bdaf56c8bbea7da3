//! A snapshot another node sends (`snapshot_push.rs`) is checked whole before Raft sees it.
//!
//! openraft adopts a snapshot's vote, membership and log position before the state machine
//! installs its data, and a failed install is fatal to the group: one snapshot of garbage
//! bytes, or of another collection's data, would leave the replica stopped (and, after a
//! restart, a learner with no voters). So the data is read through first — every file's
//! checksum, the manifest, the schema against this replica's — and its metadata must make
//! sense for this replica; anything else is refused and the replica goes on serving.

use openraft::{BasicNode, SnapshotMeta};
use vecraft_storage::schema::{CollectionSchema, ColumnType};
use vecraft_storage::shard::Shard;

use crate::raft::NodeId;

/// Why the snapshot may not be installed on this replica, whose schema is `schema`. (Its
/// membership may predate this replica: a learner added after the last checkpoint catches up
/// from that checkpoint's snapshot, which does not name it.)
pub fn check(
    schema: &CollectionSchema,
    meta: &SnapshotMeta<NodeId, BasicNode>,
    input: &mut dyn std::io::Read,
) -> Result<(), String> {
    let Some(last) = meta.last_log_id else {
        return Err("a snapshot must cover some of the log".into());
    };
    if meta
        .last_membership
        .membership()
        .voter_ids()
        .next()
        .is_none()
    {
        return Err("a snapshot's membership must have voters".into());
    }
    if meta.last_membership.log_id().is_some_and(|m| m > last) {
        return Err("a snapshot's membership is newer than its data".into());
    }
    let contents = Shard::verify_snapshot(input).map_err(|e| e.to_string())?;
    if contents.durable_index < last.index {
        return Err(format!(
            "the snapshot's data reaches index {}, its metadata claims {}",
            contents.durable_index, last.index
        ));
    }
    if !same_layout(&contents.schema, schema) {
        return Err("the snapshot holds another collection's columns".into());
    }
    Ok(())
}

/// Whether two schemas hold the same columns, types, dimensions and key (index settings may
/// differ: they change with `CREATE INDEX`).
fn same_layout(a: &CollectionSchema, b: &CollectionSchema) -> bool {
    let kind = |t: &ColumnType| match t {
        ColumnType::Vector(spec) => Err(spec.dims),
        other => Ok(*other),
    };
    a.primary_key == b.primary_key
        && a.hidden_key == b.hidden_key
        && a.columns.len() == b.columns.len()
        && a.columns.iter().zip(&b.columns).all(|(x, y)| {
            x.name == y.name && x.nullable == y.nullable && kind(&x.ty) == kind(&y.ty)
        })
}
