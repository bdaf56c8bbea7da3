//! [`TxnSource`]: a collection as one session sees it, the session's transaction's rows laid
//! over the collection's for every scan and search.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, AsArray, BooleanArray, Float64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::compute::{
    cast, concat_batches, filter, filter_record_batch, is_not_null, take,
};
use datafusion::arrow::datatypes::{DataType, Field, Float32Type, Float64Type, Schema};
use datafusion::error::Result;
use futures::future::BoxFuture;
use vecraft_storage::command::Command;
use vecraft_storage::filter::Filter;
use vecraft_storage::key::Key;
use vecraft_storage::schema::CollectionSchema;
use vecraft_storage::shard::{DISTANCE_COLUMN, SearchRequest};

use super::{Overlay, TransactionSlot, batch_keys};
use crate::collection::{CollectionSource, Consistency, ShardTrace, blocking, storage_error};
use crate::error::VectorError;

/// A collection as one session sees it: its transaction's rows over the collection's.
#[derive(Debug)]
pub struct TxnSource {
    name: String,
    base: Arc<dyn CollectionSource>,
    slot: Arc<TransactionSlot>,
}

impl TxnSource {
    pub fn new(name: &str, base: Arc<dyn CollectionSource>, slot: Arc<TransactionSlot>) -> Self {
        TxnSource {
            name: name.to_string(),
            base,
            slot,
        }
    }

    /// The transaction's rows of this collection, if it has touched any.
    fn overlay(&self) -> Option<Arc<Overlay>> {
        let slot = self.slot.0.lock();
        let overlay = slot.as_ref()?.overlays.get(&self.name)?;
        (!overlay.is_empty()).then(|| Arc::clone(overlay))
    }
}

/// `projection`, with the key added if it is missing (to tell the touched rows).
fn with_key(projection: Option<&[String]>, pk: &str) -> Option<Vec<String>> {
    projection.map(|p| {
        let mut columns = p.to_vec();
        if !columns.iter().any(|c| c == pk) {
            columns.push(pk.to_string());
        }
        columns
    })
}

/// `batch`'s columns named by `projection` (all when `None`), in its order.
fn project(batch: &RecordBatch, projection: Option<&[String]>) -> Result<RecordBatch> {
    let Some(names) = projection else {
        return Ok(batch.clone());
    };
    let indices = names
        .iter()
        .map(|n| batch.schema().index_of(n))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(batch.project(&indices)?)
}

/// The rows of `batch` whose key the transaction does not hide.
fn unhidden(batch: &RecordBatch, pk: &str, overlay: &Overlay) -> Result<RecordBatch> {
    let keys = batch_keys(batch, pk)?;
    let keep: BooleanArray = keys.iter().map(|k| Some(!overlay.hides(k))).collect();
    Ok(filter_record_batch(batch, &keep)?)
}

/// The transaction's live rows passing `filter`, as rows of the collection's schema.
fn own_rows(
    overlay: &Overlay,
    schema: &CollectionSchema,
    filter: Option<&Filter>,
) -> Result<Option<RecordBatch>> {
    let Some(rows) = overlay.live(&schema.arrow_schema())? else {
        return Ok(None);
    };
    let rows = match filter {
        Some(f) => filter_record_batch(&rows, &f.evaluate(&rows).map_err(storage_error)?)?,
        None => rows,
    };
    Ok((rows.num_rows() > 0).then_some(rows))
}

impl CollectionSource for TxnSource {
    fn schema(&self) -> CollectionSchema {
        self.base.schema()
    }

    fn shards(&self) -> usize {
        self.base.shards()
    }

    fn scan(
        &self,
        projection: Option<&[String]>,
        filter: Option<&Filter>,
        read: Consistency,
    ) -> Result<Vec<RecordBatch>> {
        let Some(overlay) = self.overlay() else {
            return self.base.scan(projection, filter, read);
        };
        let schema = self.base.schema();
        let pk = schema.primary_key().name.clone();
        let keyed = with_key(projection, &pk);
        let mut out = Vec::new();
        if !overlay.truncated {
            for batch in self.base.scan(keyed.as_deref(), filter, read)? {
                let batch = unhidden(&batch, &pk, &overlay)?;
                if batch.num_rows() > 0 {
                    out.push(project(&batch, projection)?);
                }
            }
        }
        if let Some(rows) = own_rows(&overlay, &schema, filter)? {
            out.push(project(&rows, projection)?);
        }
        Ok(out)
    }

    fn search(&self, request: &SearchRequest, read: Consistency) -> Result<RecordBatch> {
        let Some(overlay) = self.overlay() else {
            return self.base.search(request, read);
        };
        let schema = self.base.schema();
        let pk = schema.primary_key().name.clone();
        // Enough of the collection's nearest rows that k remain after the hidden ones go.
        let mut wider = request.clone();
        wider.k = request.k.saturating_add(overlay.rows.len());
        wider.projection = with_key(request.projection.as_deref(), &pk);
        let mut candidates = Vec::new();
        if !overlay.truncated {
            let found = self.base.search(&wider, read)?;
            let found = unhidden(&found, &pk, &overlay)?;
            candidates.push(found);
        }
        if let Some(rows) = own_rows(&overlay, &schema, request.filter.as_ref())? {
            candidates.push(with_distances(
                &rows,
                request,
                &schema,
                wider.projection.as_deref(),
            )?);
        }
        let Some(first) = candidates.first() else {
            let empty = self.base.search(&wider, read)?;
            return project_hits(&empty.slice(0, 0), request.projection.as_deref());
        };
        let all = concat_batches(&first.schema(), &candidates)?;
        let nearest = nearest_first(&all, request.k)?;
        project_hits(&nearest, request.projection.as_deref())
    }

    fn search_traced(
        &self,
        request: &SearchRequest,
        read: Consistency,
    ) -> Result<(RecordBatch, Vec<ShardTrace>)> {
        match self.overlay() {
            None => self.base.search_traced(request, read),
            Some(_) => Ok((self.search(request, read)?, Vec::new())),
        }
    }

    fn scan_traced(
        &self,
        projection: Option<&[String]>,
        filter: Option<&Filter>,
        read: Consistency,
    ) -> Result<(Vec<RecordBatch>, Vec<ShardTrace>)> {
        match self.overlay() {
            None => self.base.scan_traced(projection, filter, read),
            Some(_) => Ok((self.scan(projection, filter, read)?, Vec::new())),
        }
    }

    fn search_traced_async<'a>(
        &'a self,
        request: &'a SearchRequest,
        read: Consistency,
    ) -> BoxFuture<'a, Result<(RecordBatch, Vec<ShardTrace>)>> {
        match self.overlay() {
            None => self.base.search_traced_async(request, read),
            Some(_) => Box::pin(async move { self.search_traced(request, read) }),
        }
    }

    fn scan_traced_async<'a>(
        &'a self,
        projection: Option<&'a [String]>,
        filter: Option<&'a Filter>,
        read: Consistency,
    ) -> BoxFuture<'a, Result<(Vec<RecordBatch>, Vec<ShardTrace>)>> {
        match self.overlay() {
            None => self.base.scan_traced_async(projection, filter, read),
            Some(_) => Box::pin(async move { self.scan_traced(projection, filter, read) }),
        }
    }

    fn write(&self, command: &Command) -> Result<u64> {
        let mut slot = self.slot.0.lock();
        match slot.as_mut() {
            Some(txn) => txn.stage(&self.name, self.base.as_ref(), command),
            None => {
                drop(slot);
                self.base.write(command)
            }
        }
    }

    fn write_async<'a>(&'a self, command: &'a Command) -> BoxFuture<'a, Result<u64>> {
        let mut slot = self.slot.0.lock();
        match slot.as_mut() {
            Some(txn) => {
                // Staging reads the stored keys (on other nodes, in a cluster).
                let staged = blocking(|| txn.stage(&self.name, self.base.as_ref(), command));
                Box::pin(std::future::ready(staged))
            }
            None => {
                drop(slot);
                self.base.write_async(command)
            }
        }
    }

    fn check_delete(&self, keys: &[Key]) -> Result<()> {
        self.base.check_delete(keys)
    }
}

/// The transaction's rows as search hits: `projection` (all columns when `None`), then
/// `_distance` by the request's metric (rows without a vector are no hits).
fn with_distances(
    rows: &RecordBatch,
    request: &SearchRequest,
    schema: &CollectionSchema,
    projection: Option<&[String]>,
) -> Result<RecordBatch> {
    let spec = schema.vector_spec(&request.column).map_err(storage_error)?;
    let metric = request.metric.unwrap_or(spec.metric);
    let vectors = rows
        .column_by_name(&request.column)
        .ok_or_else(|| VectorError::new("XX000", "a row without its vector column"))?;
    let reals = DataType::new_fixed_size_list(DataType::Float32, spec.dims as i32, true);
    let reals = cast(vectors, &reals)?;
    let list = reals.as_fixed_size_list();
    let values = list.values().as_primitive::<Float32Type>().values();
    let distances: Float64Array = (0..list.len())
        .map(|i| {
            let v = &values[i * spec.dims..(i + 1) * spec.dims];
            list.is_valid(i)
                .then(|| metric.distance(&request.vector, v))
        })
        .collect();
    let with_vector = is_not_null(&distances)?;
    let hits = project(&filter_record_batch(rows, &with_vector)?, projection)?;
    let distances = filter(&distances, &with_vector)?;
    let mut fields: Vec<Field> = hits
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(DISTANCE_COLUMN, DataType::Float64, false));
    let mut columns = hits.columns().to_vec();
    columns.push(distances);
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// The `k` rows of `hits` with the smallest `_distance`, closest first.
fn nearest_first(hits: &RecordBatch, k: usize) -> Result<RecordBatch> {
    let distances = hits
        .column(hits.num_columns() - 1)
        .as_primitive::<Float64Type>();
    let mut order: Vec<u32> = (0..hits.num_rows() as u32).collect();
    order.sort_by(|&a, &b| {
        distances
            .value(a as usize)
            .total_cmp(&distances.value(b as usize))
    });
    order.truncate(k);
    let indices = UInt32Array::from(order);
    let columns = hits
        .columns()
        .iter()
        .map(|c| take(c, &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(hits.schema(), columns)?)
}

/// Hits with the columns asked for, then `_distance` (the key goes if it was added).
fn project_hits(hits: &RecordBatch, projection: Option<&[String]>) -> Result<RecordBatch> {
    let Some(names) = projection else {
        return Ok(hits.clone());
    };
    let mut columns = names.to_vec();
    columns.push(DISTANCE_COLUMN.to_string());
    project(hits, Some(&columns))
}
