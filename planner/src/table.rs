//! A collection as a DataFusion table: scans with projection and filters pushed into the
//! storage engine. The same leaf answers a KNN query when the KNN rule (`knn.rs`) gives it a
//! search request: it then returns the k nearest rows instead of all of them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::DFSchema;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, ScalarUDF, TableProviderFilterPushDown};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_expr::create_physical_expr;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet, Time,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::TryStreamExt;
use vecraft_storage::filter::Filter;
use vecraft_storage::shard::SearchRequest;

use crate::collection::{CollectionSource, without_distance};
use crate::dml::{InsertMode, InsertSink, Residual, count_batch, delete_returning, delete_where};
use crate::filters::pushable_filter;
use crate::returning::InsertReturningExec;
use crate::update::CollectionUpdateExec;

#[derive(Debug)]
pub struct CollectionTable {
    source: Arc<dyn CollectionSource>,
    schema: SchemaRef,
    /// Each column's `DEFAULT`, planned: what an INSERT leaving it out writes.
    defaults: HashMap<String, Expr>,
    /// Writes give back the rows they wrote, not a count (`… RETURNING`, `returning.rs`).
    returning: bool,
    /// An upsert keeps these columns of a row whose key exists (`upsert.rs`).
    keep: Vec<String>,
}

impl CollectionTable {
    pub fn new(source: Arc<dyn CollectionSource>) -> Self {
        let schema = source.schema().visible_arrow_schema();
        CollectionTable {
            source,
            schema,
            defaults: HashMap::new(),
            returning: false,
            keep: Vec::new(),
        }
    }

    /// The collection's schema, as storage keeps it.
    pub fn collection_schema(&self) -> vecraft_storage::schema::CollectionSchema {
        self.source.schema()
    }

    /// The same table whose INSERT, UPDATE and DELETE plans give back the rows they wrote.
    pub fn returning(&self) -> CollectionTable {
        CollectionTable {
            source: self.source.clone(),
            schema: self.schema.clone(),
            defaults: self.defaults.clone(),
            returning: true,
            keep: self.keep.clone(),
        }
    }

    /// The same table whose upserts keep the `keep` columns of rows whose key exists.
    pub fn keeping(&self, keep: Vec<String>) -> CollectionTable {
        CollectionTable {
            source: self.source.clone(),
            schema: self.schema.clone(),
            defaults: self.defaults.clone(),
            returning: self.returning,
            keep,
        }
    }

    /// This table with the columns' `DEFAULT` expressions.
    pub fn with_defaults(mut self, defaults: HashMap<String, Expr>) -> Self {
        self.defaults = defaults;
        self
    }
}

#[async_trait]
impl TableProvider for CollectionTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.defaults.get(column)
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        let schema = self.source.schema();
        Ok(filters
            .iter()
            .map(|f| match pushable_filter(f, &schema) {
                Some(_) => TableProviderFilterPushDown::Exact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mode = match insert_op {
            InsertOp::Append => InsertMode::Insert,
            // INSERT … ON CONFLICT (key) DO UPDATE that replaces the row.
            InsertOp::Replace if self.keep.is_empty() => InsertMode::Upsert,
            // … DO UPDATE of some columns: the others keep their stored values.
            InsertOp::Replace => InsertMode::Merge(self.keep.clone()),
            // INSERT … ON CONFLICT DO NOTHING: `dml::rewrite_on_conflict` marks it so, and
            // refuses an INSERT OVERWRITE written as such.
            InsertOp::Overwrite => InsertMode::InsertMissing,
        };
        let sink = InsertSink {
            source: self.source.clone(),
            schema: self.schema.clone(),
            mode,
        };
        if self.returning {
            return Ok(Arc::new(InsertReturningExec::new(input, sink)));
        }
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }

    async fn delete_from(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let collection = self.source.schema();
        let df_schema = DFSchema::try_from(self.schema.clone())?;
        let planning = PhysicalPlanningContext::default();
        let (mut parts, mut conditions) = (Vec::new(), Vec::new());
        for f in &filters {
            match pushable_filter(f, &collection) {
                Some(p) => parts.push(p),
                None => conditions.push(create_physical_expr(
                    f,
                    &df_schema,
                    state.execution_props(),
                    &planning,
                )?),
            }
        }
        let filter = (!parts.is_empty()).then_some(Filter::And(parts));
        let residual = (!conditions.is_empty()).then(|| Residual {
            visible: self.schema.clone(),
            conditions,
        });
        let returning = self.returning.then(|| self.schema.clone());
        let mut delete = CollectionScanExec::deleting(self.source.clone(), filter, returning)?;
        delete.residual = residual;
        Ok(Arc::new(delete))
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(CollectionUpdateExec::try_new(
            self.source.clone(),
            self.schema.clone(),
            &assignments,
            &filters,
            state.execution_props(),
            self.returning,
        )?))
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let columns: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let schema = Arc::new(self.schema.project(&columns)?);
        let names = columns
            .iter()
            .map(|&i| self.schema.field(i).name().clone())
            .collect();
        let collection = self.source.schema();
        let parts: Vec<Filter> = filters
            .iter()
            .filter_map(|f| pushable_filter(f, &collection))
            .collect();
        let filter = match parts.len() {
            0 => None,
            1 => parts.into_iter().next(),
            _ => Some(Filter::And(parts)),
        };
        Ok(Arc::new(CollectionScanExec::new(
            self.source.clone(),
            schema,
            names,
            filter,
        )))
    }
}

/// Reads a collection's live rows (projected, filtered) from its source, or, with a search
/// request, its k nearest rows.
#[derive(Debug, Clone)]
pub struct CollectionScanExec {
    pub source: Arc<dyn CollectionSource>,
    /// Output schema: the projected columns, in order.
    pub schema: SchemaRef,
    pub columns: Vec<String>,
    pub filter: Option<Filter>,
    pub search: Option<SearchRequest>,
    /// The parameter whose value is the search's query vector, read when the search starts.
    pub query_param: Option<Arc<ScalarUDF>>,
    /// The searched column's dimensions, which the query vector must have: read from the
    /// schema when the plan is made (a kept plan is made again after DDL), not per execution.
    query_dims: Option<usize>,
    /// DELETE the rows the filter selects, and return their count (or, with RETURNING, the
    /// rows, whose columns are `columns`).
    pub delete: bool,
    /// What a DELETE's WHERE says that the filter cannot: checked on each row read.
    pub residual: Option<Residual>,
    properties: Arc<PlanProperties>,
    /// Rows and time per shard (`EXPLAIN ANALYZE`).
    metrics: ExecutionPlanMetricsSet,
    /// The counters of `metrics`, one pair per shard, registered by the first execution that
    /// reaches that shard. A kept plan runs again and again through the same node (its
    /// `reset_state` keeps it), so each execution adds to them instead of registering more.
    /// Shared with the node's copy that an execution's stream owns.
    shard_metrics: Arc<std::sync::Mutex<Vec<(Count, Time)>>>,
}

impl CollectionScanExec {
    pub fn new(
        source: Arc<dyn CollectionSource>,
        schema: SchemaRef,
        columns: Vec<String>,
        filter: Option<Filter>,
    ) -> Self {
        let properties = Arc::new(single_partition(schema.clone()));
        CollectionScanExec {
            source,
            schema,
            columns,
            filter,
            search: None,
            query_param: None,
            query_dims: None,
            delete: false,
            residual: None,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
            shard_metrics: Default::default(),
        }
    }

    /// A DELETE of the rows `filter` selects: outputs one `count` row when executed, or the
    /// deleted rows' columns of `returning`.
    pub fn deleting(
        source: Arc<dyn CollectionSource>,
        filter: Option<Filter>,
        returning: Option<SchemaRef>,
    ) -> Result<Self> {
        let (schema, columns) = match returning {
            Some(visible) => {
                let names = visible.fields().iter().map(|f| f.name().clone()).collect();
                (visible, names)
            }
            None => (count_batch(0)?.schema(), Vec::new()),
        };
        let mut exec = CollectionScanExec::new(source, schema, columns, filter);
        exec.delete = true;
        Ok(exec)
    }

    /// The same scan answering `request` (whose filter and projection are the scan's).
    pub fn searching(&self, request: SearchRequest, query_param: Option<Arc<ScalarUDF>>) -> Self {
        let mut scan = CollectionScanExec::new(
            self.source.clone(),
            self.schema.clone(),
            self.columns.clone(),
            self.filter.clone(),
        );
        if query_param.is_some() {
            let schema = self.source.schema();
            scan.query_dims = schema.vector_spec(&request.column).ok().map(|s| s.dims);
        }
        scan.search = Some(request);
        scan.query_param = query_param;
        scan
    }
}

/// The `ExecutionPlan` methods of a leaf plan with no expressions of its own (the collection
/// scans, searches, deletes and updates), whose `properties` field holds its properties.
macro_rules! leaf_plan_methods {
    () => {
        fn properties(&self) -> &std::sync::Arc<datafusion::physical_plan::PlanProperties> {
            &self.properties
        }

        fn children(&self) -> Vec<&std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
            vec![]
        }

        fn apply_expressions(
            &self,
            _f: &mut dyn FnMut(
                &std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>,
            ) -> datafusion::error::Result<
                datafusion::common::tree_node::TreeNodeRecursion,
            >,
        ) -> datafusion::error::Result<datafusion::common::tree_node::TreeNodeRecursion> {
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        }

        fn replace_children(
            self: std::sync::Arc<Self>,
            _: Vec<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>,
            _: datafusion::physical_plan::ReplaceChildrenOptions,
        ) -> datafusion::error::Result<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>
        {
            Ok(self)
        }

        fn with_new_children(
            self: std::sync::Arc<Self>,
            children: Vec<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>,
        ) -> datafusion::error::Result<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>
        {
            self.replace_children(
                children,
                datafusion::physical_plan::ReplaceChildrenOptions::new(
                    datafusion::physical_plan::ChildrenPropertiesMode::Recompute,
                ),
            )
        }
    };
}
pub(crate) use leaf_plan_methods;

/// Plan properties of a leaf that produces one unordered, bounded partition.
pub fn single_partition(schema: SchemaRef) -> PlanProperties {
    PlanProperties::new(
        EquivalenceProperties::new(schema),
        Partitioning::UnknownPartitioning(1),
        EmissionType::Incremental,
        Boundedness::Bounded,
    )
}

impl DisplayAs for CollectionScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: columns=[{}]", self.name(), self.columns.join(", "))?;
        if let Some(r) = &self.search {
            let metric = r.metric.map_or("?", |m| m.name());
            write!(
                f,
                ", column={}, metric={metric}, k={}, ef={}, exact={}",
                r.column, r.k, r.ef, r.exact
            )?;
        }
        if let Some(filter) = &self.filter {
            write!(f, ", filter={filter:?}")?;
        }
        let shards = self.source.shards();
        if shards > 1 {
            // Each shard answers; searches keep the k nearest of their answers.
            write!(f, ", shards={shards}")?;
        }
        Ok(())
    }
}

impl CollectionScanExec {
    /// What `execute` streams: the scan's, search's or delete's batches, worked out at once.
    /// A read of shards on other nodes is awaited with no thread held (a shard without a
    /// leader holds up this statement alone); a DELETE's waits on other nodes free their
    /// thread first.
    pub async fn batches(&self, context: &TaskContext) -> Result<Vec<RecordBatch>> {
        let read = crate::knn::read_consistency(context);
        Ok(match &self.search {
            _ if self.delete => self.delete_batches()?,
            None => {
                let (batches, traces) = self
                    .source
                    .scan_traced_async(Some(&self.columns), self.filter.as_ref(), read)
                    .await?;
                self.record(&traces);
                batches
            }
            Some(request) => {
                let request = match &self.query_param {
                    None => Cow::Borrowed(request),
                    Some(param) => Cow::Owned(self.with_query_vector(request, param)?),
                };
                let (hits, traces) = self.source.search_traced_async(&request, read).await?;
                self.record(&traces);
                let hits = without_distance(hits)?;
                vec![hits.with_schema(self.schema.clone())?]
            }
        })
    }

    /// A DELETE's answer: its count, or with RETURNING the rows it deleted.
    fn delete_batches(&self) -> Result<Vec<RecordBatch>> {
        let (source, filter) = (self.source.as_ref(), self.filter.as_ref());
        let residual = self.residual.as_ref();
        if self.columns.is_empty() {
            Ok(vec![count_batch(delete_where(source, filter, residual)?)?])
        } else {
            delete_returning(source, filter, residual, &self.schema)
        }
    }

    /// `request` with the query vector its parameter holds for this execution.
    fn with_query_vector(
        &self,
        request: &SearchRequest,
        param: &ScalarUDF,
    ) -> Result<SearchRequest> {
        let dims = match self.query_dims {
            Some(dims) => dims,
            None => {
                let schema = self.source.schema();
                let spec = schema.vector_spec(&request.column);
                spec.map_err(crate::collection::storage_error)?.dims
            }
        };
        let mut request = request.clone();
        request.vector = crate::knn::param_vector(param, dims)?;
        Ok(request)
    }

    /// Adds each shard's rows and time to the plan's metrics (`shard0_rows`, `shard0_time`,
    /// …), which `EXPLAIN ANALYZE` prints.
    fn record(&self, traces: &[crate::collection::ShardTrace]) {
        let mut shards = self
            .shard_metrics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (i, trace) in traces.iter().enumerate() {
            if i == shards.len() {
                shards.push((
                    MetricBuilder::new(&self.metrics).counter(format!("shard{i}_rows"), 0),
                    MetricBuilder::new(&self.metrics).subset_time(format!("shard{i}_time"), 0),
                ));
            }
            let (rows, time) = &shards[i];
            rows.add(trace.rows);
            time.add_duration(trace.elapsed);
        }
    }
}

impl ExecutionPlan for CollectionScanExec {
    fn name(&self) -> &'static str {
        match (&self.search, self.delete) {
            (_, true) => "CollectionDeleteExec",
            (Some(_), _) => "CollectionSearchExec",
            (None, _) => "CollectionScanExec",
        }
    }

    leaf_plan_methods!();

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        _partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        // The work starts when the stream is first polled, on the statement's task.
        let node = self.clone();
        let batches = futures::stream::once(async move { node.batches(&context).await })
            .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            batches,
        )))
    }
}
