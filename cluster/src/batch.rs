//! Group commit of concurrent writes: several sessions' INSERTs (or upserts) to one shard
//! become one Raft entry.
//!
//! openraft 0.9 appends an entry and waits for its flush before it takes the next one, so a
//! shard made durable about one write per fsync however many sessions wrote (8 sessions of
//! single-row INSERTs: about 2,500 rows/s on this project's machine). Here one proposer task
//! per shard takes every write that arrived while its last entry was on its way, merges the
//! plain INSERTs (or upserts) of the same shape into one command, and proposes that: a flush
//! carries every row that arrived meanwhile.
//!
//! Writers await their answer; no thread waits on a write. A session's INSERT goes from the
//! gateway's task to the proposer and comes back through one channel each way, which matters
//! as much as the fsyncs saved: on a 2-core machine the thread hand-offs of a blocking write
//! path cost about as much CPU as the rest of the INSERT.
//!
//! A write is carried out once its round is taken: a statement cancelled after that (a
//! statement timeout, a cancel request) answers 57014 although its rows were written, as a
//! PostgreSQL commit cancelled while it waits for synchronous replication does. One cancelled
//! before its round is taken is dropped from the queue and writes nothing.
//!
//! A merged command is all-or-nothing, as every command is. If it is refused (a duplicate key
//! between two sessions' rows, a key a transaction is committing) or fails, its parts are
//! proposed again one by one, so each writer gets the answer it would have had alone. Other
//! commands (deletes, transactions, DDL) are proposed as they come, unmerged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use tokio::sync::{mpsc, oneshot};
use vecraft_storage::command::Command;
use vecraft_storage::shard::Applied;
use vecraft_storage::{Error, Result};

/// At most this many writes are merged into one command.
const MAX_MERGED_WRITES: usize = 256;
/// At most this many bytes of Arrow data are merged into one command (well within a log
/// record, `raft::MAX_COMMAND_BYTES`).
const MAX_MERGED_BYTES: usize = 4 << 20;

/// Proposes one command and answers what it did: the shard's Raft group, or a test's stand-in.
pub type Propose = Arc<dyn Fn(Command) -> ProposeFuture + Send + Sync>;
pub type ProposeFuture = Pin<Box<dyn Future<Output = Result<Applied>> + Send>>;

/// One writer's place in the queue, and where its answer goes.
struct Waiting {
    command: Command,
    answer: oneshot::Sender<Result<Applied>>,
}

/// The writers' side of a shard's proposer task; the task ends when this is dropped.
pub struct Batcher {
    queue: mpsc::UnboundedSender<Waiting>,
    propose: Propose,
}

impl Batcher {
    /// Starts the proposer task on the groups' runtime.
    pub fn start(propose: Propose) -> Batcher {
        let (queue, waiting) = mpsc::unbounded_channel();
        crate::raft::spawn(run(waiting, Arc::clone(&propose)));
        Batcher { queue, propose }
    }

    /// Makes `command` durable, merged with other writers' commands where it can be; the
    /// future answers what it did, as if it had been proposed alone. The write is queued
    /// before this returns, so writes queue in the order of the calls.
    pub fn propose(&self, command: Command) -> impl Future<Output = Result<Applied>> + use<> {
        let queued = match mergeable(&command) {
            None => Err((self.propose)(command)),
            Some(_) => {
                let (answer, answered) = oneshot::channel();
                match self.queue.send(Waiting { command, answer }) {
                    Ok(()) => Ok(answered),
                    Err(_) => Err(Box::pin(async { Err(Error::Closed) }) as ProposeFuture),
                }
            }
        };
        async move {
            match queued {
                Ok(answered) => answered.await.unwrap_or(Err(Error::Closed)),
                Err(alone) => alone.await,
            }
        }
    }

    /// `propose`, waited for on this thread: for callers outside async code.
    ///
    /// The wait is exempt from tokio's cooperative budget. Called on a runtime worker whose
    /// task has spent its budget, a tokio channel answers `Pending` and defers its wake-up
    /// until the task yields, which a thread blocked here never does: a COPY of a million
    /// rows, writing chunk after chunk from one poll of its connection's task, hung so.
    pub fn propose_blocking(&self, command: Command) -> Result<Applied> {
        futures::executor::block_on(tokio::task::unconstrained(self.propose(command)))
    }
}

/// The proposer: takes every write queued meanwhile, proposes them merged, answers each.
async fn run(mut queue: mpsc::UnboundedReceiver<Waiting>, propose: Propose) {
    let mut waiting: Vec<Waiting> = Vec::new();
    loop {
        if waiting.is_empty() {
            match queue.recv().await {
                Some(first) => waiting.push(first),
                None => return,
            }
        }
        while let Ok(next) = queue.try_recv() {
            waiting.push(next);
        }
        // A writer that gave up (its statement was cancelled) before its round: not written.
        waiting.retain(|w| !w.answer.is_closed());
        if waiting.is_empty() {
            continue;
        }
        let round = take_round(&mut waiting);
        assert!(!round.is_empty(), "a round takes at least the oldest write");
        propose_round(round, &propose).await;
    }
}

/// The rows of a command that can be merged, and its kind.
fn mergeable(command: &Command) -> Option<(&RecordBatch, bool)> {
    match command {
        Command::Insert(batch) => Some((batch, true)),
        Command::Upsert(batch) => Some((batch, false)),
        _ => None,
    }
}

/// The oldest writes that merge into one command: the same kind and schema, within the caps.
fn take_round(waiting: &mut Vec<Waiting>) -> Vec<Waiting> {
    let Some(first) = waiting.first() else {
        return Vec::new();
    };
    let (first_batch, kind) = mergeable(&first.command).expect("only mergeable writes queue");
    let schema = first_batch.schema();
    let mut bytes = 0;
    let mut take = 0;
    for w in waiting.iter() {
        let (batch, k) = mergeable(&w.command).expect("only mergeable writes queue");
        let size = batch.get_array_memory_size();
        let fits = take == 0 || (bytes + size <= MAX_MERGED_BYTES && take < MAX_MERGED_WRITES);
        if k != kind || batch.schema() != schema || !fits {
            break;
        }
        bytes += size;
        take += 1;
    }
    waiting.drain(..take).collect()
}

/// Proposes `round` as one command, or its writes one by one if that is refused; answers
/// each writer that still waits.
async fn propose_round(round: Vec<Waiting>, propose: &Propose) {
    if round.len() > 1 {
        let merged = match merge(&round) {
            Some(merged) => propose(merged).await,
            None => Err(Error::Closed),
        };
        if let Ok(applied) = merged {
            for w in round {
                let (batch, _) = mergeable(&w.command).expect("only mergeable writes queue");
                let rows_written = batch.num_rows() as u64;
                let _ = w.answer.send(Ok(Applied {
                    rows_written,
                    ..applied
                }));
            }
            return;
        }
    }
    for w in round {
        let answer = propose(w.command).await;
        let _ = w.answer.send(answer);
    }
}

/// The writes of `round` as one command of their kind, in order.
fn merge(round: &[Waiting]) -> Option<Command> {
    let batches: Vec<&RecordBatch> = round
        .iter()
        .map(|w| {
            mergeable(&w.command)
                .expect("only mergeable writes queue")
                .0
        })
        .collect();
    let (_, insert) = mergeable(&round[0].command)?;
    let rows = arrow::compute::concat_batches(&batches[0].schema(), batches).ok()?;
    Some(match insert {
        true => Command::Insert(rows),
        false => Command::Upsert(rows),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use parking_lot::Mutex;
    use tokio::sync::Semaphore;
    use vecraft_storage::Error;
    use vecraft_storage::command::Command;
    use vecraft_storage::shard::Applied;

    use super::{Batcher, Propose};

    fn insert(ids: &[i64]) -> Command {
        let schema = Schema::new(vec![Field::new("id", DataType::Int64, false)]);
        let ids = Int64Array::from(ids.to_vec());
        Command::Insert(RecordBatch::try_new(Arc::new(schema), vec![Arc::new(ids)]).unwrap())
    }

    fn ids(command: &Command) -> Vec<i64> {
        let Command::Insert(batch) = command else {
            panic!("an insert")
        };
        batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec()
    }

    /// A stand-in for a shard's group: keeps every command it accepts, refusing one with a
    /// key accepted before or repeated within it, as a shard does.
    /// The first proposal says it `started` and waits until `release` gets a permit, so the
    /// test can queue writes behind it.
    fn recording() -> (Propose, Recorded) {
        let recorded = Recorded::default();
        let propose: Propose = {
            let recorded = recorded.clone();
            Arc::new(move |command: Command| {
                let Recorded {
                    proposed,
                    started,
                    release,
                } = recorded.clone();
                Box::pin(async move {
                    let new = ids(&command);
                    let first = proposed.lock().is_empty();
                    proposed.lock().push(new.clone());
                    if first {
                        started.add_permits(1);
                        release.acquire().await.expect("open").forget();
                    }
                    let stored: Vec<i64> = proposed
                        .lock()
                        .iter()
                        .rev()
                        .skip(1)
                        .flatten()
                        .copied()
                        .collect();
                    let mut seen = Vec::new();
                    for id in &new {
                        if seen.contains(id) || stored.contains(id) {
                            proposed.lock().pop();
                            return Err(Error::DuplicateKey(id.to_string()));
                        }
                        seen.push(*id);
                    }
                    Ok(Applied {
                        fresh: true,
                        rows_written: new.len() as u64,
                        ..Applied::default()
                    })
                })
            })
        };
        (propose, recorded)
    }

    #[derive(Clone)]
    struct Recorded {
        proposed: Arc<Mutex<Vec<Vec<i64>>>>,
        started: Arc<Semaphore>,
        release: Arc<Semaphore>,
    }

    impl Default for Recorded {
        fn default() -> Self {
            Recorded {
                proposed: Arc::default(),
                started: Arc::new(Semaphore::new(0)),
                release: Arc::new(Semaphore::new(0)),
            }
        }
    }

    impl Recorded {
        /// Waits until the first proposal is out (and waits for `release`).
        async fn first_out(&self) {
            self.started.acquire().await.expect("open").forget();
        }
    }

    #[tokio::test]
    async fn writes_that_arrive_during_a_proposal_go_out_as_one_command() {
        let (propose, recorded) = recording();
        let batcher = Batcher::start(propose);
        let first = tokio::spawn(batcher.propose(insert(&[0, 1])));
        recorded.first_out().await;
        // The others queue while the first write is out.
        let others: Vec<_> = (1..8)
            .map(|w| tokio::spawn(batcher.propose(insert(&[w * 10, w * 10 + 1]))))
            .collect();
        recorded.release.add_permits(1);
        for writer in std::iter::once(first).chain(others) {
            let applied = writer.await.unwrap().unwrap();
            assert_eq!((applied.fresh, applied.rows_written), (true, 2));
        }
        let proposed = recorded.proposed.lock();
        assert_eq!(proposed.len(), 2, "{proposed:?}");
        assert_eq!((proposed[0].len(), proposed[1].len()), (2, 14));
        let mut all: Vec<i64> = proposed.concat();
        all.sort_unstable();
        let expected: Vec<i64> = [0, 1]
            .into_iter()
            .chain((1..8).flat_map(|w| [w * 10, w * 10 + 1]))
            .collect();
        assert_eq!(all, expected);
    }

    #[tokio::test]
    async fn a_refused_merge_is_proposed_again_write_by_write() {
        let (propose, recorded) = recording();
        let batcher = Batcher::start(propose);
        let first = tokio::spawn(batcher.propose(insert(&[6])));
        recorded.first_out().await;
        // Three writes queue behind the first; the second repeats a key of the first.
        let queued: Vec<_> = [[1, 2], [2, 3], [4, 5]]
            .iter()
            .map(|keys| batcher.propose(insert(keys)))
            .collect();
        recorded.release.add_permits(1);
        assert_eq!(first.await.unwrap().unwrap().rows_written, 1);
        let results = futures::future::join_all(queued).await;
        assert_eq!(results[0].as_ref().unwrap().rows_written, 2);
        assert!(matches!(results[1], Err(Error::DuplicateKey(ref k)) if k == "2"));
        assert_eq!(results[2].as_ref().unwrap().rows_written, 2);
        // The first alone; the three merged, refused; then each of the three alone.
        let stored = recorded.proposed.lock().clone();
        assert_eq!(stored, vec![vec![6], vec![1, 2], vec![4, 5]]);
    }

    #[tokio::test]
    async fn a_write_given_up_before_its_round_is_not_proposed() {
        let (propose, recorded) = recording();
        let batcher = Batcher::start(propose);
        let first = tokio::spawn(batcher.propose(insert(&[1])));
        recorded.first_out().await;
        drop(batcher.propose(insert(&[2])));
        let third = batcher.propose(insert(&[3]));
        recorded.release.add_permits(1);
        assert_eq!(first.await.unwrap().unwrap().rows_written, 1);
        assert_eq!(third.await.unwrap().rows_written, 1);
        assert_eq!(*recorded.proposed.lock(), vec![vec![1], vec![3]]);
    }

    #[test]
    fn blocking_writes_from_a_runtime_task_outlast_its_cooperative_budget() {
        let (propose, recorded) = recording();
        recorded.release.add_permits(1);
        let batcher = Arc::new(Batcher::start(propose));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        let writer = Arc::clone(&batcher);
        runtime.spawn(async move {
            // Never yields, as a COPY's parser writing chunk after chunk: every answer
            // received spends a unit of the task's budget (128).
            for id in 0..300 {
                writer.propose_blocking(insert(&[id])).unwrap();
            }
            let _ = done.send(());
        });
        let finished = finished.recv_timeout(std::time::Duration::from_secs(30));
        runtime.shutdown_background();
        assert!(
            finished.is_ok(),
            "a blocking write hung once the budget ran out"
        );
        assert_eq!(recorded.proposed.lock().len(), 300);
    }

    #[test]
    fn a_write_is_answered_to_a_caller_outside_async_code() {
        let (propose, recorded) = recording();
        recorded.release.add_permits(1);
        let batcher = Batcher::start(propose);
        assert_eq!(
            batcher
                .propose_blocking(insert(&[7, 8]))
                .unwrap()
                .rows_written,
            2
        );
        assert_eq!(*recorded.proposed.lock(), vec![vec![7, 8]]);
    }
}
