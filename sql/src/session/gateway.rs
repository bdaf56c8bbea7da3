//! The statements the gateway answers itself, not DataFusion: DDL, `SET LOCAL`, `SHOW`,
//! `RESET`, transaction control, COPY, SQL-level PREPARE/EXECUTE, `CHECKPOINT`/`VACUUM`.
//! [`is_gateway_statement`] says which; [`Session::run_gateway`] answers them.

use super::*;

impl Session {
    /// Statements the gateway answers itself: DDL, transactions, COPY.
    pub async fn run_gateway(
        &self,
        statement: &Statement,
        format: &Format,
    ) -> PgWireResult<Response> {
        Ok(match statement {
            Statement::CreateTable(create) => {
                let name = crate::idents::table_name(&create.name)?;
                if let (Some(schema), _) = split_qualified(&name)
                    && !self.catalog.has_schema(schema)
                {
                    let message = format!("schema \"{schema}\" does not exist");
                    return Err(user_error("3F000", message));
                }
                if !Catalog::valid_name(&name) {
                    let message = format!("invalid name \"{name}\"");
                    return Err(user_error("42602", message));
                }
                let options = collection_options(&create.table_options);
                let default_replicas = self.catalog.default_replicas();
                let ((mut schema, shards, replicas), tag) = match &options {
                    Some(options) => (
                        collections::collection_schema(create, options, default_replicas)?,
                        "CREATE COLLECTION",
                    ),
                    None => ((schema_of(create)?, 1, default_replicas), "CREATE TABLE"),
                };
                crate::sequences::name_uniquely(&self.catalog, &name, &mut schema);
                if !(create.if_not_exists && self.catalog.get(&name).is_some()) {
                    schema.foreign_keys =
                        crate::foreign_keys::declared(create, &name, &schema, &self.catalog)?;
                }
                crate::ddl::column_defaults(&self.ctx, &name, &schema).map_err(|e| to_pg(&e))?;
                let (catalog, key) = (Arc::clone(&self.catalog), name.clone());
                let created = tokio::task::spawn_blocking(move || {
                    catalog.create(&key, schema, shards, replicas)
                })
                .await
                .map_err(|e| user_error("XX000", format!("create stopped: {e}")))?
                .map_err(|e| to_pg(&e))?;
                if created {
                    self.record_owner(&name).await?;
                }
                if !created && !create.if_not_exists {
                    let kind = if options.is_some() {
                        "collection"
                    } else {
                        "relation"
                    };
                    return Err(user_error(
                        "42P07",
                        format!("{kind} \"{}\" already exists", shown(&name)),
                    ));
                }
                Response::Execution(Tag::new(tag))
            }
            Statement::Drop {
                object_type: ObjectType::Table,
                if_exists,
                names,
                cascade,
                purge: collection, // how the parser marks DROP COLLECTION
                ..
            } => {
                let kind = if *collection { "collection" } else { "table" };
                let names = names
                    .iter()
                    .map(crate::idents::table_name)
                    .collect::<PgWireResult<Vec<_>>>()?;
                for name in &names {
                    crate::foreign_keys::check_drop(&self.catalog, name, &names, *cascade)?;
                }
                for name in names {
                    // Closing waits for statements in flight and stops the shards' groups:
                    // blocking work, off the async workers.
                    let (catalog, key) = (Arc::clone(&self.catalog), name.clone());
                    let dropped =
                        tokio::task::spawn_blocking(move || catalog.drop_collection(&key))
                            .await
                            .map_err(|e| user_error("XX000", format!("drop stopped: {e}")))?
                            .map_err(|e| to_pg(&e))?;
                    if !dropped && !if_exists {
                        return Err(user_error(
                            "42P01",
                            format!("{kind} \"{}\" does not exist", shown(&name)),
                        ));
                    }
                }
                Response::Execution(Tag::new(if *collection {
                    "DROP COLLECTION"
                } else {
                    "DROP TABLE"
                }))
            }
            Statement::CreateExtension(_) => Response::Execution(Tag::new("CREATE EXTENSION")),
            Statement::CreateSchema {
                schema_name,
                if_not_exists,
                ..
            } => self.create_schema(schema_name, *if_not_exists)?,
            Statement::Drop {
                object_type: ObjectType::Schema,
                if_exists,
                names,
                cascade,
                ..
            } => self.drop_schemas(names, *if_exists, *cascade).await?,
            Statement::CreateIndex(create) => self.create_index(create).await?,
            Statement::CreateRole(create) => self.create_role(create).await?,
            Statement::Grant(_) | Statement::Revoke(_) => self.grant_or_revoke(statement).await?,
            Statement::AlterRole { name, operation } => self.alter_role(name, operation).await?,
            Statement::Drop {
                object_type: ObjectType::Role,
                if_exists,
                names,
                ..
            } => self.drop_roles(names, *if_exists).await?,
            // Transactions (`transactions.rs`): writes staged until COMMIT.
            Statement::StartTransaction { modes, .. } => {
                crate::transactions::check_modes(modes)?;
                self.begin_transaction();
                Response::TransactionStart(Tag::new("BEGIN"))
            }
            Statement::Commit { .. } => {
                self.commit_transaction().await?;
                Response::TransactionEnd(Tag::new("COMMIT"))
            }
            Statement::Rollback {
                savepoint: Some(name),
                ..
            } => {
                let name = crate::idents::ident(name);
                self.txn.rollback_to(&name).map_err(|e| to_pg(&e))?;
                Response::Execution(Tag::new("ROLLBACK"))
            }
            Statement::Rollback { .. } => {
                self.rollback_transaction().await?;
                Response::TransactionEnd(Tag::new("ROLLBACK"))
            }
            Statement::Savepoint { name } => {
                let name = crate::idents::ident(name);
                self.txn.savepoint(&name).map_err(|e| to_pg(&e))?;
                Response::Execution(Tag::new("SAVEPOINT"))
            }
            Statement::ReleaseSavepoint { name } => {
                let name = crate::idents::ident(name);
                self.txn.release(&name).map_err(|e| to_pg(&e))?;
                Response::Execution(Tag::new("RELEASE"))
            }
            Statement::Truncate(truncate) => {
                self.sync_tables()?;
                let names = truncate
                    .table_names
                    .iter()
                    .map(|target| crate::idents::table_name(&target.name))
                    .collect::<PgWireResult<Vec<_>>>()?;
                let cascade = matches!(
                    truncate.cascade,
                    Some(datafusion::sql::sqlparser::ast::CascadeOption::Cascade)
                );
                for name in crate::foreign_keys::truncated(&self.catalog, names, cascade)? {
                    let c = self.in_transaction_source(&name, self.collection(&name)?);
                    c.write(&vecraft_storage::command::Command::Truncate)
                        .map_err(|e| to_pg(&e))?;
                }
                Response::Execution(Tag::new("TRUNCATE TABLE"))
            }
            Statement::Copy { .. } => self.start_copy(statement)?,
            Statement::Call(_) if let Some(backup) = vecraft_planner::backup_sql::of(statement) => {
                Box::pin(self.run_backup_statement(backup, format)).await?
            }
            Statement::Call(_) if let Some(change) = crate::meta_members::of(statement) => {
                self.change_meta_members(change?).await?
            }
            Statement::Call(call) => return Err(unknown_procedure(call)),
            Statement::Vacuum(vacuum) => self.checkpoint(vacuum.table_name.as_ref()).await?,
            // Protocol-level statements are dropped by the connection (see `handler.rs`);
            // the plans this session keeps for their text stay for reuse.
            Statement::Deallocate { name, .. } if name.value.eq_ignore_ascii_case("all") => {
                self.sql_deallocate(name);
                Response::Execution(Tag::new("DEALLOCATE ALL"))
            }
            Statement::Deallocate { name, .. } => {
                self.sql_deallocate(name);
                Response::Execution(Tag::new("DEALLOCATE"))
            }
            Statement::Prepare {
                name,
                data_types,
                statement,
            } => self.sql_prepare(name, data_types, statement).await?,
            Statement::Execute {
                name, parameters, ..
            } => Box::pin(self.sql_execute(name.as_ref(), parameters, format)).await?,
            Statement::ShowVariable { variable } if show_name(variable) == "collections" => {
                collections::show(&self.catalog, format)?
            }
            Statement::ShowVariable { variable } => {
                let name = show_name(variable);
                let value = match name.as_str() {
                    own if TIMEOUTS.contains(&own) => {
                        format_duration_ms(self.timeout_ms(own).load(Ordering::Acquire))
                    }
                    _ => show_value(&self.ctx, &name)?,
                };
                let fields = show_fields(&name, format);
                let mut encoder = pgwire::api::results::DataRowEncoder::new(fields.clone());
                encoder.encode_field(&value)?;
                let row = encoder.take_row();
                Response::Query(QueryResponse::new(fields, stream::iter([Ok(row)])))
            }
            Statement::Reset(reset) => {
                self.reset(&reset.reset)?;
                Response::Execution(Tag::new("RESET"))
            }
            // Only the settings `prepare_set` leaves to the gateway reach here.
            Statement::Set(_) if crate::local_settings::is_set_local(statement) => {
                self.set_local(statement).await?;
                self.settings_changed();
                Response::Execution(Tag::new("SET"))
            }
            Statement::Set(set) => {
                self.set_search_path(set)?;
                if let Some((name, ms)) = timeout_of(set)? {
                    let ms = ms.unwrap_or_else(|| self.timeout_default_ms(name));
                    self.timeout_ms(name).store(ms, Ordering::Release);
                }
                Response::Execution(Tag::new("SET"))
            }
            _ => return Err(user_error("0A000", format!("not supported: {statement}"))),
        })
    }

    /// `RESET name` (the setting's default) or `RESET ALL` (every setting's).
    fn reset(&self, reset: &Reset) -> PgWireResult<()> {
        let names: Vec<String> = match reset {
            Reset::ALL => {
                self.prepared.lock().clear(); // the search path may go back too
                let state = self.ctx.state();
                let options = state.config().options();
                let mut names: Vec<String> = TIMEOUTS.iter().map(|t| t.to_string()).collect();
                for (prefix, entries) in [
                    (
                        HnswOptions::PREFIX,
                        options.extensions.get::<HnswOptions>().map(|o| o.entries()),
                    ),
                    (
                        VecraftOptions::PREFIX,
                        options
                            .extensions
                            .get::<VecraftOptions>()
                            .map(|o| o.entries()),
                    ),
                ] {
                    let keys = entries.unwrap_or_default().into_iter();
                    names.extend(
                        keys.map(|e| format!("{prefix}.{}", e.key.trim_start_matches('.'))),
                    );
                }
                names
            }
            Reset::ConfigurationParameter(name) => match name.to_string().to_lowercase() {
                path if path == "search_path" => {
                    self.prepared.lock().clear(); // kept plans named the old path's tables
                    vec![crate::search_path::SETTING.to_string()]
                }
                other => vec![other],
            },
        };
        for name in names {
            if let Some(own) = TIMEOUTS.into_iter().find(|t| *t == name) {
                let default = self.timeout_default_ms(own);
                self.timeout_ms(own).store(default, Ordering::Release);
                continue;
            }
            if crate::settings::is_ignored(&name) {
                continue;
            }
            let Some(default) = crate::settings::default_value(&name) else {
                let message = format!("unrecognized configuration parameter \"{name}\"");
                return Err(user_error("42704", message));
            };
            let state = self.ctx.state_ref();
            let mut state = state.write();
            let set = state.config_mut().options_mut().set(&name, &default);
            set.map_err(|e| to_pg(&e))?;
        }
        self.settings_changed();
        Ok(())
    }

    /// `CALL vecraft_add_meta_member(id)` / `vecraft_remove_meta_member(id)`
    /// (`crate::meta_members`).
    async fn change_meta_members(
        &self,
        change: vecraft_cluster::meta::MetaMembersChange,
    ) -> PgWireResult<Response> {
        let Some(node) = self.catalog.cluster_node() else {
            let message = "a single node has no meta group to change: meta members are \
                           added and removed in a cluster";
            return Err(user_error("0A000", message));
        };
        node.change_meta_members(change)
            .await
            .map_err(|e| to_pg(&vecraft_planner::collection::storage_error(e)))?;
        Ok(Response::Execution(Tag::new("CALL")))
    }

    /// `CHECKPOINT` (every collection) or `VACUUM name`: each shard replica seals and
    /// persists what it holds, and the Raft log it no longer needs is purged.
    async fn checkpoint(&self, table: Option<&ObjectName>) -> PgWireResult<Response> {
        let collections = match table {
            None => self.catalog.all(),
            Some(name) => {
                let name = crate::idents::table_name(name)?;
                let c = self.collection(&name)?;
                vec![(name, c)]
            }
        };
        let every = table.is_none();
        tokio::task::spawn_blocking(move || {
            collections
                .iter()
                .try_for_each(|(_, c)| match c.checkpoint() {
                    // Dropped since it was listed: nothing to checkpoint.
                    Err(vecraft_storage::Error::Dropped) if every => Ok(()),
                    checkpointed => checkpointed.map(|_| ()),
                })
        })
        .await
        .map_err(|e| user_error("XX000", format!("checkpoint stopped: {e}")))?
        .map_err(|e| to_pg(&vecraft_planner::collection::storage_error(e)))?;
        Ok(Response::Execution(Tag::new(if table.is_none() {
            "CHECKPOINT"
        } else {
            "VACUUM"
        })))
    }
}

/// Whether the gateway answers `statement` itself (see [`Session::run_gateway`]).
pub fn is_gateway_statement(statement: &Statement) -> bool {
    crate::local_settings::is_set_local(statement)
        || vecraft_planner::backup_sql::of(statement).is_some()
        || crate::meta_members::of(statement).is_some()
        || matches!(
            statement,
            Statement::CreateTable(_)
                | Statement::Drop {
                    object_type: ObjectType::Table,
                    ..
                }
                | Statement::CreateExtension(_)
                | Statement::CreateSchema { .. }
                | Statement::Drop {
                    object_type: ObjectType::Schema,
                    ..
                }
                | Statement::CreateIndex(_)
                | Statement::CreateRole(_)
                | Statement::AlterRole { .. }
                | Statement::Grant(_)
                | Statement::Revoke(_)
                | Statement::Drop {
                    object_type: ObjectType::Role,
                    ..
                }
                | Statement::StartTransaction { .. }
                | Statement::Commit { .. }
                | Statement::Rollback { .. }
                | Statement::Savepoint { .. }
                | Statement::ReleaseSavepoint { .. }
                | Statement::Truncate(_)
                | Statement::Copy { .. }
                | Statement::Call(_)
                | Statement::Deallocate { .. }
                | Statement::Prepare { .. }
                | Statement::Execute { .. }
                | Statement::ShowVariable { .. }
                | Statement::Vacuum(_)
                | Statement::Reset(_)
        )
}

/// The one text column `SHOW name` returns.
pub fn show_fields(name: &str, format: &Format) -> Arc<Vec<pgwire::api::results::FieldInfo>> {
    Arc::new(vec![pgwire::api::results::FieldInfo::new(
        name.to_string(),
        None,
        None,
        pgwire::api::Type::TEXT,
        format.format_for(0),
    )])
}

/// PostgreSQL's answer to a `CALL` of a procedure it does not have: its name and the types
/// of its arguments (as PostgreSQL infers them from constants; `unknown` for the rest).
fn unknown_procedure(
    call: &datafusion::sql::sqlparser::ast::Function,
) -> pgwire::error::PgWireError {
    use datafusion::sql::sqlparser::ast::{
        Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Value,
    };
    let type_of = |arg: &FunctionArg| match arg {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => match &v.value {
            Value::Number(n, _) if n.parse::<i32>().is_ok() => "integer",
            Value::Number(n, _) if n.parse::<i64>().is_ok() => "bigint",
            Value::Number(..) => "numeric",
            Value::Boolean(_) => "boolean",
            _ => "unknown",
        },
        _ => "unknown",
    };
    let types: Vec<&str> = match &call.args {
        FunctionArguments::List(list) => list.args.iter().map(type_of).collect(),
        _ => Vec::new(),
    };
    let message = format!(
        "procedure {}({}) does not exist",
        call.name,
        types.join(", ")
    );
    user_error("42883", message)
}

/// The result columns of a statement the gateway answers (`SHOW`), for Describe.
pub fn gateway_fields(
    statement: &Statement,
    format: &Format,
) -> Vec<pgwire::api::results::FieldInfo> {
    if let Some(backup) = vecraft_planner::backup_sql::of(statement) {
        return crate::backups::fields(&backup, format).to_vec();
    }
    match statement {
        Statement::ShowVariable { variable } => match show_name(variable).as_str() {
            "collections" => collections::show_fields(format).to_vec(),
            name => show_fields(name, format).to_vec(),
        },
        _ => Vec::new(),
    }
}
