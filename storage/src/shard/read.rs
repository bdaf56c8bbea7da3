//! Reading a shard: top-k vector search and scans, both as Arrow batches.
//!
//! A search asks every segment for its own top-k of live rows passing the filter, then merges.
//! A sealed segment with a graph built for the requested metric is searched through the graph,
//! with the filter applied inside the walk, unless the filter passes so few rows that an exact
//! scan of them is cheaper (and always returns k when k match). Growing and frozen segments
//! are searched the same way through their live index (`index/live.rs`), which scans the rows
//! it has not taken yet. `exact` requests are brute force.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, UInt64Array};
use arrow::compute::interleave;
use arrow::datatypes::{DataType, Field, Schema};
use roaring::RoaringBitmap;

use super::state::State;
use super::{SegmentSearches, Shard};
use crate::distance::{Metric, validate_vector};
use crate::error::{Error, Result};
use crate::filter::{CmpOp, Filter, Scalar};
use crate::index::IndexKind;
use crate::index::graph::{Scored, brute_force};
use crate::index::vectors::Query;
use crate::key::Key;
use crate::schema::{CollectionSchema, DEFAULT_EF_SEARCH, MAX_EF_SEARCH};
use crate::segment::Segment;
use crate::segment::rows::take_column;

/// The column a search result carries its distances in.
pub const DISTANCE_COLUMN: &str = "_distance";
/// A column a scan gives when its projection names it: each row's version, the log index of
/// the command that wrote it (`Segment::versions`), which changes whenever its key is written
/// again and on no replica otherwise. A transaction records the versions of the rows it
/// updates or deletes, and its commit fails (40001) if one changed.
pub const VERSION_COLUMN: &str = "_row_version";

/// Segment searches by how they were answered (see `SegmentSearches`).
#[derive(Default)]
pub(super) struct SearchCounters {
    graph: AtomicU64,
    live: AtomicU64,
    scan: AtomicU64,
}

impl SearchCounters {
    fn count(&self, answered_by: Option<IndexKind>) {
        let counter = match answered_by {
            Some(IndexKind::Graph) => &self.graph,
            Some(IndexKind::Live) => &self.live,
            None => &self.scan,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> SegmentSearches {
        SegmentSearches {
            graph: self.graph.load(Ordering::Relaxed),
            live: self.live.load(Ordering::Relaxed),
            scan: self.scan.load(Ordering::Relaxed),
        }
    }
}

/// Below this many passing rows per `ef`, a filtered graph search turns into an exact scan
/// of the passing rows; likewise below this fraction of the segment.
const EXACT_ROWS_PER_EF: usize = 64;
const EXACT_MIN_SELECTIVITY: f64 = 0.02;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SearchRequest {
    /// The vector column searched.
    pub column: String,
    pub vector: Vec<f32>,
    pub k: usize,
    /// Beam width (`hnsw.ef_search`); 0 means the default, 40. Raised to `k` if smaller.
    pub ef: usize,
    /// Defaults to the column's metric. Another metric is answered exactly.
    pub metric: Option<Metric>,
    pub filter: Option<Filter>,
    /// Columns to return (all when `None`), then `_distance`.
    pub projection: Option<Vec<String>>,
    /// Brute force over every row: ground truth.
    pub exact: bool,
}

impl SearchRequest {
    pub fn new(column: impl Into<String>, vector: Vec<f32>, k: usize) -> Self {
        SearchRequest {
            column: column.into(),
            vector,
            k,
            ef: 0,
            metric: None,
            filter: None,
            projection: None,
            exact: false,
        }
    }
}

/// Live rows of a segment passing a filter, as the predicate searches test.
struct Admission<'a> {
    dead: &'a RoaringBitmap,
    nulls: &'a RoaringBitmap,
    mask: Option<BooleanArray>,
}

impl Admission<'_> {
    #[inline]
    fn admits(&self, row: u32) -> bool {
        !self.dead.contains(row)
            && !self.nulls.contains(row)
            && self.mask.as_ref().is_none_or(|m| m.value(row as usize))
    }

    /// Roughly how many rows are admitted: those passing the filter, less dead and NULL rows
    /// (which may overlap them, so this can undercount; it only picks a strategy).
    fn passing_estimate(&self, rows: usize) -> usize {
        let passing = self.mask.as_ref().map_or(rows, |m| m.true_count());
        passing.saturating_sub((self.dead.len() + self.nulls.len()) as usize)
    }
}

fn filter_mask(filter: Option<&Filter>, segment: &dyn Segment) -> Result<Option<BooleanArray>> {
    let Some(filter) = filter else {
        return Ok(None);
    };
    let parts: Vec<BooleanArray> = segment
        .payload()
        .iter()
        .map(|b| filter.evaluate(b))
        .collect::<Result<_>>()?;
    let refs: Vec<&dyn Array> = parts.iter().map(|a| a as &dyn Array).collect();
    match refs.len() {
        0 => Ok(Some(BooleanArray::from(Vec::<bool>::new()))),
        1 => Ok(Some(parts[0].clone())),
        _ => Ok(Some(
            arrow::array::AsArray::as_boolean(&arrow::compute::concat(&refs)?).clone(),
        )),
    }
}

impl Shard {
    /// The `k` rows nearest to `req.vector`, closest first, with `_distance` (Float64).
    pub fn search(&self, req: &SearchRequest) -> Result<RecordBatch> {
        let state = self.inner.state.read();
        let schema = state.schema.clone();
        let spec = schema.vector_spec(&req.column)?;
        validate_vector(&req.vector, spec.dims)?;
        let ef = if req.ef == 0 {
            DEFAULT_EF_SEARCH
        } else {
            req.ef
        };
        if ef > MAX_EF_SEARCH {
            return Err(Error::InvalidArgument(format!(
                "ef_search must be between 1 and {MAX_EF_SEARCH}"
            )));
        }
        if let Some(f) = &req.filter {
            f.validate(&schema)?;
        }
        let column = schema.column_index(&req.column)?;
        let col = schema.vector_columns().iter().position(|&c| c == column);
        let col = col.expect("vector_spec accepted a vector column");
        let metric = req.metric.unwrap_or(spec.metric);
        // No more hits than live rows: keeps a huge `k` from sizing heaps after it.
        let k = req.k.min(state.keymap.len());
        let plan = SegmentSearch {
            col,
            metric,
            k,
            ef,
            exact: req.exact,
        };
        let query = Query::new(req.vector.clone());
        let segments = segments_of(&state);
        let mut hits: Vec<(Scored, usize)> = Vec::new();
        for (s, (segment, dead)) in segments.iter().enumerate() {
            if segment.num_rows() == 0 {
                continue;
            }
            let admission = Admission {
                dead,
                nulls: segment.null_vectors(col),
                mask: filter_mask(req.filter.as_ref(), *segment)?,
            };
            let (found, answered_by) = plan.run(*segment, &query, &admission);
            self.inner.searches.count(answered_by);
            hits.extend(found.into_iter().map(|h| (h, s)));
        }
        hits.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        hits.truncate(k);
        // Ranking used a cheaper score. The k rows go out ordered by the distance exactly as
        // pgvector computes it, so `ORDER BY distance` needs no sort above the search.
        let mut ranked: Vec<Ranked> = hits
            .into_iter()
            .map(|(hit, s)| {
                let row = segments[s].0.vectors(col).get(hit.row);
                (metric.distance(&query.vector, row), hit, s)
            })
            .collect();
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        materialize(&schema, &segments, &ranked, req.projection.as_deref())
    }

    /// Every live row passing `filter`, projected; one batch per segment that has any.
    pub fn scan(
        &self,
        projection: Option<&[String]>,
        filter: Option<&Filter>,
    ) -> Result<Vec<RecordBatch>> {
        let state = self.inner.state.read();
        let schema = state.schema.clone();
        if let Some(f) = filter {
            f.validate(&schema)?;
        }
        let with_version = projection.is_some_and(|p| p.iter().any(|c| c == VERSION_COLUMN));
        let projection: Option<Vec<String>> =
            projection.map(|p| p.iter().filter(|c| *c != VERSION_COLUMN).cloned().collect());
        let columns = project(&schema, projection.as_deref())?;
        let mut fields: Vec<Field> = columns.iter().map(|&c| field_of(&schema, c)).collect();
        if with_version {
            fields.push(Field::new(VERSION_COLUMN, DataType::UInt64, false));
        }
        let out_schema = Arc::new(Schema::new(fields));
        // `pk = v` or `pk IN (…)`: the key map says where the rows are.
        let mut by_key = filter
            .and_then(|f| named_keys(f, &schema))
            .map(|keys| rows_of_keys(&state, &keys));
        let ids = state.slots.iter().map(|s| s.id).chain([state.growing_id]);
        let mut batches = Vec::new();
        for ((segment, dead), id) in segments_of(&state).into_iter().zip(ids) {
            let rows: Vec<u32> = match by_key.as_mut() {
                Some(found) => found.remove(&id).unwrap_or_default(),
                None => {
                    let mask = filter_mask(filter, segment)?;
                    (0..segment.num_rows())
                        .filter(|&r| {
                            !dead.contains(r) && mask.as_ref().is_none_or(|m| m.value(r as usize))
                        })
                        .collect()
                }
            };
            if rows.is_empty() {
                continue;
            }
            let mut positions = None;
            let mut arrays = columns
                .iter()
                .map(|&c| take_column(&schema, segment, c, &rows, &mut positions))
                .collect::<Result<Vec<_>>>()?;
            if with_version {
                let versions = rows.iter().map(|&row| segment.versions()[row as usize]);
                arrays.push(Arc::new(UInt64Array::from_iter_values(versions)));
            }
            // An empty projection (`count(*)`) still carries its row count.
            let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
            batches.push(RecordBatch::try_new_with_options(
                out_schema.clone(),
                arrays,
                &options,
            )?);
        }
        Ok(batches)
    }

    /// Number of live rows.
    pub fn count(&self) -> u64 {
        self.inner.state.read().keymap.len() as u64
    }
}

/// Every segment with its tombstones: slots oldest first, then the growing segment.
/// The keys `filter` admits when all it says is `pk = v` or `pk IN (…)` (`None` otherwise).
fn named_keys(filter: &Filter, schema: &CollectionSchema) -> Option<Vec<Key>> {
    let pk = schema.primary_key();
    let integer = matches!(pk.ty.arrow_type(), DataType::Int64 | DataType::Int32);
    let key = |value: &Scalar| match value {
        Scalar::Int(v) if integer => Some(Key::Int(*v)),
        Scalar::Text(t) if pk.ty.arrow_type() == DataType::Utf8 => Some(Key::Text(t.clone())),
        _ => None,
    };
    match filter {
        Filter::Compare {
            column,
            op: CmpOp::Eq,
            value,
        } if *column == pk.name => Some(vec![key(value)?]),
        Filter::In {
            column,
            values,
            negated: false,
        } if *column == pk.name => values.iter().map(key).collect(),
        _ => None,
    }
}

/// Where the live rows of `keys` are: their row numbers by segment id, ascending.
fn rows_of_keys(state: &State, keys: &[Key]) -> HashMap<u64, Vec<u32>> {
    let mut rows: HashMap<u64, Vec<u32>> = HashMap::new();
    for at in keys.iter().filter_map(|k| state.keymap.get(k)) {
        rows.entry(at.segment).or_default().push(at.row);
    }
    for found in rows.values_mut() {
        found.sort_unstable();
        found.dedup();
    }
    rows
}

fn segments_of(state: &State) -> Vec<(&dyn Segment, &RoaringBitmap)> {
    let mut out: Vec<(&dyn Segment, &RoaringBitmap)> = state
        .slots
        .iter()
        .map(|s| (s.data.segment(), &s.dead))
        .collect();
    out.push((&state.growing, &state.growing_dead));
    out
}

/// How one segment is searched: the same for every segment of a request.
struct SegmentSearch {
    col: usize,
    metric: Metric,
    k: usize,
    ef: usize,
    exact: bool,
}

impl SegmentSearch {
    /// The segment's top-k admitted rows: through its index when it has one for this metric
    /// and enough rows pass, otherwise by an exact scan of the admitted rows; and which index
    /// answered (`None`: the scan).
    fn run(
        &self,
        segment: &dyn Segment,
        query: &Query,
        admission: &Admission<'_>,
    ) -> (Vec<Scored>, Option<IndexKind>) {
        let vectors = segment.vectors(self.col);
        let accept = |row: u32| admission.admits(row);
        let (metric, k, ef) = (self.metric, self.k, self.ef);
        let index = segment
            .index(self.col)
            .filter(|(m, _)| *m == metric && !self.exact);
        if let Some((_, index)) = index {
            let rows = segment.num_rows() as usize;
            let passing = admission.passing_estimate(rows);
            let beam = ef.max(k);
            let exact_is_cheaper = passing <= EXACT_ROWS_PER_EF * beam
                || (passing as f64) < EXACT_MIN_SELECTIVITY * rows as f64
                || beam >= rows / 4;
            if !exact_is_cheaper {
                let hits = index.search(&vectors, metric, query, k, ef, &accept);
                return (hits, Some(index.kind()));
            }
        }
        let score = |r| vectors.score(metric, query, r);
        (brute_force(vectors.len(), score, k, &accept), None)
    }
}

/// An empty column of `field`'s type (a search with no hits).
fn empty_column(field: &Field) -> ArrayRef {
    arrow::array::new_empty_array(field.data_type())
}

fn project(schema: &CollectionSchema, projection: Option<&[String]>) -> Result<Vec<usize>> {
    match projection {
        None => Ok((0..schema.columns.len()).collect()),
        Some(names) => names.iter().map(|n| schema.column_index(n)).collect(),
    }
}

fn field_of(schema: &CollectionSchema, column: usize) -> Field {
    let c = &schema.columns[column];
    c.ty.arrow_field(&c.name, c.nullable)
}

/// A search result: pgvector's distance, the hit, and the index of its segment.
type Ranked = (f64, Scored, usize);

/// The batch of `hits`, in their order: the projected columns, then `_distance`.
fn materialize(
    schema: &CollectionSchema,
    segments: &[(&dyn Segment, &RoaringBitmap)],
    hits: &[Ranked],
    projection: Option<&[String]>,
) -> Result<RecordBatch> {
    let columns = project(schema, projection)?;
    // Rows wanted from each segment, and where each hit sits among them.
    let mut per_segment: Vec<Vec<u32>> = vec![Vec::new(); segments.len()];
    let mut order = Vec::with_capacity(hits.len());
    for (_, hit, s) in hits {
        order.push((*s, per_segment[*s].len()));
        per_segment[*s].push(hit.row);
    }
    // Gather from the segments that have hits only, renumbered densely for `interleave`.
    let used: Vec<usize> = (0..segments.len())
        .filter(|&s| !per_segment[s].is_empty())
        .collect();
    let dense: Vec<(usize, usize)> = order
        .iter()
        .map(|&(s, at)| {
            (
                used.iter()
                    .position(|&u| u == s)
                    .expect("hit segment is used"),
                at,
            )
        })
        .collect();
    let mut positions: Vec<Option<Vec<(usize, usize)>>> = vec![None; used.len()];
    let mut arrays = Vec::with_capacity(columns.len() + 1);
    for &c in &columns {
        let parts = used
            .iter()
            .zip(positions.iter_mut())
            .map(|(&s, pos)| take_column(schema, segments[s].0, c, &per_segment[s], pos))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
        arrays.push(match refs.len() {
            0 => empty_column(&field_of(schema, c)),
            // Hits from one segment were taken in hit order already.
            1 => parts[0].clone(),
            _ => interleave(&refs, &dense)?,
        });
    }
    let distances: Float64Array = hits
        .iter()
        .map(|(distance, _, _)| Some(*distance))
        .collect();
    arrays.push(Arc::new(distances));
    let mut fields: Vec<Field> = columns.iter().map(|&c| field_of(schema, c)).collect();
    fields.push(Field::new(DISTANCE_COLUMN, DataType::Float64, true));
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}
