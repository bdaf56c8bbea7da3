//! A transaction's writes through SQL: seen by its own session's scans, filters and kNN
//! searches, by no other session's until COMMIT, gone at ROLLBACK; savepoints take back what
//! followed them.

use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::prelude::SessionContext;
use vecraft_cluster::collection::Collection;
use vecraft_storage::schema::{CollectionSchema, ColumnDef, ColumnType, VectorSpec};
use vecraft_storage::shard::ShardOptions;

use super::ids;
use crate::table::CollectionTable;
use crate::transaction::{TransactionSlot, TxnSource};
use crate::{new_session, sql};

/// A collection, a session that writes in transactions, and another that only reads.
struct Sessions {
    collection: Arc<Collection>,
    slot: Arc<TransactionSlot>,
    mine: SessionContext,
    other: SessionContext,
}

fn open(dir: &std::path::Path) -> Sessions {
    let schema = CollectionSchema::new(
        vec![
            ColumnDef::new("id", ColumnType::Int64, false),
            ColumnDef::new("embedding", ColumnType::Vector(VectorSpec::new(2)), true),
            ColumnDef::new("tag", ColumnType::Text, true),
        ],
        "id",
    )
    .unwrap();
    let collection =
        Arc::new(Collection::open(dir, Some(schema), ShardOptions::default()).unwrap());
    let slot = Arc::new(TransactionSlot::default());
    let source = TxnSource::new("items", collection.clone(), slot.clone());
    let mine = new_session();
    mine.register_table("items", Arc::new(CollectionTable::new(Arc::new(source))))
        .unwrap();
    let other = new_session();
    other
        .register_table("items", Arc::new(CollectionTable::new(collection.clone())))
        .unwrap();
    Sessions {
        collection,
        slot,
        mine,
        other,
    }
}

async fn run(ctx: &SessionContext, query: &str) {
    sql(ctx, query).await.unwrap().collect().await.unwrap();
}

impl Sessions {
    /// A second session over the same collection, writing in its own transaction.
    fn second_writer(&self) -> (Arc<TransactionSlot>, SessionContext) {
        let slot = Arc::new(TransactionSlot::default());
        let ctx = new_session();
        let source = TxnSource::new("items", self.collection.clone(), slot.clone());
        ctx.register_table("items", Arc::new(CollectionTable::new(Arc::new(source))))
            .unwrap();
        (slot, ctx)
    }

    /// Commits `slot`'s transaction.
    fn commit_of(&self, slot: &TransactionSlot) -> datafusion::error::Result<()> {
        let collection = self.collection.clone();
        let txn = slot.take().expect("a transaction is open");
        txn.commit(|name| (name == "items").then(|| collection.clone()))
    }

    /// The committed rows' tags, by id.
    async fn tags(&self) -> Vec<String> {
        let batches = sql(&self.other, "SELECT tag FROM items ORDER BY id")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let tags = batches
            .iter()
            .flat_map(|b| b.column(0).as_string::<i32>().iter());
        tags.flatten().map(str::to_string).collect()
    }

    /// Commits this session's transaction.
    fn commit(&self) {
        self.commit_of(&self.slot).unwrap();
    }
}

#[tokio::test]
async fn writes_are_seen_by_their_transaction_only_until_commit() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    run(
        &s.mine,
        "INSERT INTO items VALUES (1, '[0,0]', 'a'), (2, '[5,5]', 'b')",
    )
    .await;
    s.slot.begin();
    run(&s.mine, "INSERT INTO items VALUES (3, '[1,1]', 'c')").await;
    run(&s.mine, "UPDATE items SET tag = 'B' WHERE id = 2").await;
    run(&s.mine, "DELETE FROM items WHERE id = 1").await;
    let scan = "SELECT id FROM items ORDER BY id";
    assert_eq!(ids(&s.mine, scan).await, [2, 3]);
    assert_eq!(ids(&s.other, scan).await, [1, 2]);
    // A filter and a kNN search read the transaction's rows too: the fresh row is found, the
    // deleted one is not.
    assert_eq!(
        ids(&s.mine, "SELECT id FROM items WHERE tag = 'B'").await,
        [2]
    );
    let knn = "SELECT id FROM items ORDER BY embedding <-> '[0,0]' LIMIT 2";
    assert_eq!(ids(&s.mine, knn).await, [3, 2]);
    assert_eq!(ids(&s.other, knn).await, [1, 2]);
    s.commit();
    assert_eq!(ids(&s.other, scan).await, [2, 3]);
    assert_eq!(
        ids(&s.other, "SELECT id FROM items WHERE tag = 'B'").await,
        [2]
    );
}

#[tokio::test]
async fn rollback_and_savepoints_take_writes_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.slot.begin();
    run(&s.mine, "INSERT INTO items VALUES (1, '[0,0]', 'a')").await;
    s.slot.savepoint("s1").unwrap();
    run(&s.mine, "INSERT INTO items VALUES (2, '[1,1]', 'b')").await;
    run(&s.mine, "DELETE FROM items WHERE id = 1").await;
    assert_eq!(ids(&s.mine, "SELECT id FROM items").await, [2]);
    s.slot.rollback_to("s1").unwrap();
    assert_eq!(ids(&s.mine, "SELECT id FROM items").await, [1]);
    let e = s.slot.rollback_to("nope").unwrap_err();
    assert!(
        e.to_string().contains("savepoint \"nope\" does not exist"),
        "{e}"
    );
    assert!(s.slot.take().is_some()); // ROLLBACK
    assert!(ids(&s.mine, "SELECT id FROM items").await.is_empty());
    assert!(ids(&s.other, "SELECT id FROM items").await.is_empty());
}

#[tokio::test]
async fn a_duplicate_key_is_refused_at_the_statement() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    run(&s.mine, "INSERT INTO items VALUES (1, '[0,0]', 'a')").await;
    s.slot.begin();
    for query in [
        "INSERT INTO items VALUES (1, '[1,1]', 'again')",
        "INSERT INTO items VALUES (2, '[1,1]', 'x'), (2, '[1,1]', 'y')",
    ] {
        let e = sql(&s.mine, query)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("duplicate key value"),
            "{query}: {e}"
        );
    }
    // A key the transaction deleted can be inserted again; one it inserted cannot.
    run(&s.mine, "DELETE FROM items WHERE id = 1").await;
    run(&s.mine, "INSERT INTO items VALUES (1, '[2,2]', 'new')").await;
    let again = sql(&s.mine, "INSERT INTO items VALUES (1, '[3,3]', 'x')")
        .await
        .unwrap();
    assert!(again.collect().await.is_err());
    s.commit();
    let tags = sql(&s.other, "SELECT tag FROM items")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(tags[0].column(0).as_string::<i32>().value(0), "new");
}

#[tokio::test]
async fn the_first_committer_wins_and_the_other_commit_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let (theirs, ctx) = s.second_writer();
    s.slot.begin();
    theirs.begin();
    run(&ctx, "INSERT INTO items VALUES (6, '[6,6]', 'theirs')").await;
    run(&ctx, "INSERT INTO items VALUES (5, '[5,5]', 'theirs')").await;
    run(&s.mine, "INSERT INTO items VALUES (5, '[0,0]', 'mine')").await;
    s.commit();
    let e = s.commit_of(&theirs).unwrap_err();
    assert!(e.to_string().contains("could not serialize access"), "{e}");
    assert_eq!(ids(&s.other, "SELECT id FROM items").await, [5]);
}

/// `INSERT … ON CONFLICT DO NOTHING` in a block whose key another session committed first:
/// the COMMIT succeeds and that row is skipped, as PostgreSQL skips it.
#[tokio::test]
async fn a_do_nothing_row_whose_key_was_taken_meanwhile_is_skipped_at_commit() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.slot.begin();
    let insert = "INSERT INTO items VALUES (7, '[7,7]', 'mine'), (8, '[8,8]', 'mine') \
                  ON CONFLICT DO NOTHING";
    run(&s.mine, insert).await;
    run(&s.other, "INSERT INTO items VALUES (7, '[0,0]', 'theirs')").await;
    s.commit();
    let tags = s.tags().await;
    assert_eq!(tags, ["theirs", "mine"]);
}

/// Two blocks update the same row: the first to commit wins, the other's COMMIT fails with
/// 40001 (Vecraft does not wait on row locks, as PostgreSQL's READ COMMITTED would) and
/// applies nothing.
#[tokio::test]
async fn the_second_update_of_a_row_fails_its_commit() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    run(
        &s.other,
        "INSERT INTO items VALUES (1, '[1,1]', 'old'), (2, '[2,2]', 'old')",
    )
    .await;
    let (theirs, ctx) = s.second_writer();
    s.slot.begin();
    theirs.begin();
    run(&s.mine, "UPDATE items SET tag = 'mine' WHERE id = 1").await;
    run(&ctx, "UPDATE items SET tag = 'theirs' WHERE id IN (1, 2)").await;
    s.commit();
    let e = s.commit_of(&theirs).unwrap_err();
    assert!(e.to_string().contains("could not serialize access"), "{e}");
    let tags = s.tags().await;
    assert_eq!(tags, ["mine", "old"]);
}
