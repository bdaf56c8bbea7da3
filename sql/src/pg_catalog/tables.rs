//! The catalog tables, built on each read: static ones (`pg_type`, `pg_namespace`, `pg_roles`,
//! …), those that list the live collections and their indexes (`pg_class`, `pg_attribute`,
//! `pg_index`, `pg_constraint`), and those that are always empty here.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ListArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field};

use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::Result;
use datafusion::datasource::MemTable;
use vecraft_storage::schema::Identity;

use super::columns::*;
use super::extensions::{pg_available_extensions, pg_description, pg_extension};
use super::indexes::{BTREE_AM, HNSW_AM, OPCLASSES, indexes};
use super::types::*;
use vecraft_storage::names::split_qualified;

const HEAP_AM: u32 = 2;
use crate::catalog::Catalog;
use crate::encode::is_pgvector_type;

pub struct PgCatalogSchema {
    pub(super) catalog: Arc<Catalog>,
}

impl std::fmt::Debug for PgCatalogSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgCatalogSchema")
    }
}

/// Catalog tables built from what Vecraft has (`pg_range` has no rows, but drivers read it).
const FILLED_TABLES: &[&str] = &[
    "pg_type",
    "pg_namespace",
    "pg_range",
    "pg_class",
    "pg_attribute",
    "pg_attrdef",
    "pg_extension",
    "pg_database",
    "pg_index",
    "pg_constraint",
    "pg_am",
    "pg_opclass",
    "pg_description",
    "pg_roles",
    "pg_available_extensions",
    "pg_indexes",
    super::shards::VECRAFT_SHARDS,
    super::shards::VECRAFT_REPLICAS,
    super::shards::VECRAFT_NODES,
    super::progress::VECRAFT_BACKUP_PROGRESS,
    super::segments::VECRAFT_SEGMENTS,
];

/// Whether `name` is one of the `pg_catalog` tables served here.
pub(crate) fn is_catalog_table(name: &str) -> bool {
    FILLED_TABLES.contains(&name) || EMPTY_TABLES.contains(&name)
}

/// Catalog tables that are always empty here: Vecraft has no policies, triggers, rules,
/// publications, inheritance, collations or sequence relations.
pub(super) const EMPTY_TABLES: &[&str] = &[
    "pg_policy",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_rel",
    "pg_publication_namespace",
    "pg_inherits",
    "pg_trigger",
    "pg_rewrite",
    "pg_collation",
    "pg_partitioned_table",
    "pg_sequence",
    "pg_foreign_table",
    "pg_auth_members",
    "pg_enum",
];

/// Every catalog table's name: the filled ones, then the empty ones.
pub(super) const CATALOG_TABLES: [&[&str]; 2] = [FILLED_TABLES, EMPTY_TABLES];

#[async_trait]
impl SchemaProvider for PgCatalogSchema {
    fn table_names(&self) -> Vec<String> {
        FILLED_TABLES
            .iter()
            .chain(EMPTY_TABLES)
            .map(|t| t.to_string())
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(live) = super::shards::LiveTable::new(name, Arc::clone(&self.catalog)) {
            return Ok(Some(Arc::new(live)));
        }
        let batch = match name {
            "pg_type" => pg_type(),
            "pg_namespace" => pg_namespace(&self.catalog),
            "pg_range" => table(&[
                ("rngtypid", u32s(vec![])),
                ("rngsubtype", u32s(vec![])),
                ("rngmultitypid", u32s(vec![])),
            ]),
            "pg_class" => pg_class(&self.catalog),
            "pg_attribute" => pg_attribute(&self.catalog),
            "pg_extension" => pg_extension(),
            "pg_database" => pg_database(),
            "pg_index" => pg_index(&self.catalog),
            "pg_constraint" => super::constraints::pg_constraint(&self.catalog),
            "pg_am" => table(&[
                ("oid", u32s(vec![HEAP_AM, BTREE_AM, HNSW_AM])),
                (
                    "amname",
                    strs(vec!["heap".into(), "btree".into(), "hnsw".into()]),
                ),
            ]),
            "pg_description" => pg_description(),
            "pg_opclass" => pg_opclass(),
            "pg_collation" => table(&[
                ("oid", u32s(vec![])),
                ("collname", strs(vec![])),
                ("collnamespace", u32s(vec![])),
            ]),
            "pg_attrdef" => pg_attrdef(&self.catalog),
            "pg_inherits" => table(&[
                ("inhrelid", u32s(vec![])),
                ("inhparent", u32s(vec![])),
                ("inhseqno", i32s(vec![])),
            ]),
            "pg_enum" => table(&[
                ("oid", u32s(vec![])),
                ("enumtypid", u32s(vec![])),
                ("enumsortorder", strs(vec![])),
                ("enumlabel", strs(vec![])),
            ]),
            "pg_roles" => pg_roles(&self.catalog),
            "pg_available_extensions" => pg_available_extensions(),
            "pg_indexes" => pg_indexes(&self.catalog),
            empty if EMPTY_TABLES.contains(&empty) => table(&[("oid", u32s(vec![]))]),
            _ => return Ok(None),
        }?;
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        is_catalog_table(name)
    }
}

/// A row of `pg_type` (every type is a base type, `typtype = 'b'`).
struct TypeRow {
    oid: u32,
    name: String,
    len: i16,
    /// The type of its arrays (0 for an array type).
    array: u32,
    /// An array type's element type (0 for others).
    elem: u32,
    category: char,
    namespace: u32,
}

fn namespace_of(oid: u32) -> u32 {
    match is_pgvector_type(oid) {
        true => PUBLIC_NAMESPACE,
        false => PG_CATALOG_NAMESPACE,
    }
}

fn pg_type() -> Result<RecordBatch> {
    let mut rows: Vec<TypeRow> = TYPES
        .iter()
        .map(|t| TypeRow {
            oid: t.0,
            name: t.1.to_string(),
            len: t.2,
            array: t.3,
            elem: 0,
            category: t.4,
            namespace: namespace_of(t.0),
        })
        .collect();
    rows.extend(array_types().map(|(oid, name, elem)| TypeRow {
        oid,
        name,
        len: -1,
        array: 0,
        elem,
        category: 'A',
        namespace: namespace_of(elem),
    }));
    let n = rows.len();
    table(&[
        ("oid", u32s(rows.iter().map(|r| r.oid).collect())),
        (
            "typname",
            strs(rows.iter().map(|r| r.name.clone()).collect()),
        ),
        (
            "typnamespace",
            u32s(rows.iter().map(|r| r.namespace).collect()),
        ),
        ("typowner", u32s(vec![10; n])),
        ("typlen", i16s(rows.iter().map(|r| r.len).collect())),
        ("typtype", chars(vec![b'b'; n])),
        (
            "typcategory",
            chars(rows.iter().map(|r| r.category as u8).collect()),
        ),
        ("typdelim", strs(vec![",".into(); n])),
        ("typrelid", u32s(vec![0; n])),
        ("typelem", u32s(rows.iter().map(|r| r.elem).collect())),
        ("typarray", u32s(rows.iter().map(|r| r.array).collect())),
        ("typbasetype", u32s(vec![0; n])),
        ("typtypmod", i32s(vec![-1; n])),
        ("typnotnull", bools(vec![false; n])),
        ("typdefault", strs_null(n)),
        // Input and output functions by name (JDBC tells arrays by `typinput = 'array_in'`).
        (
            "typinput",
            strs(
                rows.iter()
                    .map(|r| io_function(&r.name, r.category, "in"))
                    .collect(),
            ),
        ),
        (
            "typoutput",
            strs(
                rows.iter()
                    .map(|r| io_function(&r.name, r.category, "out"))
                    .collect(),
            ),
        ),
        // The default collation for strings (SQLAlchemy's reflection compares it).
        (
            "typcollation",
            u32s(
                rows.iter()
                    .map(|r| if r.category == 'S' { 100 } else { 0 })
                    .collect(),
            ),
        ),
    ])
}

/// A type's input or output function, as PostgreSQL names them (`int4in`, `array_out`, …).
fn io_function(type_name: &str, category: char, way: &str) -> String {
    match category {
        'A' => format!("array_{way}"),
        _ if matches!(
            type_name,
            "vector"
                | "halfvec"
                | "uuid"
                | "jsonb"
                | "date"
                | "time"
                | "timestamp"
                | "timestamptz"
                | "numeric"
                | "json"
        ) =>
        {
            format!("{type_name}_{way}")
        }
        _ => format!("{type_name}{way}"),
    }
}

/// PostgreSQL's own schemas, then those CREATE SCHEMA made.
fn pg_namespace(catalog: &Catalog) -> Result<RecordBatch> {
    let mut names: Vec<String> = ["pg_catalog", "public", "information_schema"]
        .map(String::from)
        .into();
    // public is pg_database_owner's
    let mut owners = vec![10, 6171, 10];
    for schema in catalog.schemas() {
        names.push(schema);
        owners.push(10);
    }
    table(&[
        ("oid", u32s(names.iter().map(|n| schema_oid(n)).collect())),
        ("nspname", strs(names)),
        ("nspowner", u32s(owners)),
    ])
}

/// Tables, then their indexes (relkind `i`).
fn pg_class(catalog: &Catalog) -> Result<RecordBatch> {
    let mut oid = Vec::new();
    let mut name = Vec::new();
    let mut kind = Vec::new();
    let mut am = Vec::new();
    let mut tuples = Vec::new();
    let mut namespace = Vec::new();
    for (table, collection) in catalog.all() {
        oid.push(table_oid(&table));
        let (schema, relname) = split_qualified(&table);
        namespace.push(schema_oid(schema.unwrap_or("public")));
        name.push(relname.to_string());
        kind.push(b'r');
        am.push(HEAP_AM);
        tuples.push(collection.count() as f32);
    }
    let indexes = indexes(catalog);
    let indexed: Vec<u32> = indexes.iter().map(|i| i.table_oid).collect();
    for index in indexes {
        oid.push(index.oid);
        name.push(index.name);
        kind.push(b'i');
        am.push(index.access_method);
        tuples.push(-1.0);
        namespace.push(schema_oid(&index.schema));
    }
    let n = oid.len();
    let has_index = (0..n)
        .map(|i| kind[i] == b'r' && indexed.contains(&oid[i]))
        .collect();
    // PostgreSQL keeps foreign keys with triggers; psql lists them only for such tables.
    let keyed: Vec<u32> = super::constraints::constraints(catalog)
        .iter()
        .filter_map(|c| Some([c.table_oid, c.references?.0]))
        .flatten()
        .collect();
    let has_triggers = (0..n)
        .map(|i| kind[i] == b'r' && keyed.contains(&oid[i]))
        .collect();
    table(&[
        ("oid", u32s(oid)),
        ("relname", strs(name)),
        ("relnamespace", u32s(namespace)),
        ("relowner", u32s(vec![10; n])),
        ("relam", u32s(am)),
        ("relkind", chars(kind)),
        ("relpersistence", chars(vec![b'p'; n])),
        (
            "reltuples",
            Arc::new(datafusion::arrow::array::Float32Array::from(tuples)),
        ),
        ("relhasindex", bools(has_index)),
        ("relispartition", bools(vec![false; n])),
        ("relchecks", i16s(vec![0; n])),
        ("relhastriggers", bools(has_triggers)),
        ("relrowsecurity", bools(vec![false; n])),
        ("relforcerowsecurity", bools(vec![false; n])),
        // No row types of tables are in pg_type here (PostgreSQL has one per table).
        ("reltype", u32s(vec![0; n])),
        ("reloftype", u32s(vec![0; n])),
        ("reltablespace", u32s(vec![0; n])),
        ("relhasrules", bools(vec![false; n])),
        ("reltoastrelid", u32s(vec![0; n])),
        ("relreplident", chars(vec![b'd'; n])),
        ("reloptions", texts_null(n)),
        ("relpartbound", strs_null(n)),
    ])
}

fn pg_index(catalog: &Catalog) -> Result<RecordBatch> {
    let rows = indexes(catalog);
    let n = rows.len();
    let primary: Vec<bool> = rows.iter().map(|r| r.primary).collect();
    table(&[
        ("indexrelid", u32s(rows.iter().map(|r| r.oid).collect())),
        ("indrelid", u32s(rows.iter().map(|r| r.table_oid).collect())),
        ("indisprimary", bools(primary.clone())),
        ("indisunique", bools(primary)),
        ("indisclustered", bools(vec![false; n])),
        ("indisvalid", bools(vec![true; n])),
        ("indisready", bools(vec![true; n])),
        ("indislive", bools(vec![true; n])),
        ("indisreplident", bools(vec![false; n])),
        // The indexed columns' numbers (one each).
        (
            "indkey",
            i16_lists(rows.iter().map(|r| vec![r.column]).collect()),
        ),
        ("indnatts", i16s(vec![1; n])),
        ("indnkeyatts", i16s(vec![1; n])),
        ("indnullsnotdistinct", bools(vec![false; n])),
        (
            "indclass",
            u32_lists(rows.iter().map(|r| vec![r.opclass]).collect()),
        ),
        ("indoption", i16_lists(vec![vec![0]; n])),
        ("indcollation", u32_lists(vec![vec![0]; n])),
        // No index is on an expression or partial: the index keeps neither.
        ("indexprs", strs_null(n)),
        ("indpred", strs_null(n)),
    ])
}

/// The operator classes indexes here use (`indexes.rs`).
fn pg_opclass() -> Result<RecordBatch> {
    let n = OPCLASSES.len();
    let namespace = |c: &(u32, &str, u32, u32, bool)| {
        if is_pgvector_type(c.3) {
            PUBLIC_NAMESPACE
        } else {
            PG_CATALOG_NAMESPACE
        }
    };
    table(&[
        ("oid", u32s(OPCLASSES.iter().map(|c| c.0).collect())),
        ("opcmethod", u32s(OPCLASSES.iter().map(|c| c.2).collect())),
        (
            "opcname",
            strs(OPCLASSES.iter().map(|c| c.1.to_string()).collect()),
        ),
        (
            "opcnamespace",
            u32s(OPCLASSES.iter().map(namespace).collect()),
        ),
        ("opcowner", u32s(vec![10; n])),
        ("opcfamily", u32s(OPCLASSES.iter().map(|c| c.0).collect())),
        ("opcintype", u32s(OPCLASSES.iter().map(|c| c.3).collect())),
        ("opcdefault", bools(OPCLASSES.iter().map(|c| c.4).collect())),
        ("opckeytype", u32s(vec![0; n])),
    ])
}

/// The view of every index with its definition (`pg_get_indexdef`'s text).
fn pg_indexes(catalog: &Catalog) -> Result<RecordBatch> {
    let rows = indexes(catalog);
    let n = rows.len();
    table(&[
        (
            "schemaname",
            strs(rows.iter().map(|r| r.schema.clone()).collect()),
        ),
        (
            "tablename",
            strs(rows.iter().map(|r| r.table.clone()).collect()),
        ),
        (
            "indexname",
            strs(rows.iter().map(|r| r.name.clone()).collect()),
        ),
        ("tablespace", strs_null(n)),
        (
            "indexdef",
            strs(rows.iter().map(|r| r.definition.clone()).collect()),
        ),
    ])
}

/// The roles: the bootstrap superuser (which has every attribute, as `initdb` makes it)
/// and those CREATE ROLE made. `rolpassword` is `********` whatever the role has, as in
/// PostgreSQL's view.
fn pg_roles(catalog: &Catalog) -> Result<RecordBatch> {
    use vecraft_cluster::meta::roles::{self, BOOTSTRAP_OID};
    let roles = roles::all(&catalog.roles());
    let column =
        |f: &dyn Fn(&roles::RoleMeta) -> bool| bools(roles.iter().map(|(_, r)| f(r)).collect());
    let bootstrap = |r: &roles::RoleMeta| r.oid == BOOTSTRAP_OID;
    let valid_until = roles.iter().map(|(_, r)| {
        let micros = r.valid_until_micros?;
        let at = chrono::DateTime::from_timestamp_micros(micros)?;
        Some(at.format("%Y-%m-%d %H:%M:%S%:::z").to_string())
    });
    table(&[
        ("oid", u32s(roles.iter().map(|(_, r)| r.oid).collect())),
        (
            "rolname",
            strs(roles.iter().map(|(n, _)| n.clone()).collect()),
        ),
        ("rolsuper", column(&|r| r.superuser)),
        ("rolinherit", column(&|_| true)),
        ("rolcreaterole", column(&bootstrap)),
        ("rolcreatedb", column(&bootstrap)),
        ("rolcanlogin", column(&|r| r.login)),
        ("rolreplication", column(&bootstrap)),
        ("rolbypassrls", column(&bootstrap)),
        (
            "rolconnlimit",
            i32s(roles.iter().map(|(_, r)| r.connection_limit).collect()),
        ),
        ("rolpassword", strs(vec!["********".into(); roles.len()])),
        (
            "rolvaliduntil",
            Arc::new(StringArray::from_iter(valid_until)),
        ),
    ])
}

fn pg_database() -> Result<RecordBatch> {
    let text = |v: &str| strs(vec![v.into()]);
    table(&[
        ("oid", u32s(vec![5])),
        ("datname", text("postgres")),
        ("datdba", u32s(vec![10])),
        ("encoding", i32s(vec![6])),
        ("datlocprovider", chars(vec![b'c'])),
        ("datcollate", text("C.UTF-8")),
        ("datctype", text("C.UTF-8")),
        ("daticulocale", strs_null(1)),
        ("datlocale", strs_null(1)),
        ("daticurules", strs_null(1)),
        (
            "datacl",
            Arc::new(ListArray::new_null(
                Field::new_list_field(DataType::Utf8, true).into(),
                1,
            )),
        ),
        ("datallowconn", bools(vec![true])),
    ])
}

/// Each column `DEFAULT`: its text stands for PostgreSQL's expression tree (`pg_get_expr`
/// gives it back).
fn pg_attrdef(catalog: &Catalog) -> Result<RecordBatch> {
    let (mut oid, mut rel, mut num, mut text) = (vec![], vec![], vec![], vec![]);
    for (table, c) in catalog.all() {
        let schema = c.schema();
        for (col, attnum) in schema.visible_columns().zip(1..) {
            if let Some(default) = col.shown_default() {
                oid.push(table_oid(&format!("{table}.{attnum}.default")));
                rel.push(table_oid(&table));
                num.push(attnum);
                text.push(default.to_string());
            }
        }
    }
    table(&[
        ("oid", u32s(oid)),
        ("adrelid", u32s(rel)),
        ("adnum", i16s(num)),
        ("adbin", strs(text)),
    ])
}

fn pg_attribute(catalog: &Catalog) -> Result<RecordBatch> {
    let (mut rel, mut name, mut ty, mut typmod, mut num, mut notnull) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut storage = Vec::new();
    let mut has_default = Vec::new();
    let mut identity = Vec::new();
    for (table, c) in catalog.all() {
        let schema = c.schema();
        for (col, attnum) in schema.visible_columns().zip(1..) {
            let (oid, m) = column_type(&col.ty);
            rel.push(table_oid(&table));
            name.push(col.name.clone());
            ty.push(oid);
            typmod.push(m);
            num.push(attnum);
            notnull.push(!col.nullable);
            has_default.push(col.shown_default().is_some());
            identity.push(match col.identity {
                Some(Identity::Always) => "a",
                Some(Identity::ByDefault) => "d",
                None => "",
            });
            // Fixed-width values are stored plain; variable-width ones are extended.
            let fixed = TYPES.iter().any(|t| t.0 == oid && t.2 > 0);
            storage.push(if fixed { b'p' } else { b'x' });
        }
    }
    let n = rel.len();
    table(&[
        ("attrelid", u32s(rel)),
        ("attname", strs(name)),
        ("atttypid", u32s(ty)),
        ("atttypmod", i32s(typmod)),
        ("attnum", i16s(num)),
        ("attnotnull", bools(notnull)),
        ("attisdropped", bools(vec![false; n])),
        ("atthasdef", bools(has_default)),
        (
            "attidentity",
            strs(identity.into_iter().map(String::from).collect()),
        ),
        ("attgenerated", strs(vec![String::new(); n])),
        ("attcollation", u32s(vec![0; n])),
        ("attlen", i16s(vec![-1; n])),
        ("attstorage", chars(storage)),
        ("attcompression", strs(vec![String::new(); n])),
        ("attstattarget", i16s(vec![-1; n])),
    ])
}
