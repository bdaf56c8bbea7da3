//! Transaction blocks as PostgreSQL's clients rely on them. BEGIN opens the session's
//! transaction: its writes are staged (`vecraft_planner::transaction`), seen by the session's
//! own reads and by no one else's, applied at COMMIT, dropped at ROLLBACK; savepoints take
//! back what followed them. After an error inside a block every statement but the one that
//! ends it answers 25P02 (a `COMMIT` then rolls back, as PostgreSQL's does), and the isolation
//! levels Vecraft does not give are refused rather than pretended.

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Statement, TransactionIsolationLevel, TransactionMode};
use pgwire::error::PgWireResult;

use crate::errors::{to_pg, user_error};
use crate::session::Session;

impl Session {
    /// BEGIN: a transaction opens (inside one, nothing changes, as in PostgreSQL).
    pub(crate) fn begin_transaction(&self) {
        self.txn.begin();
        self.begin_block();
    }

    /// COMMIT: the transaction's writes are applied, in the order they were made.
    pub(crate) async fn commit_transaction(&self) -> PgWireResult<()> {
        let staged = self.txn.take();
        let ended = self.end_block().await;
        if let Some(txn) = staged {
            let catalog = &self.catalog;
            txn.commit(|name| catalog.get(name))
                .map_err(|e| to_pg(&e))?;
        }
        ended
    }

    /// Whether `statement` is a `ROLLBACK TO` a savepoint of the open block (which makes a
    /// block an error aborted usable again).
    pub(crate) fn resumes_block(&self, statement: &DFStatement) -> bool {
        let DFStatement::Statement(s) = statement else {
            return false;
        };
        match s.as_ref() {
            Statement::Rollback {
                savepoint: Some(name),
                ..
            } => self.txn.has_savepoint(&crate::idents::ident(name)),
            _ => false,
        }
    }

    /// ROLLBACK: the transaction's writes are dropped.
    pub(crate) async fn rollback_transaction(&self) -> PgWireResult<()> {
        drop(self.txn.take());
        self.end_block().await
    }
}

/// What a statement does in a block that an error has aborted.
pub enum InFailedBlock {
    /// It ends the block (ROLLBACK, ABORT): it runs.
    Runs,
    /// `COMMIT` (or `END`) of a failed block: the block is rolled back, and the client told so.
    RollsBack,
}

/// How `statement` runs in a failed block; PostgreSQL's 25P02 for any other statement.
pub fn in_failed_block(statement: &DFStatement) -> PgWireResult<InFailedBlock> {
    match statement {
        DFStatement::Statement(s) => match s.as_ref() {
            // To a savepoint the block does not hold (one it holds was let through before,
            // `Connection::resume_block`): it fails with 3B001 and the block stays failed.
            Statement::Rollback { .. } => Ok(InFailedBlock::Runs),
            Statement::Commit { .. } => Ok(InFailedBlock::RollsBack),
            _ => Err(aborted()),
        },
        _ => Err(aborted()),
    }
}

fn aborted() -> pgwire::error::PgWireError {
    user_error(
        "25P02",
        "current transaction is aborted, commands ignored until end of transaction block",
    )
}

/// `BEGIN ISOLATION LEVEL …`, `SET TRANSACTION …`: read committed (PostgreSQL's default, and
/// read uncommitted, which PostgreSQL runs as read committed) is what each statement sees
/// here; the stronger levels are refused with 0A000.
pub fn check_modes(modes: &[TransactionMode]) -> PgWireResult<()> {
    for mode in modes {
        if let TransactionMode::IsolationLevel(level) = mode {
            check_level(level)?;
        }
    }
    Ok(())
}

fn check_level(level: &TransactionIsolationLevel) -> PgWireResult<()> {
    match level {
        TransactionIsolationLevel::ReadCommitted | TransactionIsolationLevel::ReadUncommitted => {
            Ok(())
        }
        other => Err(refused(&other.to_string().to_lowercase())),
    }
}

/// `SET transaction_isolation = 'serializable'` (or `default_transaction_isolation`): the
/// same levels by name.
pub fn check_level_name(value: &str) -> PgWireResult<()> {
    match value.trim().to_lowercase().as_str() {
        "read committed" | "read uncommitted" | "default" => Ok(()),
        level @ ("repeatable read" | "serializable") => Err(refused(level)),
        other => Err(user_error(
            "22023",
            format!("invalid value for parameter \"transaction_isolation\": \"{other}\""),
        )),
    }
}

fn refused(level: &str) -> pgwire::error::PgWireError {
    user_error(
        "0A000",
        format!(
            "transaction isolation level \"{level}\" is not supported: Vecraft runs each \
             statement at read committed"
        ),
    )
}
