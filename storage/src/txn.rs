//! A transaction's writes as one shard receives them, and their bytes in a log entry.
//!
//! A transaction touches each shard once, with its net effect there: whether it emptied the
//! shard first, the rows it leaves (upserted), the keys it removed, and which of its rows must
//! be new keys (rows its INSERTs created: if another transaction committed one of those keys
//! meanwhile, the later committer fails, 40001). A shard takes that write either at once
//! (`Command::Atomic`, a transaction on one shard) or in two steps (`Command::Prepare`, then
//! `Command::Resolve`), the commit protocol of a transaction on several shards
//! (`vecraft_cluster::txn`).
//!
//! Layout of a write: `flags:u8` (1: truncate, 2: upserts follow), then, if upserts,
//! `len:u64` and an Arrow IPC stream, then four key lists (deletes, new keys, keys written
//! only if missing, keys read; the last followed by a `u64` version per key), each
//! `count:u32` and per key `0:u8 i64` or `1:u8 len:u32 utf8`.

use arrow::array::RecordBatch;

use crate::command::{read_one, write_stream};
use crate::error::{Error, Result};
use crate::key::Key;

/// A transaction's id: random, the same on every shard it touches.
pub type TxnId = u128;

/// A transaction's writes on one shard.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TxnWrite {
    /// Every row of the shard goes first.
    pub truncate: bool,
    /// The rows the transaction leaves, one per key.
    pub upserts: Option<RecordBatch>,
    /// Keys whose rows the transaction removed (and did not write again).
    pub deletes: Vec<Key>,
    /// Keys among `upserts` that the transaction created: they must still be free.
    pub new_keys: Vec<Key>,
    /// Keys among `upserts` written by `INSERT … ON CONFLICT DO NOTHING`: their rows go in
    /// only if the key is still free when the write is applied.
    pub if_missing: Vec<Key>,
    /// The rows the transaction updated or deleted, with the version each had when it
    /// read it (`shard::VERSION_COLUMN`): if another write changed one since, the commit
    /// fails (40001, the first committer wins).
    pub read_versions: Vec<(Key, u64)>,
}

/// Where a transaction's outcome is decided: the shard `shard` of collection `collection`
/// (its SQL key), the first shard the transaction prepared on. Its resolution is the
/// decision; every other shard follows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Coordinator {
    pub collection: String,
    pub shard: u32,
}

const TRUNCATE: u8 = 1;
const UPSERTS: u8 = 2;
const KEY_INT: u8 = 0;
const KEY_TEXT: u8 = 1;

impl TxnWrite {
    pub fn is_empty(&self) -> bool {
        !self.truncate && self.upserts.is_none() && self.deletes.is_empty()
    }

    /// Rows written plus keys deleted (a transaction's size).
    pub fn rows(&self) -> usize {
        self.upserts.as_ref().map_or(0, RecordBatch::num_rows) + self.deletes.len()
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        let flags = (self.truncate as u8 * TRUNCATE) | (self.upserts.is_some() as u8 * UPSERTS);
        out.push(flags);
        if let Some(batch) = &self.upserts {
            let at = out.len();
            out.extend_from_slice(&[0; 8]);
            write_stream(out, batch)?;
            let len = (out.len() - at - 8) as u64;
            out[at..at + 8].copy_from_slice(&len.to_le_bytes());
        }
        encode_keys(&self.deletes, out)?;
        encode_keys(&self.new_keys, out)?;
        encode_keys(&self.if_missing, out)?;
        let (keys, versions): (Vec<Key>, Vec<u64>) = self.read_versions.iter().cloned().unzip();
        encode_keys(&keys, out)?;
        for version in versions {
            out.extend_from_slice(&version.to_le_bytes());
        }
        Ok(())
    }

    /// The write at the start of `bytes`, and the bytes after it.
    pub fn decode(bytes: &[u8]) -> Result<(TxnWrite, &[u8])> {
        let mut at = Reader(bytes);
        let flags = at.u8()?;
        if flags & !(TRUNCATE | UPSERTS) != 0 {
            return Err(bad("unknown transaction flags"));
        }
        let upserts = match flags & UPSERTS {
            0 => None,
            _ => {
                let len = at.u64()?;
                Some(read_one(at.take(len)?)?)
            }
        };
        let deletes = at.keys()?;
        let new_keys = at.keys()?;
        let if_missing = at.keys()?;
        let read = at.keys()?;
        let versions = (0..read.len())
            .map(|_| at.u64())
            .collect::<Result<Vec<u64>>>()?;
        let read_versions = read.into_iter().zip(versions).collect();
        let write = TxnWrite {
            truncate: flags & TRUNCATE != 0,
            upserts,
            deletes,
            new_keys,
            if_missing,
            read_versions,
        };
        Ok((write, at.0))
    }
}

impl Coordinator {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.shard.to_le_bytes());
        out.extend_from_slice(&(self.collection.len() as u32).to_le_bytes());
        out.extend_from_slice(self.collection.as_bytes());
    }

    pub fn decode(bytes: &[u8]) -> Result<(Coordinator, &[u8])> {
        let mut at = Reader(bytes);
        let shard = at.u32()?;
        let len = at.u32()?;
        let collection = at.text(len)?;
        Ok((Coordinator { collection, shard }, at.0))
    }
}

pub fn encode_txn_id(txn: TxnId, out: &mut Vec<u8>) {
    out.extend_from_slice(&txn.to_le_bytes());
}

pub fn decode_txn_id(bytes: &[u8]) -> Result<(TxnId, &[u8])> {
    let mut at = Reader(bytes);
    let id = at.take(16)?;
    let id = TxnId::from_le_bytes(id.try_into().expect("16 bytes"));
    Ok((id, at.0))
}

fn encode_keys(keys: &[Key], out: &mut Vec<u8>) -> Result<()> {
    let count = u32::try_from(keys.len()).map_err(|_| bad("too many keys"))?;
    out.extend_from_slice(&count.to_le_bytes());
    for key in keys {
        match key {
            Key::Int(v) => {
                out.push(KEY_INT);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Key::Text(t) => {
                out.push(KEY_TEXT);
                let len = u32::try_from(t.len()).map_err(|_| bad("key too long"))?;
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(t.as_bytes());
            }
        }
    }
    Ok(())
}

fn bad(detail: &str) -> Error {
    Error::InvalidArgument(format!("malformed transaction: {detail}"))
}

/// Reads a write's fields, refusing any length past the end of the bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: u64) -> Result<&'a [u8]> {
        let len = usize::try_from(len).map_err(|_| bad("length"))?;
        if len > self.0.len() {
            return Err(bad("length past the end"));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    fn text(&mut self, len: u32) -> Result<String> {
        let bytes = self.take(u64::from(len))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| bad("key is not UTF-8"))
    }

    fn keys(&mut self) -> Result<Vec<Key>> {
        let count = self.u32()?;
        // Each key takes at least 5 bytes: a count past that is a lie, not an allocation.
        if count as usize > self.0.len() / 5 {
            return Err(bad("key count past the end"));
        }
        (0..count)
            .map(|_| match self.u8()? {
                KEY_INT => Ok(Key::Int(i64::from_le_bytes(
                    self.take(8)?.try_into().expect("8"),
                ))),
                KEY_TEXT => {
                    let len = self.u32()?;
                    Ok(Key::Text(self.text(len)?))
                }
                _ => Err(bad("unknown key kind")),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn writes_round_trip_and_malformed_bytes_are_refused() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let rows = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))]);
        let write = TxnWrite {
            truncate: true,
            upserts: Some(rows.unwrap()),
            deletes: vec![Key::Int(7), Key::Text("é".into())],
            new_keys: vec![Key::Int(2)],
            if_missing: vec![Key::Int(1)],
            read_versions: vec![(Key::Int(7), 42)],
        };
        let mut bytes = Vec::new();
        write.encode_into(&mut bytes).unwrap();
        bytes.push(42);
        let (back, rest) = TxnWrite::decode(&bytes).unwrap();
        assert_eq!((back, rest), (write, &[42u8][..]));
        for cut in 0..bytes.len() - 1 {
            assert!(TxnWrite::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        crate::fuzz::run("txn writes", &[&bytes], |input| {
            let _ = TxnWrite::decode(input);
        });
    }
}
