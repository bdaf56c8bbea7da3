//! Group commit of concurrent writes: several sessions' INSERTs (or upserts) to one shard
//! become one Raft entry.
//!
//! openraft 0.9 appends an entry and waits for its flush before it takes the next one, so a
//! shard made durable about one write per fsync however many sessions wrote (8 sessions of
//! single-row INSERTs: about 2,500 rows/s on this project's machine). Here the first writer to
//! arrive proposes; writers arriving while its entry is on its way queue up, and the next
//! proposer takes them all at once: plain INSERTs (or upserts) of the same shape are merged
//! into one command, so a flush carries every row that arrived meanwhile.
//!
//! A merged command is all-or-nothing, as every command is. If it is refused (a duplicate key
//! between two sessions' rows, a key a transaction is committing) or fails, its parts are
//! proposed again one by one, so each writer gets the answer it would have had alone. Other
//! commands (deletes, transactions, DDL) are proposed as they come, unmerged.

use std::sync::Arc;

use arrow::array::RecordBatch;
use parking_lot::{Condvar, Mutex};
use vecraft_storage::Result;
use vecraft_storage::command::Command;
use vecraft_storage::shard::Applied;

/// At most this many writes are merged into one command.
const MAX_MERGED_WRITES: usize = 256;
/// At most this many bytes of Arrow data are merged into one command (well within a log
/// record, `raft::MAX_COMMAND_BYTES`).
const MAX_MERGED_BYTES: usize = 4 << 20;

/// One writer's place in the queue, and where its answer is left.
struct Waiting {
    command: Command,
    answer: Arc<Mutex<Option<Result<Applied>>>>,
}

#[derive(Default)]
struct Queue {
    /// Whether a writer is proposing for the others now.
    proposing: bool,
    waiting: Vec<Waiting>,
}

#[derive(Default)]
pub struct Batcher {
    queue: Mutex<Queue>,
    answered: Condvar,
}

impl Batcher {
    /// Makes `command` durable through `propose`, merged with other writers' commands where
    /// it can be; returns what it did, as if it had been proposed alone.
    pub fn propose(
        &self,
        command: &Command,
        propose: &dyn Fn(&Command) -> Result<Applied>,
    ) -> Result<Applied> {
        if mergeable(command).is_none() {
            return propose(command);
        }
        let answer = Arc::new(Mutex::new(None));
        let mut queue = self.queue.lock();
        queue.waiting.push(Waiting {
            command: command.clone(),
            answer: Arc::clone(&answer),
        });
        loop {
            if let Some(result) = answer.lock().take() {
                return result;
            }
            if !queue.proposing {
                break;
            }
            // Another writer proposes, oldest writes first; it answers this one too.
            self.answered.wait(&mut queue);
        }
        queue.proposing = true;
        while answer.lock().is_none() {
            let round = take_round(&mut queue.waiting);
            drop(queue);
            propose_round(round, propose);
            queue = self.queue.lock();
            self.answered.notify_all();
        }
        // Writes queued behind the last round: one of their writers proposes next.
        queue.proposing = false;
        self.answered.notify_all();
        drop(queue);
        answer.lock().take().expect("answered")
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

/// Proposes `round` as one command, or its writes one by one if that is refused; leaves each
/// writer's answer in its slot.
fn propose_round(round: Vec<Waiting>, propose: &dyn Fn(&Command) -> Result<Applied>) {
    if let [only] = round.as_slice() {
        *only.answer.lock() = Some(propose(&only.command));
        return;
    }
    if let Some(Ok(applied)) = merge(&round).map(|merged| propose(&merged)) {
        for w in &round {
            let (batch, _) = mergeable(&w.command).expect("only mergeable writes queue");
            *w.answer.lock() = Some(Ok(Applied {
                rows_written: batch.num_rows() as u64,
                ..applied
            }));
        }
        return;
    }
    for w in &round {
        *w.answer.lock() = Some(propose(&w.command));
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
    use std::time::{Duration, Instant};

    use arrow::array::{AsArray, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use parking_lot::Mutex;
    use vecraft_storage::Error;
    use vecraft_storage::command::Command;
    use vecraft_storage::shard::Applied;

    use super::Batcher;

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

    /// Waits (with a deadline) until `n` writes wait in `batcher`'s queue.
    fn until_queued(batcher: &Batcher, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while batcher.queue.lock().waiting.len() < n {
            assert!(Instant::now() < deadline, "writers did not queue");
            std::thread::yield_now();
        }
    }

    #[test]
    fn writes_that_arrive_during_a_proposal_go_out_as_one_command() {
        let batcher = Arc::new(Batcher::default());
        let proposed: Arc<Mutex<Vec<Vec<i64>>>> = Arc::default();
        let propose = {
            let (batcher, proposed) = (batcher.clone(), proposed.clone());
            move |command: &Command| {
                let first = proposed.lock().is_empty();
                proposed.lock().push(ids(command));
                if first {
                    until_queued(&batcher, 7); // the others arrive while this one is out
                }
                Ok(Applied {
                    fresh: true,
                    rows_written: ids(command).len() as u64,
                    ..Applied::default()
                })
            }
        };
        let propose = Arc::new(propose);
        let writer = |w: i64| {
            let (batcher, propose) = (batcher.clone(), propose.clone());
            std::thread::spawn(move || batcher.propose(&insert(&[w * 10, w * 10 + 1]), &*propose))
        };
        let mut writers = vec![writer(0)];
        // The others start once the first write is out.
        let deadline = Instant::now() + Duration::from_secs(30);
        while proposed.lock().is_empty() {
            assert!(
                Instant::now() < deadline,
                "the first write was not proposed"
            );
            std::thread::yield_now();
        }
        writers.extend((1..8).map(writer));
        for writer in writers {
            let applied = writer.join().unwrap().unwrap();
            assert_eq!((applied.fresh, applied.rows_written), (true, 2));
        }
        let proposed = proposed.lock();
        assert_eq!(proposed.len(), 2, "{proposed:?}");
        assert_eq!((proposed[0].len(), proposed[1].len()), (2, 14));
        let mut all: Vec<i64> = proposed.concat();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..8)
                .flat_map(|w| [w * 10, w * 10 + 1])
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_refused_merge_is_proposed_again_write_by_write() {
        let batcher = Batcher::default();
        let stored: Mutex<Vec<i64>> = Mutex::default();
        let calls = Mutex::new(0);
        // Refuses a command with a key stored before or repeated within it, as a shard does.
        let propose = |command: &Command| {
            *calls.lock() += 1;
            let new = ids(command);
            let mut stored = stored.lock();
            let mut seen = stored.clone();
            for id in &new {
                if seen.contains(id) {
                    return Err(Error::DuplicateKey(id.to_string()));
                }
                seen.push(*id);
            }
            *stored = seen;
            Ok(Applied {
                fresh: true,
                rows_written: new.len() as u64,
                ..Applied::default()
            })
        };
        // Queue three writes by hand, as if they had arrived during another proposal.
        {
            let mut queue = batcher.queue.lock();
            for keys in [[1, 2], [2, 3], [4, 5]] {
                queue.waiting.push(super::Waiting {
                    command: insert(&keys),
                    answer: Arc::default(),
                });
            }
        }
        let answers: Vec<_> = batcher
            .queue
            .lock()
            .waiting
            .iter()
            .map(|w| w.answer.clone())
            .collect();
        let own = batcher.propose(&insert(&[6]), &propose);
        assert_eq!(own.unwrap().rows_written, 1);
        let results: Vec<_> = answers.iter().map(|a| a.lock().take().unwrap()).collect();
        assert_eq!(results[0].as_ref().unwrap().rows_written, 2);
        assert!(matches!(results[1], Err(Error::DuplicateKey(ref k)) if k == "2"));
        assert_eq!(results[2].as_ref().unwrap().rows_written, 2);
        // One merged try, refused; then each of the four alone.
        assert_eq!(*calls.lock(), 5);
        assert_eq!(*stored.lock(), vec![1, 2, 4, 5, 6]);
    }
}
