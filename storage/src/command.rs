//! What a shard's log carries: the commands its state machine applies, and their bytes.
//!
//! Inserted and upserted rows travel as an Arrow IPC stream, deleted keys as a one-column IPC
//! stream, so a command decodes without knowing the collection's schema. Layout: a tag byte,
//! then for `Upsert`/`Insert`/`Delete` the IPC stream bytes, for `SetIndex` JSON, for the
//! transaction commands the layout `txn.rs` gives (a 16-byte id first where there is one).

use std::io::Cursor;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

use crate::distance::Metric;
use crate::error::{Error, Result};
use crate::key::{Key, keys_of, keys_to_array};
use crate::schema::HnswParams;
use crate::txn::{Coordinator, TxnId, TxnWrite, decode_txn_id, encode_txn_id};

#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Insert rows, replacing any row with the same primary key.
    Upsert(RecordBatch),
    /// Insert rows; refused whole (SQL's unique violation) if a key exists or repeats.
    Insert(RecordBatch),
    /// Insert the rows whose key is new, the first of a repeated key; skip the others
    /// (SQL's `ON CONFLICT DO NOTHING`).
    InsertMissing(RecordBatch),
    /// Delete rows by primary key (absent keys are ignored).
    Delete(Vec<Key>),
    /// Delete every row.
    Truncate,
    /// Index a vector column for `metric` with these HNSW parameters (`CREATE INDEX`).
    /// Segments sealed from then on use them; `Shard::reindex` rebuilds the older ones.
    SetIndex {
        column: String,
        metric: Metric,
        hnsw: HnswParams,
    },
    /// A transaction on this shard alone: checked and applied all together, or refused.
    Atomic(TxnWrite),
    /// A transaction's part on this shard, checked and kept (its keys locked against other
    /// writes) until `Resolve` says whether it commits.
    Prepare {
        txn: TxnId,
        coordinator: Coordinator,
        /// This shard is the coordinator: its resolution is the decision, kept until
        /// `Forget`.
        decides: bool,
        write: TxnWrite,
    },
    /// The outcome of a prepared transaction. On its coordinator's shard the first
    /// resolution wins (a later one answers with it); aborting an unknown transaction records
    /// the abort, so it cannot be prepared there afterwards.
    Resolve { txn: TxnId, commit: bool },
    /// The coordinator's decision is no longer needed: every part was resolved.
    Forget { txn: TxnId },
}

const TAG_UPSERT: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_TRUNCATE: u8 = 3;
const TAG_INSERT: u8 = 4;
const TAG_SET_INDEX: u8 = 5;
const TAG_INSERT_MISSING: u8 = 6;
const TAG_ATOMIC: u8 = 7;
const TAG_PREPARE: u8 = 8;
const TAG_RESOLVE: u8 = 9;
const TAG_FORGET: u8 = 10;

#[derive(serde::Serialize, serde::Deserialize)]
struct SetIndexBody {
    column: String,
    metric: Metric,
    hnsw: HnswParams,
}

impl Command {
    pub fn encode(&self) -> Result<Vec<u8>> {
        match self {
            Command::Upsert(batch) => with_tag(TAG_UPSERT, batch),
            Command::Insert(batch) => with_tag(TAG_INSERT, batch),
            Command::InsertMissing(batch) => with_tag(TAG_INSERT_MISSING, batch),
            Command::Delete(keys) => {
                let array = keys_to_array(keys)?;
                let schema = Schema::new(vec![Field::new("key", array.data_type().clone(), false)]);
                let batch = RecordBatch::try_new(schema.into(), vec![array])?;
                with_tag(TAG_DELETE, &batch)
            }
            Command::Truncate => Ok(vec![TAG_TRUNCATE]),
            Command::SetIndex {
                column,
                metric,
                hnsw,
            } => {
                let body = SetIndexBody {
                    column: column.clone(),
                    metric: *metric,
                    hnsw: *hnsw,
                };
                let mut out = vec![TAG_SET_INDEX];
                serde_json::to_writer(&mut out, &body)
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
                Ok(out)
            }
            Command::Atomic(write) => {
                let mut out = vec![TAG_ATOMIC];
                write.encode_into(&mut out)?;
                Ok(out)
            }
            Command::Prepare {
                txn,
                coordinator,
                decides,
                write,
            } => {
                let mut out = vec![TAG_PREPARE];
                encode_txn_id(*txn, &mut out);
                out.push(u8::from(*decides));
                coordinator.encode_into(&mut out);
                write.encode_into(&mut out)?;
                Ok(out)
            }
            Command::Resolve { txn, commit } => {
                let mut out = vec![TAG_RESOLVE];
                encode_txn_id(*txn, &mut out);
                out.push(u8::from(*commit));
                Ok(out)
            }
            Command::Forget { txn } => {
                let mut out = vec![TAG_FORGET];
                encode_txn_id(*txn, &mut out);
                Ok(out)
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Command> {
        let bad = |d: &str| Error::InvalidArgument(format!("malformed command: {d}"));
        let (&tag, body) = bytes.split_first().ok_or_else(|| bad("empty"))?;
        match tag {
            TAG_UPSERT => Ok(Command::Upsert(read_one(body)?)),
            TAG_INSERT => Ok(Command::Insert(read_one(body)?)),
            TAG_INSERT_MISSING => Ok(Command::InsertMissing(read_one(body)?)),
            TAG_DELETE => {
                let batch = read_one(body)?;
                if batch.num_columns() != 1 {
                    return Err(bad("delete carries one key column"));
                }
                Ok(Command::Delete(keys_of(batch.column(0))?))
            }
            TAG_TRUNCATE if body.is_empty() => Ok(Command::Truncate),
            TAG_SET_INDEX => {
                let b: SetIndexBody =
                    serde_json::from_slice(body).map_err(|e| bad(&e.to_string()))?;
                Ok(Command::SetIndex {
                    column: b.column,
                    metric: b.metric,
                    hnsw: b.hnsw,
                })
            }
            TAG_ATOMIC => match TxnWrite::decode(body)? {
                (write, []) => Ok(Command::Atomic(write)),
                _ => Err(bad("bytes after the transaction")),
            },
            TAG_PREPARE => {
                let (txn, rest) = decode_txn_id(body)?;
                let (&decides, rest) = rest.split_first().ok_or_else(|| bad("no role"))?;
                if decides > 1 {
                    return Err(bad("a role is 0 or 1"));
                }
                let (coordinator, rest) = Coordinator::decode(rest)?;
                match TxnWrite::decode(rest)? {
                    (write, []) => Ok(Command::Prepare {
                        txn,
                        coordinator,
                        decides: decides == 1,
                        write,
                    }),
                    _ => Err(bad("bytes after the transaction")),
                }
            }
            TAG_RESOLVE => match decode_txn_id(body)? {
                (txn, [commit @ (0 | 1)]) => Ok(Command::Resolve {
                    txn,
                    commit: *commit == 1,
                }),
                _ => Err(bad("a resolution is an id and 0 or 1")),
            },
            TAG_FORGET => match decode_txn_id(body)? {
                (txn, []) => Ok(Command::Forget { txn }),
                _ => Err(bad("bytes after the transaction id")),
            },
            _ => Err(bad("unknown tag")),
        }
    }
}

fn with_tag(tag: u8, batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut out = vec![tag];
    write_stream(&mut out, batch)?;
    Ok(out)
}

/// Appends `batch` to `out` as an Arrow IPC stream.
pub(crate) fn write_stream(out: &mut Vec<u8>, batch: &RecordBatch) -> Result<()> {
    let mut writer = StreamWriter::try_new(out, &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    Ok(())
}

/// Refuses an Arrow IPC stream whose messages claim more bytes than it holds. Arrow's reader
/// allocates a message's body from the length the message states, before reading it, and an
/// allocation that fails aborts the process (a 35 TB one was found by
/// `fuzz_flight_tickets_and_actions`): every length is checked against what is there first.
fn check_ipc_lengths(stream: &[u8]) -> Result<()> {
    let bad = || Error::InvalidArgument("malformed command: Arrow lengths past its end".into());
    let word = |at: &[u8]| i32::from_le_bytes([at[0], at[1], at[2], at[3]]);
    let mut rest = stream;
    loop {
        if rest.len() < 4 {
            return Ok(()); // Arrow reports what is missing
        }
        let mut size = word(rest);
        rest = &rest[4..];
        if size == -1 {
            // The continuation marker, then the size.
            if rest.len() < 4 {
                return Ok(());
            }
            size = word(rest);
            rest = &rest[4..];
        }
        if size == 0 {
            return Ok(()); // end of stream
        }
        let size = usize::try_from(size).map_err(|_| bad())?;
        let metadata = rest.get(..size).ok_or_else(bad)?;
        let message = arrow::ipc::root_as_message(metadata).map_err(|_| bad())?;
        rest = &rest[size..];
        let body = usize::try_from(message.bodyLength()).map_err(|_| bad())?;
        rest = rest.get(body..).ok_or_else(bad)?;
    }
}

/// The one batch in an Arrow IPC stream. Arrow's reader panics on some malformed streams
/// (the fuzz test `fuzz_flight_tickets_and_actions` found one): a command comes from a peer
/// or a log, so a panic is caught here and answered as a malformed command.
pub(crate) fn read_one(body: &[u8]) -> Result<RecordBatch> {
    check_ipc_lengths(body)?;
    let read = || -> Result<RecordBatch> {
        let reader = StreamReader::try_new(Cursor::new(body), None)?;
        let schema = reader.schema();
        let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(arrow::compute::concat_batches(&schema, &batches)?)
    };
    std::panic::catch_unwind(read).unwrap_or_else(|_| {
        Err(Error::InvalidArgument(
            "malformed command: undecodable Arrow data".into(),
        ))
    })
}

#[cfg(test)]
mod ipc_tests {
    use super::*;

    /// A message whose stated body is far larger than the stream is refused before Arrow
    /// would allocate it; real commands still decode.
    #[test]
    fn lengths_past_the_end_are_refused_before_arrow_allocates() {
        let keys = vec![crate::key::Key::Int(1), crate::key::Key::Int(2)];
        let bytes = Command::Delete(keys.clone()).encode().unwrap();
        assert!(matches!(Command::decode(&bytes).unwrap(), Command::Delete(k) if k == keys));
        // The fuzzer's input: a metadata size of 248 bytes, then a body claimed to be 35 TB.
        let mut forged = bytes.clone();
        forged.truncate(forged.len() / 2);
        assert!(Command::decode(&forged).is_err());
        crate::fuzz::run("commands", &[&bytes], |input| {
            let _ = Command::decode(input);
        });
    }
}
