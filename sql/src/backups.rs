//! `BACKUP`, `SHOW BACKUPS` and `RESTORE` (`vecraft_planner::backup_sql` reads them) at the
//! gateway: names resolved as every statement resolves them, the store opened from the URL,
//! and the work (`vecraft_cluster::backup`) run where it may block, one log line per step.
//!
//! Errors keep the storage engine's codes: a bad URL or option is 22023, the store failing or
//! unreachable 58030, an object that fails its checksum XX001, a restore onto an existing name
//! 42P07; and BACKUP and RESTORE refuse to run inside a transaction block (25001), as VACUUM
//! does.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use futures::stream;
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldInfo, QueryResponse, Response};
use pgwire::error::PgWireResult;
use vecraft_cluster::backup::{BackupManifest, BackupStore, StoreOptions, backup};
use vecraft_cluster::collection::{Collection, MAX_REPLICAS, MAX_SHARDS};
use vecraft_planner::backup_sql::BackupStatement;
use vecraft_planner::collection::storage_error;

use crate::errors::{to_pg, user_error};
use crate::idents::{listed, shown, table_name};
use crate::session::Session;

const BACKUP_COLUMNS: &[(&str, Type)] = &[
    ("backup_id", Type::TEXT),
    ("collections", Type::TEXT),
    ("rows", Type::INT8),
    ("bytes", Type::INT8),
    ("uploaded_bytes", Type::INT8),
];

const SHOW_COLUMNS: &[(&str, Type)] = &[
    ("backup_id", Type::TEXT),
    ("created", Type::TEXT),
    ("collections", Type::TEXT),
    ("rows", Type::INT8),
    ("bytes", Type::INT8),
    ("uploaded_bytes", Type::INT8),
];

const RESTORE_COLUMNS: &[(&str, Type)] = &[
    ("collection", Type::TEXT),
    ("backup_id", Type::TEXT),
    ("shards", Type::INT8),
    ("rows", Type::INT8),
    ("bytes", Type::INT8),
];

/// The result columns of `statement`, for Describe.
pub fn fields(statement: &BackupStatement, format: &Format) -> Arc<Vec<FieldInfo>> {
    let columns = match statement {
        BackupStatement::Backup { .. } => BACKUP_COLUMNS,
        BackupStatement::ShowBackups { .. } => SHOW_COLUMNS,
        BackupStatement::Restore { .. } => RESTORE_COLUMNS,
    };
    Arc::new(
        columns
            .iter()
            .enumerate()
            .map(|(i, (name, ty))| {
                FieldInfo::new(
                    name.to_string(),
                    None,
                    None,
                    ty.clone(),
                    format.format_for(i),
                )
            })
            .collect(),
    )
}

/// One line of the node's log for each step of a backup or restore.
pub(crate) fn report(line: &str) {
    eprintln!("vecraft: {line}");
}

/// The store `url` names, with the node's store settings.
fn open_store(url: &str, options: &StoreOptions) -> vecraft_storage::Result<BackupStore> {
    BackupStore::open(url, options, tokio::runtime::Handle::current())
}

/// `open_store`, making a local directory that does not exist yet.
fn create_store(url: &str, options: &StoreOptions) -> vecraft_storage::Result<BackupStore> {
    BackupStore::create(url, options, tokio::runtime::Handle::current())
}

/// Runs `work` where it may block (it waits on the store and the disks).
async fn blocking<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> datafusion::error::Result<T> + Send + 'static,
) -> PgWireResult<T> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _entered = handle.enter();
        work()
    })
    .await
    .map_err(|e| user_error("XX000", format!("{what} stopped: {e}")))?
    .map_err(|e| to_pg(&e))
}

/// A collection name as written in a backup statement (`docs`, `"My Docs"`, `s.t`), as the
/// catalog names it.
fn resolve(written: &str) -> PgWireResult<String> {
    let name = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(written)
        .and_then(|mut p| p.parse_object_name(false))
        .map_err(|e| user_error("42601", e.to_string()))?;
    table_name(&name)
}

impl Session {
    pub(crate) async fn run_backup_statement(
        &self,
        statement: BackupStatement,
        format: &Format,
    ) -> PgWireResult<Response> {
        let fields = fields(&statement, format);
        let row = match statement {
            BackupStatement::ShowBackups { url } => {
                return show_backups(url, self.catalog.backup_store(), fields).await;
            }
            _ if self.in_transaction.load(Ordering::Acquire) => {
                let verb = match statement {
                    BackupStatement::Backup { .. } => "BACKUP",
                    _ => "RESTORE",
                };
                let message = format!("{verb} cannot run inside a transaction block");
                return Err(user_error("25001", message));
            }
            BackupStatement::Backup { collections, url } => {
                self.backup(collections, url, &fields).await?
            }
            BackupStatement::Restore {
                collection,
                url,
                new_name,
                options,
            } => {
                let target = new_name.as_deref().unwrap_or(&collection);
                let (source, target) = (resolve(&collection)?, resolve(target)?);
                let options = RestoreOptions::parse(&options)?;
                self.restore(source, target, url, options, &fields).await?
            }
        };
        Ok(Response::Query(QueryResponse::new(
            fields,
            stream::iter([Ok(row)]),
        )))
    }

    async fn backup(
        &self,
        names: Option<Vec<String>>,
        url: String,
        fields: &Arc<Vec<FieldInfo>>,
    ) -> PgWireResult<pgwire::messages::data::DataRow> {
        let targets: Vec<(String, Arc<Collection>)> = match names {
            None => self.catalog.all(),
            Some(names) => names
                .iter()
                .map(|n| {
                    let name = resolve(n)?;
                    let c = self.collection(&name)?;
                    Ok((name, c))
                })
                .collect::<PgWireResult<_>>()?,
        };
        let (scratch, options) = (self.catalog.scratch_dir(), self.catalog.backup_store());
        let manifest = blocking("backup", move || {
            let store = create_store(&url, &options).map_err(storage_error)?;
            backup(&store, &targets, &scratch, &report).map_err(storage_error)
        })
        .await?;
        let mut encoder = DataRowEncoder::new(fields.clone());
        encoder.encode_field(&manifest.id)?;
        encoder.encode_field(&collection_names(&manifest))?;
        encoder.encode_field(&(manifest.rows() as i64))?;
        encoder.encode_field(&(manifest.size_bytes() as i64))?;
        encoder.encode_field(&(manifest.uploaded_bytes as i64))?;
        Ok(encoder.take_row())
    }

    async fn restore(
        &self,
        source: String,
        target: String,
        url: String,
        options: RestoreOptions,
        fields: &Arc<Vec<FieldInfo>>,
    ) -> PgWireResult<pgwire::messages::data::DataRow> {
        if self.catalog.get(&target).is_some() {
            let message = format!("relation \"{}\" already exists", shown(&target));
            return Err(user_error("42P07", message));
        }
        let catalog = Arc::clone(&self.catalog);
        let replicas = options
            .replicas
            .unwrap_or_else(|| self.catalog.default_replicas());
        let name = target.clone();
        let options_of_store = self.catalog.backup_store();
        let (restored, manifest) = blocking("restore", move || {
            let store = open_store(&url, &options_of_store).map_err(storage_error)?;
            let manifest =
                find_backup(&store, &source, options.backup.as_deref()).map_err(storage_error)?;
            let part = manifest.collection(&source).expect("find_backup found it");
            let shards = options.shards.unwrap_or(part.shards.len());
            let report = |line: &str| report(&format!("backup {}: {line}", manifest.id));
            let restored = catalog.restore(&name, part, &store, shards, replicas, &report)?;
            Ok((restored, manifest))
        })
        .await?;
        let Some(info) = restored else {
            let message = format!("relation \"{}\" already exists", shown(&target));
            return Err(user_error("42P07", message));
        };
        let mut encoder = DataRowEncoder::new(fields.clone());
        encoder.encode_field(&listed(&target))?;
        encoder.encode_field(&manifest.id)?;
        encoder.encode_field(&(info.shards as i64))?;
        encoder.encode_field(&(info.rows as i64))?;
        encoder.encode_field(&(info.size_bytes as i64))?;
        Ok(encoder.take_row())
    }
}

/// `WITH (backup = 'id', shards = n, replicas = r)` of a RESTORE.
struct RestoreOptions {
    backup: Option<String>,
    shards: Option<usize>,
    replicas: Option<usize>,
}

impl RestoreOptions {
    fn parse(options: &[(String, String)]) -> PgWireResult<RestoreOptions> {
        let mut parsed = RestoreOptions {
            backup: None,
            shards: None,
            replicas: None,
        };
        for (name, value) in options {
            let count = |most: usize| {
                value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=most).contains(n))
                    .ok_or_else(|| {
                        let message = format!(
                            "invalid value for parameter \"{name}\": \"{value}\" (an integer \
                             from 1 to {most})"
                        );
                        user_error("22023", message)
                    })
            };
            match name.as_str() {
                "backup" => parsed.backup = Some(value.clone()),
                "shards" => parsed.shards = Some(count(MAX_SHARDS)?),
                "replicas" => parsed.replicas = Some(count(MAX_REPLICAS)?),
                _ => {
                    let message = format!("unrecognized parameter \"{name}\"");
                    return Err(user_error("22023", message));
                }
            }
        }
        Ok(parsed)
    }
}

/// The backup to restore `collection` from: the one named `id`, or the latest that holds it.
fn find_backup(
    store: &BackupStore,
    collection: &str,
    id: Option<&str>,
) -> vecraft_storage::Result<BackupManifest> {
    let invalid = vecraft_storage::Error::InvalidArgument;
    let mut found = store.manifests()?;
    if let Some(id) = id {
        found.retain(|m| m.id == id);
        if found.is_empty() {
            return Err(invalid(format!(
                "backup \"{id}\" is not in {}",
                store.url()
            )));
        }
    }
    for object in found.iter().rev() {
        let manifest = BackupManifest::decode(&store.read_manifest(object)?, &object.id)?;
        if manifest.collection(collection).is_some() {
            return Ok(manifest);
        }
    }
    Err(invalid(match id {
        Some(id) => format!(
            "backup \"{id}\" does not hold collection \"{}\"",
            shown(collection)
        ),
        None => format!(
            "no backup in {} holds collection \"{}\"",
            store.url(),
            shown(collection)
        ),
    }))
}

/// `SHOW BACKUPS IN url`: one row per complete backup, oldest first.
async fn show_backups(
    url: String,
    options: StoreOptions,
    fields: Arc<Vec<FieldInfo>>,
) -> PgWireResult<Response> {
    let manifests = blocking("SHOW BACKUPS", move || {
        let store = open_store(&url, &options).map_err(storage_error)?;
        let read = |m| BackupManifest::decode(&store.read_manifest(m)?, &m.id);
        let objects = store.manifests().map_err(storage_error)?;
        objects
            .iter()
            .map(|m| read(m).map_err(storage_error))
            .collect::<datafusion::error::Result<Vec<_>>>()
    })
    .await?;
    let mut rows = Vec::with_capacity(manifests.len());
    for manifest in &manifests {
        let created = chrono::DateTime::from_timestamp_millis(manifest.created_unix_ms as i64)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f+00").to_string())
            .unwrap_or_default();
        let mut encoder = DataRowEncoder::new(fields.clone());
        encoder.encode_field(&manifest.id)?;
        encoder.encode_field(&created)?;
        encoder.encode_field(&collection_names(manifest))?;
        encoder.encode_field(&(manifest.rows() as i64))?;
        encoder.encode_field(&(manifest.size_bytes() as i64))?;
        encoder.encode_field(&(manifest.uploaded_bytes as i64))?;
        rows.push(Ok(encoder.take_row()));
    }
    Ok(Response::Query(QueryResponse::new(
        fields,
        stream::iter(rows),
    )))
}

/// The backed-up collections as listings name them, comma-separated.
fn collection_names(manifest: &BackupManifest) -> String {
    let names: Vec<String> = manifest
        .collections
        .iter()
        .map(|c| listed(&c.name))
        .collect();
    names.join(", ")
}
