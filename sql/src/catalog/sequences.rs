//! Where sequences (`serial`, `nextval`) keep their values: a file in the table's directory
//! on a single node, a row of the meta group in a cluster. The catalog reserves blocks of
//! values durably; sessions hand them out.

use std::path::Path;

use datafusion::error::{DataFusionError, Result};
use vecraft_storage::names::storage_key;

use super::{Backend, Catalog, io, read, storage};

impl Catalog {
    /// Where the sequence of `table`'s `column` keeps its values: on a single node a file in
    /// the table's directory (gone with it), in a cluster a row of the meta group named by
    /// the table's incarnation (a table made again under the name has new groups).
    pub(crate) fn sequence_home(&self, table: &str, column: &str) -> Result<String> {
        let missing = || DataFusionError::Plan(format!("relation \"{table}\" does not exist"));
        let column = storage_key(column).ok_or_else(missing)?;
        match &self.backend {
            Backend::Local { .. } => {
                let collection = self.get(table).ok_or_else(missing)?;
                let dir = collection.dir().ok_or_else(missing)?;
                Ok(dir
                    .join("sequences")
                    .join(column)
                    .to_string_lossy()
                    .to_string())
            }
            Backend::Cluster { seen, .. } => {
                let key = storage_key(table).ok_or_else(missing)?;
                let state = read(seen).clone();
                let meta = state.collections.get(&key).ok_or_else(missing)?;
                let group = &meta.shards.first().ok_or_else(missing)?.group;
                Ok(vecraft_cluster::meta::sequence_name(group, &column))
            }
        }
    }

    /// Reserves `count` values of the sequence at `home`, durably; the first of them.
    pub(crate) fn reserve(&self, home: &str, count: u64) -> Result<i64> {
        match &self.backend {
            Backend::Local { .. } => {
                let path = Path::new(home);
                let first = match std::fs::read_to_string(path) {
                    Ok(text) => text.trim().parse::<i64>().map_err(|e| {
                        DataFusionError::Execution(format!("sequence file {home}: {e}"))
                    })?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
                    Err(e) => return Err(io(e)),
                };
                let next = first.checked_add(count as i64).ok_or_else(|| {
                    DataFusionError::Execution("nextval: reached maximum value of sequence".into())
                })?;
                if let Some(dir) = path.parent() {
                    // Only the `sequences` directory: a table dropped meanwhile (its directory
                    // gone) is not made again.
                    match std::fs::create_dir(dir) {
                        Ok(()) => vecraft_storage::fsutil::sync_dir(
                            dir.parent().unwrap_or(Path::new(".")),
                        )
                        .map_err(storage)?,
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(io(e)),
                    }
                }
                vecraft_storage::fsutil::write_atomic(path, next.to_string().as_bytes())
                    .map_err(storage)?;
                Ok(first)
            }
            Backend::Cluster { node, .. } => node.reserve_sequence(home, count).map_err(storage),
        }
    }
}
