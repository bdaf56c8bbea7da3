//! `SET LOCAL name = value`: a setting for the rest of the transaction block, as vecs sets
//! `hnsw.ef_search` around one query. Inside BEGIN … COMMIT/ROLLBACK it applies as SET does
//! and the value it replaced comes back when the block ends; outside a block it has no
//! effect, as in PostgreSQL (which also warns).

use std::sync::atomic::Ordering;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{ContextModifier, Set, Statement};
use pgwire::error::PgWireResult;

use crate::errors::to_pg;
use crate::session::Session;
use crate::settings::{SetAction, prepare_set, show_value};

/// Whether `statement` is `SET LOCAL …`.
pub fn is_set_local(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::Set(Set::SingleAssignment {
            scope: Some(ContextModifier::Local),
            ..
        })
    )
}

impl Session {
    /// Applies `SET LOCAL` (see the module comment).
    pub(crate) async fn set_local(&self, statement: &Statement) -> PgWireResult<()> {
        let mut statement = statement.clone();
        let Statement::Set(Set::SingleAssignment {
            scope, variable, ..
        }) = &mut statement
        else {
            return Ok(());
        };
        *scope = None;
        let name = variable.to_string().to_lowercase();
        if name == "search_path" {
            // The path is the session's (`search_path.rs`); one block's own is not kept.
            let message = "SET LOCAL search_path is not supported; use SET search_path";
            return Err(crate::errors::user_error("0A000", message));
        }
        let apply = matches!(prepare_set(&mut statement)?, SetAction::Apply);
        if !apply || !self.in_transaction.load(Ordering::Acquire) {
            return Ok(());
        }
        let previous = show_value(&self.ctx, &name)?;
        self.plan_and_run(statement).await?;
        self.settings_changed();
        self.local_undo.lock().push((name, previous));
        Ok(())
    }

    /// BEGIN: later `SET LOCAL`s last until the block ends.
    pub(crate) fn begin_block(&self) {
        self.in_transaction.store(true, Ordering::Release);
    }

    /// COMMIT or ROLLBACK: the values `SET LOCAL` replaced come back, last first.
    pub(crate) async fn end_block(&self) -> PgWireResult<()> {
        self.in_transaction.store(false, Ordering::Release);
        let undo = std::mem::take(&mut *self.local_undo.lock());
        for (name, value) in undo.into_iter().rev() {
            let quoted = value.replace('\'', "''");
            let mut statements =
                vecraft_planner::parse::parse_sql(&format!("SET {name} = '{quoted}'"))
                    .map_err(crate::errors::parse_error)?;
            if let Some(DFStatement::Statement(s)) = statements.pop() {
                self.plan_and_run(*s).await?;
                self.settings_changed();
            }
        }
        Ok(())
    }

    async fn plan_and_run(&self, statement: Statement) -> PgWireResult<()> {
        let frame =
            vecraft_planner::statement(&self.ctx, DFStatement::Statement(Box::new(statement)))
                .await
                .map_err(|e| to_pg(&e))?;
        frame.collect().await.map_err(|e| to_pg(&e))?;
        Ok(())
    }
}
