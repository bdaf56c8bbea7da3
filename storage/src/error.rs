//! Every way the storage engine can fail, in one place.
//!
//! The gateway maps these to SQLSTATE codes (`sql/`); here each variant only says what went
//! wrong and carries enough context to find it. Nothing a caller passes may panic the engine:
//! bad input comes back as `InvalidArgument`, `DimensionMismatch` or `InvalidVector`.

use std::path::PathBuf;

/// The storage engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O error, with what we were doing and on which path.
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Bytes on disk that fail their checksum or do not parse, somewhere other than a log's
    /// torn tail (which is cut back and reported, not an error).
    #[error("corrupt data in {path}: {detail}")]
    Corrupt { path: PathBuf, detail: String },

    /// A caller passed something the engine cannot accept (bad option, bad schema, bad index).
    #[error("{0}")]
    InvalidArgument(String),

    /// A vector whose length is not the column's dimension.
    #[error("expected {expected} dimensions, not {actual}")]
    DimensionMismatch { expected: usize, actual: usize },

    /// A vector holding NaN or an infinity.
    #[error("{0}")]
    InvalidVector(String),

    /// An insert of a primary key that exists (or repeats within the insert).
    #[error("duplicate key value violates unique constraint: key ({0}) already exists")]
    DuplicateKey(String),

    /// A write that meets a transaction being committed, or a transaction that finds one of
    /// the keys it created taken since (first committer wins); the detail says which key.
    #[error("could not serialize access due to concurrent update")]
    Conflict(String),

    /// A COMMIT whose outcome the gateway could not learn (the deciding shard did not answer):
    /// the transaction may or may not have committed, and is resolved by the shards.
    #[error("the outcome of the transaction is unknown: {0}")]
    OutcomeUnknown(String),

    /// A column named in a request that the collection does not have.
    #[error("column \"{0}\" does not exist")]
    UnknownColumn(String),

    /// Arrow refused a batch (wrong types, encoding failure).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    /// A statement spread over several shards failed on one after `shards` others had
    /// applied their part (`rows` rows written or deleted), which stays applied.
    #[error(
        "{source} (the statement's parts on {shards} other shard(s), {rows} row(s), were applied \
         before this failure and stay)"
    )]
    Partial {
        shards: usize,
        rows: u64,
        source: Box<Error>,
    },

    /// The shard's Raft group cannot take the request now (no leader, shutting down).
    #[error("shard unavailable: {0}")]
    Unavailable(String),

    /// The engine was closed or a background worker is gone.
    #[error("storage engine is shut down")]
    Closed,

    /// The collection was dropped while the request was on its way.
    #[error("the collection was dropped")]
    Dropped,
}

/// Why a command was refused when applied, in a form that crosses a Raft log response (and,
/// later, the network): every replica refuses a bad command the same way, so the refusal is
/// part of the replicated outcome, unlike an I/O failure, which stops the replica.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Refusal {
    InvalidArgument(String),
    DimensionMismatch { expected: usize, actual: usize },
    InvalidVector(String),
    DuplicateKey(String),
    UnknownColumn(String),
    Arrow(String),
    Conflict(String),
}

impl Refusal {
    /// The refusal `error` stands for; `None` when it is a failure of the replica itself.
    pub fn of(error: &Error) -> Option<Refusal> {
        Some(match error {
            Error::InvalidArgument(m) => Refusal::InvalidArgument(m.clone()),
            Error::DimensionMismatch { expected, actual } => Refusal::DimensionMismatch {
                expected: *expected,
                actual: *actual,
            },
            Error::InvalidVector(m) => Refusal::InvalidVector(m.clone()),
            Error::DuplicateKey(m) => Refusal::DuplicateKey(m.clone()),
            Error::Conflict(m) => Refusal::Conflict(m.clone()),
            Error::UnknownColumn(m) => Refusal::UnknownColumn(m.clone()),
            Error::Arrow(e) => Refusal::Arrow(e.to_string()),
            Error::Io { .. }
            | Error::Corrupt { .. }
            | Error::Closed
            | Error::Dropped
            | Error::Unavailable(_)
            | Error::OutcomeUnknown(_)
            | Error::Partial { .. } => {
                return None;
            }
        })
    }
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Error {
        match refusal {
            Refusal::InvalidArgument(m) => Error::InvalidArgument(m),
            Refusal::DimensionMismatch { expected, actual } => {
                Error::DimensionMismatch { expected, actual }
            }
            Refusal::InvalidVector(m) => Error::InvalidVector(m),
            Refusal::DuplicateKey(m) => Error::DuplicateKey(m),
            Refusal::Conflict(m) => Error::Conflict(m),
            Refusal::UnknownColumn(m) => Error::UnknownColumn(m),
            Refusal::Arrow(m) => Error::Arrow(arrow::error::ArrowError::InvalidArgumentError(m)),
        }
    }
}

impl Error {
    /// Wraps an `io::Error` with the operation and path it came from.
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            context,
            path: path.into(),
            source,
        }
    }

    pub fn corrupt(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            detail: detail.into(),
        }
    }
}

/// Adds path context to `io::Result`s: `file.sync_all().ctx("fsync", &path)?`.
pub trait IoContext<T> {
    fn ctx(self, context: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(context, path, e))
    }
}
