//! The indexes a collection has, as PostgreSQL's catalog shows them: the primary key's
//! (`items_pkey`, a btree in PostgreSQL's eyes) and one HNSW index per indexed vector column
//! (`items_embedding_idx`, with its operator class), for `pg_index`, `pg_class`,
//! `pg_constraint` and `pg_get_indexdef` — what psql's `\d name` prints under "Indexes:".
//!
//! Index names are derived as PostgreSQL derives default names; a name given in CREATE INDEX
//! is not kept.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use vecraft_storage::distance::Metric;
use vecraft_storage::names::split_qualified;
use vecraft_storage::schema::{ColumnType, HnswParams, VectorSpec};

use super::Shared;
use super::types::table_oid;
use crate::catalog::Catalog;
use crate::encode::{HALFVEC_OID, VECTOR_OID};
use crate::idents::quote_ident;

/// PostgreSQL's OIDs of the access methods Vecraft shows.
pub(super) const BTREE_AM: u32 = 403;
pub(super) const HNSW_AM: u32 = 16388;

pub(super) struct IndexRow {
    pub oid: u32,
    pub table_oid: u32,
    /// The indexed table's schema and name.
    pub schema: String,
    pub table: String,
    pub name: String,
    pub primary: bool,
    pub access_method: u32,
    /// The indexed column's number (`pg_attribute.attnum`, from 1): every index here has one.
    pub column: i16,
    /// What `pg_get_indexdef` returns.
    pub definition: String,
    /// The primary key's constraint: its OID and `pg_get_constraintdef`.
    pub constraint: Option<(u32, String)>,
    /// The operator class of its column (`pg_index.indclass`, one of [`OPCLASSES`]).
    pub opclass: u32,
}

/// The operator classes the indexes here use (`pg_opclass`): PostgreSQL's btree classes of
/// the key types, pgvector's HNSW classes. Oid, name, access method, input type OID, and
/// whether it is its type's default for the method.
pub(super) const OPCLASSES: &[(u32, &str, u32, u32, bool)] = &[
    (1978, "int4_ops", BTREE_AM, 23, true),
    (3124, "int8_ops", BTREE_AM, 20, true),
    (3126, "text_ops", BTREE_AM, 25, true),
    (10065, "uuid_ops", BTREE_AM, 2950, true),
    (16390, "vector_l2_ops", HNSW_AM, VECTOR_OID, false),
    (16391, "vector_ip_ops", HNSW_AM, VECTOR_OID, false),
    (16392, "vector_cosine_ops", HNSW_AM, VECTOR_OID, false),
    (16393, "vector_l1_ops", HNSW_AM, VECTOR_OID, false),
    (16402, "halfvec_l2_ops", HNSW_AM, HALFVEC_OID, false),
    (16403, "halfvec_ip_ops", HNSW_AM, HALFVEC_OID, false),
    (16404, "halfvec_cosine_ops", HNSW_AM, HALFVEC_OID, false),
    (16405, "halfvec_l1_ops", HNSW_AM, HALFVEC_OID, false),
];

/// The OID of operator class `name` of access method `am`.
fn opclass_oid(am: u32, name: &str) -> u32 {
    let found = OPCLASSES.iter().find(|c| c.2 == am && c.1 == name);
    found.map_or(0, |c| c.0)
}

/// The btree operator class of a primary key of type `ty`.
fn key_opclass(ty: ColumnType) -> u32 {
    opclass_oid(
        BTREE_AM,
        match ty {
            ColumnType::Int32 => "int4_ops",
            ColumnType::Uuid => "uuid_ops",
            ColumnType::Text | ColumnType::Varchar(_) => "text_ops",
            _ => "int8_ops",
        },
    )
}

/// The `attnum` of the column at `position` of `schema`: columns count from 1, without the
/// hidden row id.
pub(super) fn attnum(schema: &vecraft_storage::schema::CollectionSchema, position: usize) -> i16 {
    let hidden = schema.hidden_key.then_some(schema.primary_key);
    (0..=position).filter(|i| Some(*i) != hidden).count() as i16
}

/// Every index of every collection.
pub(super) fn indexes(catalog: &Catalog) -> Vec<IndexRow> {
    let mut rows = Vec::new();
    for (collection_name, collection) in catalog.all() {
        let schema = collection.schema();
        let table_oid = table_oid(&collection_name);
        let (in_schema, table) = split_qualified(&collection_name);
        let in_schema = in_schema.unwrap_or("public").to_string();
        // `schema.table` as pg_get_indexdef writes it.
        let on = format!("{}.{}", quote_ident(&in_schema), quote_ident(table));
        let table = table.to_string();
        if !schema.hidden_key {
            let key = &schema.columns[schema.primary_key].name;
            let column = attnum(&schema, schema.primary_key);
            let name = format!("{table}_pkey");
            rows.push(IndexRow {
                oid: index_oid(&collection_name, &name),
                table_oid,
                schema: in_schema.clone(),
                table: table.clone(),
                definition: format!(
                    "CREATE UNIQUE INDEX {} ON {on} USING btree ({})",
                    quote_ident(&name),
                    quote_ident(key)
                ),
                constraint: Some((
                    index_oid(&collection_name, "pkey constraint"),
                    format!("PRIMARY KEY ({})", quote_ident(key)),
                )),
                name,
                primary: true,
                access_method: BTREE_AM,
                column,
                opclass: key_opclass(schema.columns[schema.primary_key].ty),
            });
        }
        for (position, column) in schema.columns.iter().enumerate() {
            let ColumnType::Vector(spec) = &column.ty else {
                continue;
            };
            if !schema.is_indexed(&column.name) {
                continue;
            }
            let name = format!("{table}_{}_idx", column.name);
            rows.push(IndexRow {
                oid: index_oid(&collection_name, &name),
                table_oid,
                schema: in_schema.clone(),
                table: table.clone(),
                definition: format!(
                    "CREATE INDEX {} ON {on} USING hnsw ({} {}){}",
                    quote_ident(&name),
                    quote_ident(&column.name),
                    opclass(spec),
                    with_clause(&spec.hnsw)
                ),
                name,
                primary: false,
                access_method: HNSW_AM,
                column: attnum(&schema, position),
                constraint: None,
                opclass: opclass_oid(HNSW_AM, &opclass(spec)),
            });
        }
    }
    rows
}

pub(super) fn index_oid(table: &str, index: &str) -> u32 {
    table_oid(&format!("{table}\u{0}{index}"))
}

/// pgvector's operator class of a column's metric: `vector_l2_ops`, `halfvec_cosine_ops`, ….
fn opclass(spec: &VectorSpec) -> String {
    let metric = match spec.metric {
        Metric::L2 => "l2",
        Metric::Cosine => "cosine",
        Metric::InnerProduct => "ip",
        Metric::L1 => "l1",
    };
    format!("{}_{metric}_ops", spec.element.type_name())
}

/// `WITH (…)` for the parameters that differ from pgvector's defaults, as PostgreSQL prints
/// the options given.
fn with_clause(hnsw: &HnswParams) -> String {
    let defaults = HnswParams::default();
    let mut options = Vec::new();
    if hnsw.m != defaults.m {
        options.push(format!("m='{}'", hnsw.m));
    }
    if hnsw.ef_construction != defaults.ef_construction {
        options.push(format!("ef_construction='{}'", hnsw.ef_construction));
    }
    if options.is_empty() {
        String::new()
    } else {
        format!(" WITH ({})", options.join(", "))
    }
}

/// `pg_get_indexdef(index_oid [, column, pretty])` and `pg_get_constraintdef(oid [, pretty])`,
/// looked up in the live catalog.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct IndexDefUdf {
    catalog: Shared<Catalog>,
    constraint: bool,
    signature: Signature,
}

impl IndexDefUdf {
    pub(super) fn new(catalog: Arc<Catalog>, constraint: bool) -> Self {
        IndexDefUdf {
            catalog: Shared(catalog),
            constraint,
            signature: Signature::variadic_any(Volatility::Stable),
        }
    }

    /// Each (oid, definition) this function looks up: constraints' or indexes'.
    fn definitions(&self) -> Vec<(u32, String)> {
        if self.constraint {
            let rows = super::constraints::constraints(&self.catalog.0);
            rows.into_iter().map(|r| (r.oid, r.definition)).collect()
        } else {
            let rows = indexes(&self.catalog.0);
            rows.into_iter().map(|r| (r.oid, r.definition)).collect()
        }
    }
}

impl ScalarUDFImpl for IndexDefUdf {
    fn name(&self) -> &str {
        if self.constraint {
            "pg_get_constraintdef"
        } else {
            "pg_get_indexdef"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some(oids) = args.args.first() else {
            return plan_err!("{} needs an OID", self.name());
        };
        let oids = cast(&oids.to_array(args.number_rows)?, &DataType::Int64)?;
        let rows = self.definitions();
        let definition = |oid: u32| rows.iter().find(|r| r.0 == oid).map(|r| r.1.clone());
        let defs: StringArray = oids
            .as_primitive::<Int64Type>()
            .iter()
            .map(|oid| definition(oid? as u32))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(defs)))
    }
}
