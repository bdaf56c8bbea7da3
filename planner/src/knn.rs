//! `ORDER BY <distance to a constant> LIMIT k` over one collection becomes an index search.
//!
//! A physical optimizer rule, because `TableProvider::scan` never sees ORDER BY and DataFusion's
//! sort pushdown stops at a computed projection (the `SELECT v <-> q AS d … ORDER BY d` shape).
//! It matches `SortExec(fetch = k)` over (repartitions / coalesces), an optional projection and a
//! `CollectionScanExec` (through DataFusion's cooperative-scheduling wrapper), where the sort key resolves to one of our distance UDFs of the scan's
//! vector column and a constant vector or a parameter of a kept plan ([`crate::params`]). The scan becomes a search (`CollectionSearchExec` in
//! EXPLAIN) that asks the collection for its k nearest rows (filters included, so k rows come back when k
//! match). The search answers in the order of the distance as pgvector computes it, so the sort
//! goes too, unless a repartition between them may reorder rows (then it stays, sorting at
//! most k rows). Any other shape is left alone and still answered correctly by scanning.
//!
//! Like pgvector's HNSW index scan, the search returns only rows that have a vector: when
//! fewer than k rows with vectors match, rows whose vector is NULL (which a scan would sort
//! last) are not filled in. `NULLS FIRST` orders are not rewritten.
//!
//! Settings: `SET hnsw.ef_search = n` (pgvector's name) and `SET vecraft.exact_search = true`.

use std::sync::Arc;

use datafusion::arrow::array::Array;
use datafusion::common::config::{ConfigExtension, ConfigOptions};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{ScalarValue, extensions_options};
use datafusion::error::Result;
use datafusion::logical_expr::ScalarUDF;
use datafusion::physical_expr::expressions::{CastExpr, Column, Literal};
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{ChildrenPropertiesMode, ExecutionPlan, ReplaceChildrenOptions};
use vecraft_storage::shard::SearchRequest;

use crate::collection::Consistency;
use crate::error::VectorError;
use crate::functions::VectorFn;
use crate::params::ParamFn;
use crate::table::CollectionScanExec;
use crate::vector_text::parse_vector;

extensions_options! {
    /// pgvector's HNSW settings.
    pub struct HnswOptions {
        /// Beam width of an index search (`SET hnsw.ef_search`).
        pub ef_search: usize, default = vecraft_storage::schema::DEFAULT_EF_SEARCH
        /// pgvector's iterative scans (`off`, `relaxed_order`, `strict_order`). Vecraft's
        /// searches apply filters inside the graph walk, so a filtered search returns its k
        /// rows without them; kept so that clients setting it work, and SHOW answers.
        pub iterative_scan: String, default = "off".to_string()
        /// pgvector's bound on tuples an iterative scan visits; kept, not used (see above).
        pub max_scan_tuples: usize, default = 20_000
        /// pgvector's memory multiplier for iterative scans; kept, not used (see above).
        pub scan_mem_multiplier: f64, default = 1.0
    }
}

impl ConfigExtension for HnswOptions {
    const PREFIX: &'static str = "hnsw";
}

extensions_options! {
    /// Vecraft's own session settings.
    pub struct VecraftOptions {
        /// Answer KNN queries by brute force (ground truth).
        pub exact_search: bool, default = false
        /// Keep prepared statements' physical plans across executions (off: plan every time,
        /// for comparison).
        pub plan_cache: bool, default = true
        /// Which replicas may answer reads: strong, bounded or eventual.
        pub consistency: ReadConsistency, default = ReadConsistency::default()
        /// PostgreSQL's `search_path`, as `SHOW search_path` prints it (the gateway follows
        /// it; `SET search_path` sets it).
        pub search_path: String, default = "\"$user\", public".to_string()
    }
}

/// `SET vecraft.consistency`, as a DataFusion setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadConsistency(pub Consistency);

impl datafusion::config::ConfigField for ReadConsistency {
    fn visit<V: datafusion::config::Visit>(&self, v: &mut V, key: &str, description: &'static str) {
        v.some(key, self.0, description)
    }

    fn set(&mut self, _key: &str, value: &str) -> Result<()> {
        self.0 = value
            .parse()
            .map_err(|e: String| datafusion::error::DataFusionError::Configuration(e))?;
        Ok(())
    }
}

/// The read consistency a query runs with.
pub fn read_consistency(context: &datafusion::execution::TaskContext) -> Consistency {
    context
        .session_config()
        .options()
        .extensions
        .get::<VecraftOptions>()
        .map_or_else(Consistency::default, |o| o.consistency.0)
}

impl ConfigExtension for VecraftOptions {
    const PREFIX: &'static str = "vecraft";
}

#[derive(Debug, Default)]
pub struct KnnRewrite;

impl PhysicalOptimizerRule for KnnRewrite {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let ef = config
            .extensions
            .get::<HnswOptions>()
            .map_or(vecraft_storage::schema::DEFAULT_EF_SEARCH, |o| o.ef_search);
        let exact = config
            .extensions
            .get::<VecraftOptions>()
            .is_some_and(|o| o.exact_search);
        plan.transform_down(|node| {
            let Some(sort) = node.downcast_ref::<SortExec>() else {
                return Ok(Transformed::no(node));
            };
            match rewrite_sort(sort, ef, exact)? {
                // The search answers its k rows in the sort's order already (by the distance
                // as pgvector computes it); unless something between them may reorder rows,
                // the sort has nothing left to do.
                Some(new_input) if keeps_search_order(&new_input) => {
                    Ok(Transformed::new(new_input, true, TreeNodeRecursion::Jump))
                }
                Some(new_input) => {
                    let sort = with_child(&node, new_input)?;
                    Ok(Transformed::new(sort, true, TreeNodeRecursion::Jump))
                }
                None => Ok(Transformed::no(node)),
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "vecraft_knn"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

fn with_child(
    node: &Arc<dyn ExecutionPlan>,
    child: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let options = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute);
    node.clone().replace_children(vec![child], options)
}

/// Whether `plan` hands on a search's rows in the search's order: one partition, and only
/// projections and DataFusion's cooperative wrapper between it and the search.
fn keeps_search_order(plan: &Arc<dyn ExecutionPlan>) -> bool {
    if plan.properties().output_partitioning().partition_count() != 1 {
        return false;
    }
    if let Some(scan) = plan.downcast_ref::<CollectionScanExec>() {
        return scan.search.is_some();
    }
    let passes_rows_through = plan.downcast_ref::<ProjectionExec>().is_some()
        || plan.downcast_ref::<CooperativeExec>().is_some();
    match plan.children().as_slice() {
        [child] if passes_rows_through => keeps_search_order(child),
        _ => false,
    }
}

/// The sort's input with its collection scan replaced by a search, if the shape matches.
fn rewrite_sort(sort: &SortExec, ef: usize, exact: bool) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let (Some(k), [key]) = (sort.fetch(), sort.expr().as_ref()) else {
        return Ok(None);
    };
    // The index returns no rows without a vector, so only NULLS LAST orders agree.
    if key.options.descending || key.options.nulls_first {
        return Ok(None);
    }
    replace_scan(sort.input(), key.expr.clone(), k, ef, exact)
}

/// Walks down single-child operators that keep rows intact, resolving `key` through a
/// projection, until the scan.
fn replace_scan(
    node: &Arc<dyn ExecutionPlan>,
    key: Arc<dyn PhysicalExpr>,
    k: usize,
    ef: usize,
    exact: bool,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if let Some(scan) = node.downcast_ref::<CollectionScanExec>() {
        if scan.delete {
            return Ok(None);
        }
        return Ok(
            search_for(scan, &key, k, ef, exact).map(|s| Arc::new(s) as Arc<dyn ExecutionPlan>)
        );
    }
    let key = if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
        // Rewrite the key in terms of the projection's input.
        let mut unresolved = false;
        let rewritten = key.transform_up(|e| match e.downcast_ref::<Column>() {
            Some(c) => match projection.expr().get(c.index()) {
                Some(p) => Ok(Transformed::yes(p.expr.clone())),
                None => {
                    unresolved = true;
                    Ok(Transformed::no(e))
                }
            },
            None => Ok(Transformed::no(e)),
        })?;
        if unresolved {
            return Ok(None);
        }
        rewritten.data
    } else if node.fetch().is_some() {
        return Ok(None); // an inner LIMIT picks rows of its own; leave the plan alone
    } else if node.downcast_ref::<RepartitionExec>().is_some()
        || node.downcast_ref::<CooperativeExec>().is_some()
        || node.downcast_ref::<CoalescePartitionsExec>().is_some()
        || node.downcast_ref::<SortPreservingMergeExec>().is_some()
    {
        key
    } else {
        return Ok(None);
    };
    let children = node.children();
    let [child] = children.as_slice() else {
        return Ok(None);
    };
    match replace_scan(child, key, k, ef, exact)? {
        Some(new_child) => Ok(Some(with_child(node, new_child)?)),
        None => Ok(None),
    }
}

/// A search equivalent to `scan` ordered by `key` (a distance UDF of a scan column and a
/// constant vector), or `None`.
fn search_for(
    scan: &CollectionScanExec,
    key: &Arc<dyn PhysicalExpr>,
    k: usize,
    ef: usize,
    exact: bool,
) -> Option<CollectionScanExec> {
    let call = key.downcast_ref::<ScalarFunctionExpr>()?;
    let function = VectorFn::ALL
        .into_iter()
        .find(|f| f.name() == call.name())?;
    let metric = function.metric()?;
    let [a, b] = call.args() else { return None };
    let (column, constant) = match a.downcast_ref::<Column>() {
        Some(c) => (c, b),
        None => (b.downcast_ref::<Column>()?, a),
    };
    let column = scan.columns.get(column.index())?.clone();
    let spec = scan.source.schema().vector_spec(&column).ok()?;
    let (vector, param) = if let Some(literal) = constant.downcast_ref::<Literal>() {
        let vector = literal_vector(literal.value())?;
        if vector.iter().any(|x| !x.is_finite()) {
            return None; // the scan computes (or refuses) such distances itself
        }
        if spec.dims != vector.len() {
            return None; // let the scan raise pgvector's dimension error
        }
        (vector, None)
    } else {
        // A parameter of a kept plan: read, and checked, when the search starts.
        (Vec::new(), Some(Arc::new(query_param(constant)?)))
    };
    let mut request = SearchRequest::new(column, vector, k);
    request.ef = ef;
    request.metric = Some(metric);
    request.filter = scan.filter.clone();
    request.projection = Some(scan.columns.clone());
    request.exact = exact;
    Some(scan.searching(request, param))
}

/// The parameter a kept plan's query vector comes from: `$1` itself, or `$1` read as a
/// vector (`$1::vector`, `$1::vector(n)`, as many clients write it), whose text or list the
/// search reads as that cast would ([`param_vector`]).
fn query_param(expr: &Arc<dyn PhysicalExpr>) -> Option<ScalarUDF> {
    let param = |e: &Arc<dyn PhysicalExpr>| {
        let call = e.downcast_ref::<ScalarFunctionExpr>()?;
        call.fun().inner().downcast_ref::<ParamFn>()?;
        Some(call.fun().clone())
    };
    if let Some(found) = param(expr) {
        return Some(found);
    }
    if let Some(cast) = expr.downcast_ref::<CastExpr>() {
        return param(cast.expr());
    }
    // Text read by the vector type's input, or a parameter already typed `vector` (a list
    // of floats) checked by `array_to_vector`.
    let read = expr.downcast_ref::<ScalarFunctionExpr>()?;
    match (read.name(), read.args()) {
        ("vector_in", [text]) => param(text),
        ("array_to_vector", [list, ..]) => param(list),
        _ => None,
    }
}

/// The query vector a parameter holds now, checked as the scan would check it.
pub fn param_vector(param: &ScalarUDF, dims: usize) -> Result<Vec<f32>> {
    let Some(param) = param.inner().downcast_ref::<ParamFn>() else {
        return datafusion::common::internal_err!("{} is not a parameter", param.name());
    };
    let value = param.value()?;
    let vector = match &value {
        ScalarValue::Utf8(Some(t))
        | ScalarValue::LargeUtf8(Some(t))
        | ScalarValue::Utf8View(Some(t)) => parse_vector(t)?,
        other => literal_vector(other).ok_or_else(|| {
            VectorError::data(format!("parameter ${} is not a vector", param.index + 1))
        })?,
    };
    if vector.len() != dims {
        return Err(VectorError::data(format!(
            "different vector dimensions {} and {}",
            dims,
            vector.len()
        ))
        .into());
    }
    Ok(vector)
}

fn literal_vector(value: &ScalarValue) -> Option<Vec<f32>> {
    match value {
        ScalarValue::Utf8(Some(t))
        | ScalarValue::LargeUtf8(Some(t))
        | ScalarValue::Utf8View(Some(t)) => parse_vector(t).ok(),
        ScalarValue::FixedSizeList(list) if list.len() == 1 && list.is_valid(0) => {
            floats(list.value(0))
        }
        // `$1::vector`: a vector of any dimension.
        ScalarValue::List(list) if list.len() == 1 && list.is_valid(0) => floats(list.value(0)),
        _ => None,
    }
}

/// One vector's values as `f32`s, whatever float type they have.
fn floats(values: datafusion::arrow::array::ArrayRef) -> Option<Vec<f32>> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{DataType, Float32Type};
    if let Some(f32s) = values.as_primitive_opt::<Float32Type>() {
        return Some(f32s.values().to_vec());
    }
    let values = datafusion::arrow::compute::cast(&values, &DataType::Float32).ok()?;
    Some(values.as_primitive::<Float32Type>().values().to_vec())
}
