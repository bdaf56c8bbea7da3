//! How a Raft entry is stored as one record of the shard's log.
//!
//! ```text
//! kind:u8  term:u64  leader:u64  body
//! ```
//! `kind` is 0x81 (blank), 0x82 (a command: the body is `Command::encode`'s bytes, copied
//! once each way) or 0x83 (membership, as JSON). The index is the log
//! record's own. Kinds start at 0x81 so a log written before the Raft group existed (records
//! that were bare commands, tags 1 to 5) is recognised and refused by name.

use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

use super::{NodeId, Request, TypeConfig};

const BLANK: u8 = 0x81;
const NORMAL: u8 = 0x82;
const MEMBERSHIP: u8 = 0x83;
pub const HEADER_BYTES: usize = 1 + 8 + 8;

pub fn encode(entry: &Entry<TypeConfig>) -> Vec<u8> {
    let (kind, body) = match &entry.payload {
        EntryPayload::Blank => (BLANK, Vec::new()),
        EntryPayload::Normal(Request(bytes)) => (NORMAL, bytes.clone()),
        EntryPayload::Membership(m) => (
            MEMBERSHIP,
            serde_json::to_vec(m).expect("a membership always serialises"),
        ),
    };
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.push(kind);
    out.extend_from_slice(&entry.log_id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&entry.log_id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// The entry stored at `index`.
pub fn decode(index: u64, mut bytes: Vec<u8>) -> Result<Entry<TypeConfig>, String> {
    let log_id = log_id(index, &bytes)?;
    let body = bytes.split_off(HEADER_BYTES);
    let payload = match bytes[0] {
        BLANK => EntryPayload::Blank,
        NORMAL => EntryPayload::Normal(Request(body)),
        MEMBERSHIP => EntryPayload::Membership(
            serde_json::from_slice(&body)
                .map_err(|e| format!("membership entry {index} does not parse: {e}"))?,
        ),
        _ => unreachable!("log_id checked the kind"),
    };
    Ok(Entry { log_id, payload })
}

/// The id of the entry stored at `index`, from its header alone.
pub fn log_id(index: u64, bytes: &[u8]) -> Result<LogId<NodeId>, String> {
    if !matches!(bytes.first(), Some(&(BLANK | NORMAL | MEMBERSHIP))) {
        return Err(format!(
            "log entry {index} is not a Raft entry (kind {:#x}): the log was written by an \
             older Vecraft, before shards had Raft groups; load the data again",
            bytes.first().copied().unwrap_or_default()
        ));
    }
    if bytes.len() < HEADER_BYTES {
        return Err(format!(
            "log entry {index} is {} bytes, shorter than its header",
            bytes.len()
        ));
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    Ok(LogId::new(CommittedLeaderId::new(word(1), word(9)), index))
}
