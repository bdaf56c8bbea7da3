//! `CREATE INDEX … USING hnsw (column opclass) WITH (m = …, ef_construction = …)`: pgvector's
//! way to say how a vector column is searched. The column's metric and HNSW parameters change
//! through the collection's log (`Command::SetIndex`), then every segment's graph is built
//! again, which the statement waits for — as PostgreSQL's CREATE INDEX does.
//!
//! Indexes on other columns are accepted and change nothing: filters are evaluated in storage
//! while scanning or searching.

use datafusion::sql::sqlparser::ast::{BinaryOperator, CreateIndex, Expr, IndexType, Value};
use pgwire::api::results::{Response, Tag};
use pgwire::error::PgWireResult;
use vecraft_storage::command::Command;
use vecraft_storage::distance::Metric;
use vecraft_storage::schema::{ColumnType, HnswParams};

use crate::errors::{to_pg, user_error};
use crate::session::Session;

impl Session {
    pub(crate) async fn create_index(&self, create: &CreateIndex) -> PgWireResult<Response> {
        let done = || Ok(Response::Execution(Tag::new("CREATE INDEX")));
        let name = crate::idents::table_name(&create.table_name)?;
        let collection = self.collection(&name)?;
        let [column] = create.columns.as_slice() else {
            return done(); // a multi-column (btree) index: nothing to build
        };
        let method = match &create.using {
            None => "btree".to_string(),
            Some(IndexType::Custom(name)) => name.to_string().to_lowercase(),
            Some(other) => other.to_string().to_lowercase(),
        };
        let schema = collection.schema();
        let column_name = match &column.column.expr {
            Expr::Identifier(i) => crate::idents::ident(i),
            expression => return expression_index(expression, &schema, &method, column),
        };
        let Ok(def) = schema.column(&column_name) else {
            return Err(user_error(
                "42703",
                format!("column \"{column_name}\" does not exist"),
            ));
        };
        if def.ty == ColumnType::VectorUnsized && (method == "hnsw" || method == "ivfflat") {
            // pgvector's words: a graph needs one dimension for all its vectors.
            return Err(user_error("XX000", "column does not have dimensions"));
        }
        if let (ColumnType::Bit { varying, .. }, "hnsw") = (def.ty, method.as_str()) {
            // Bit strings are searched exactly too; pgvector's two classes for them, on a
            // column of one length.
            if varying {
                return Err(user_error("0A000", "type not supported for hnsw index"));
            }
            let class = column
                .operator_class
                .as_ref()
                .map(|c| c.to_string().to_lowercase());
            return match class.as_deref() {
                Some("bit_hamming_ops" | "bit_jaccard_ops") => done(),
                Some(class) => Err(user_error(
                    "42704",
                    format!("operator class \"{class}\" does not exist for access method \"hnsw\""),
                )),
                None => Err(user_error(
                    "42704",
                    "data type bit has no default operator class for access method \"hnsw\"",
                )),
            };
        }
        if matches!(def.ty, ColumnType::SparseVec(_)) && method == "hnsw" {
            // Sparse vectors are searched exactly, which answers what the index would (and
            // better): the index is accepted as GIN indexes are, its class checked.
            if let Some(class) = &column.operator_class {
                operator_class(&class.to_string().to_lowercase(), &method, "sparsevec")?;
            }
            return done();
        }
        let ColumnType::Vector(spec) = def.ty else {
            return done();
        };
        let type_name = spec.element.type_name();
        if method == "btree" {
            // pgvector's default btree class (`vector_ops`): accepted, as indexes on other
            // columns are; vectors compare without it.
            return done();
        }
        if method != "hnsw" && method != "ivfflat" {
            return Err(user_error(
                "42704",
                format!(
                    "data type {type_name} has no default operator class for access method \"{method}\""
                ),
            ));
        }
        let metric = match &column.operator_class {
            None => Metric::L2,
            Some(class) => operator_class(&class.to_string().to_lowercase(), &method, type_name)?,
        };
        let hnsw = with_options(&create.with)?;
        if self.catalog.is_cluster() {
            return Err(user_error(
                "0A000",
                "CREATE INDEX on a collection in a cluster is not supported yet: create it \
                 with CREATE COLLECTION, whose vector columns are indexed from the start",
            ));
        }
        let command = Command::SetIndex {
            column: column_name,
            metric,
            hnsw,
        };
        let storage = |e| to_pg(&vecraft_planner::collection::storage_error(e));
        let c = collection.clone();
        tokio::task::spawn_blocking(move || {
            // Seal what is loaded first, while the column is still unindexed (no graph is
            // built for it), so the whole index is built once, by the compaction.
            c.checkpoint()?;
            c.write(&command)?;
            c.reindex()
        })
        .await
        .map_err(|e| user_error("XX000", format!("index build stopped: {e}")))?
        .map_err(storage)?;
        self.catalog.touch();
        done()
    }
}

/// An index on an expression (`((metadata->>'k'))`, pgvector's
/// `((binary_quantize(embedding)::bit(3)) bit_hamming_ops)`): accepted once the columns it
/// reads exist and its operator class is one of pgvector's; filters and searches compute the
/// expression on the rows they read (a search over it is exact).
fn expression_index(
    expression: &Expr,
    schema: &vecraft_storage::schema::CollectionSchema,
    method: &str,
    column: &datafusion::sql::sqlparser::ast::IndexColumn,
) -> PgWireResult<Response> {
    let mut missing = None;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(expression, |e: &Expr| {
        if let Expr::Identifier(i) = e {
            let name = crate::idents::ident(i);
            if schema.column(&name).is_err() {
                missing = Some(name);
                return std::ops::ControlFlow::Break(());
            }
        }
        std::ops::ControlFlow::Continue(())
    });
    if let Some(name) = missing {
        let message = format!("column \"{name}\" does not exist");
        return Err(user_error("42703", message));
    }
    if let (true, Some(class)) = (method == "hnsw", &column.operator_class) {
        let class = class.to_string().to_lowercase();
        let known = ["vector", "halfvec", "sparsevec", "bit"].iter().any(|t| {
            class
                .strip_prefix(t)
                .is_some_and(|rest| rest.starts_with('_'))
        });
        if !known || !class.ends_with("_ops") {
            let message =
                format!("operator class \"{class}\" does not exist for access method \"{method}\"");
            return Err(user_error("42704", message));
        }
    }
    Ok(Response::Execution(Tag::new("CREATE INDEX")))
}

/// `WITH (m = 16, ef_construction = 64)`, checked as pgvector checks them.
fn with_options(options: &[Expr]) -> PgWireResult<HnswParams> {
    let mut params = HnswParams::default();
    for option in options {
        let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = option
        else {
            return Err(user_error(
                "42601",
                format!("invalid index option: {option}"),
            ));
        };
        let name = left.to_string().to_lowercase();
        let value = match right.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => n.parse::<usize>().ok(),
                Value::SingleQuotedString(s) => s.parse::<usize>().ok(),
                _ => None,
            },
            _ => None,
        };
        let Some(value) = value else {
            return Err(user_error(
                "22023",
                format!("invalid value for integer option \"{name}\": {right}"),
            ));
        };
        match name.as_str() {
            "m" => params.m = value,
            "ef_construction" => params.ef_construction = value,
            // ivfflat's option: there are no lists in an HNSW graph.
            "lists" => {}
            _ => {
                return Err(user_error(
                    "22023",
                    format!("unrecognized parameter \"{name}\""),
                ));
            }
        }
    }
    checked(params)
}

/// `params` if pgvector would accept them, else its 22023 message.
pub(crate) fn checked(params: HnswParams) -> PgWireResult<HnswParams> {
    params.validate().map_err(|e| {
        let message = e.to_string();
        let message = message.trim_start_matches("invalid argument: ").to_string();
        crate::errors::option_error(message)
    })?;
    Ok(params)
}

/// The metric of pgvector's operator class `class` (`vector_l2_ops`, `halfvec_cosine_ops`, …)
/// on a column of `type_name`: 42704 for no such class, 42804 for another type's.
fn operator_class(class: &str, method: &str, type_name: &str) -> PgWireResult<Metric> {
    let unknown = || {
        let message =
            format!("operator class \"{class}\" does not exist for access method \"{method}\"");
        user_error("42704", message)
    };
    let (class_type, metric) = match class.split_once('_') {
        Some((t @ ("vector" | "halfvec" | "sparsevec"), rest)) => (t, format!("vector_{rest}")),
        _ => return Err(unknown()),
    };
    let metric = Metric::parse(&metric).map_err(|_| unknown())?;
    if class_type != type_name {
        let message = format!("operator class \"{class}\" does not accept data type {type_name}");
        return Err(user_error("42804", message));
    }
    Ok(metric)
}
