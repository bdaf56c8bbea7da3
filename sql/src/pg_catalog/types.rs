//! PostgreSQL's built-in types as drivers see them (OIDs, names, `format_type`), and the OIDs
//! Vecraft gives its own objects.

use vecraft_storage::schema::{ArrayElement, ColumnType, VectorElement};

use crate::encode::{HALFVEC_OID, SPARSEVEC_OID, VECTOR_OID};

pub const PG_CATALOG_NAMESPACE: u32 = 11;
pub const PUBLIC_NAMESPACE: u32 = 2200;
/// `information_schema`'s OID (PostgreSQL assigns it at initdb; this is Vecraft's).
pub const INFORMATION_SCHEMA_NAMESPACE: u32 = 13_000;
pub(super) const PLPGSQL_EXTENSION_OID: u32 = 13_542;
/// `pg_extension`'s own OID, the `classoid` of comments on extensions.
pub(super) const PG_EXTENSION_CLASS: u32 = 3079;
pub(super) const VECTOR_EXTENSION_OID: u32 = 16384;
/// pgvector's version whose SQL behaviour Vecraft follows.
pub const PGVECTOR_VERSION: &str = "0.8.6";

/// The server version clients see: a PostgreSQL 16 they can parse, and what it really is.
pub fn version_string() -> String {
    format!(
        "PostgreSQL 16.6 (Vecraft {}) on {}-{}, 64-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

/// Built-in types: (oid, name, length, array type oid, category).
pub(super) const TYPES: &[(u32, &str, i16, u32, char)] = &[
    (16, "bool", 1, 1000, 'B'),
    (17, "bytea", -1, 1001, 'U'),
    (18, "char", 1, 1002, 'Z'),
    (19, "name", 64, 1003, 'S'),
    (20, "int8", 8, 1016, 'N'),
    (21, "int2", 2, 1005, 'N'),
    (23, "int4", 4, 1007, 'N'),
    (25, "text", -1, 1009, 'S'),
    (26, "oid", 4, 1028, 'N'),
    (114, "json", -1, 199, 'U'),
    (700, "float4", 4, 1021, 'N'),
    (701, "float8", 8, 1022, 'N'),
    (705, "unknown", -2, 0, 'X'),
    (1042, "bpchar", -1, 1014, 'S'),
    (1043, "varchar", -1, 1015, 'S'),
    (1082, "date", 4, 1182, 'D'),
    (1083, "time", 8, 1183, 'D'),
    (1114, "timestamp", 8, 1115, 'D'),
    (1184, "timestamptz", 8, 1185, 'D'),
    (1560, "bit", -1, 1561, 'V'),
    (1562, "varbit", -1, 1563, 'V'),
    (1700, "numeric", -1, 1231, 'N'),
    (2950, "uuid", 16, 2951, 'U'),
    (3802, "jsonb", -1, 3807, 'U'),
    (VECTOR_OID, "vector", -1, VECTOR_OID + 1, 'U'),
    (HALFVEC_OID, "halfvec", -1, HALFVEC_OID + 1, 'U'),
    (SPARSEVEC_OID, "sparsevec", -1, SPARSEVEC_OID + 1, 'U'),
];

/// Array types of the built-ins: (oid, name, element oid).
pub(super) fn array_types() -> impl Iterator<Item = (u32, String, u32)> {
    TYPES
        .iter()
        .filter(|t| t.3 != 0)
        .map(|t| (t.3, format!("_{}", t.1), t.0))
}

/// The OID of a type name as `to_regtype` reads it (`vector`, `public.vector`, `integer`, …).
pub fn type_oid(name: &str) -> Option<u32> {
    let name = name.trim().to_lowercase();
    let name = name
        .strip_prefix("pg_catalog.")
        .or_else(|| name.strip_prefix("public."))
        .unwrap_or(&name);
    let canonical = match name {
        "boolean" => "bool",
        "bigint" => "int8",
        "smallint" => "int2",
        "integer" | "int" => "int4",
        "real" => "float4",
        "double precision" => "float8",
        "character varying" => "varchar",
        "character" => "bpchar",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        other => other,
    };
    TYPES
        .iter()
        .find(|t| t.1 == canonical)
        .map(|t| t.0)
        .or_else(|| array_types().find(|a| a.1 == canonical).map(|a| a.0))
}

/// How `format_type` prints a type: SQL's names, `vector(n)` for vectors.
pub fn format_type(oid: u32, typmod: i32) -> Option<String> {
    Some(match oid {
        VECTOR_OID if typmod > 0 => format!("vector({typmod})"),
        HALFVEC_OID if typmod > 0 => format!("halfvec({typmod})"),
        SPARSEVEC_OID if typmod > 0 => format!("sparsevec({typmod})"),
        1560 if typmod > 0 => format!("bit({typmod})"),
        1562 if typmod > 0 => format!("bit varying({typmod})"),
        1562 => "bit varying".into(),
        1043 if typmod > 4 => format!("character varying({})", typmod - 4),
        1700 if typmod >= 4 => {
            let typmod = typmod - 4;
            format!("numeric({},{})", typmod >> 16, typmod & 0xffff)
        }
        1082 => "date".into(),
        1700 => "numeric".into(),
        1000 => "boolean[]".into(),
        1007 => "integer[]".into(),
        1016 => "bigint[]".into(),
        1021 => "real[]".into(),
        1022 => "double precision[]".into(),
        1009 => "text[]".into(),
        16 => "boolean".into(),
        20 => "bigint".into(),
        21 => "smallint".into(),
        23 => "integer".into(),
        700 => "real".into(),
        701 => "double precision".into(),
        1043 => "character varying".into(),
        1114 => "timestamp without time zone".into(),
        1184 => "timestamp with time zone".into(),
        _ => {
            let t = TYPES.iter().find(|t| t.0 == oid);
            match t {
                Some(t) => t.1.to_string(),
                None => array_types().find(|a| a.0 == oid)?.1,
            }
        }
    })
}

/// The PostgreSQL type (oid, typmod) of a collection column.
pub(super) fn column_type(ty: &ColumnType) -> (u32, i32) {
    match ty {
        ColumnType::Int32 => (23, -1),
        ColumnType::Int64 => (20, -1),
        ColumnType::Float32 => (700, -1),
        ColumnType::Float64 => (701, -1),
        ColumnType::Bool => (16, -1),
        ColumnType::Text => (25, -1),
        // typmods as PostgreSQL keeps them: varchar's n + 4, numeric's (p << 16 | s) + 4
        ColumnType::Varchar(n) => (1043, n.map_or(-1, |n| n as i32 + 4)),
        ColumnType::Numeric(spec) => (
            1700,
            spec.map_or(-1, |s| {
                ((i32::from(s.precision) << 16) | i32::from(s.scale)) + 4
            }),
        ),
        ColumnType::Timestamp => (1114, -1),
        ColumnType::TimestampTz => (1184, -1),
        ColumnType::Date => (1082, -1),
        ColumnType::Array(element) => (array_oid(element), -1),
        ColumnType::Json => (114, -1),
        ColumnType::Jsonb => (3802, -1),
        ColumnType::Uuid => (2950, -1),
        ColumnType::Vector(spec) => match spec.element {
            VectorElement::Float32 => (VECTOR_OID, spec.dims as i32),
            VectorElement::Float16 => (HALFVEC_OID, spec.dims as i32),
        },
        ColumnType::VectorUnsized => (VECTOR_OID, -1),
        ColumnType::SparseVec(dims) => (SPARSEVEC_OID, dims.map_or(-1, |n| n as i32)),
        ColumnType::Bit { length, varying } => (
            if *varying { 1562 } else { 1560 },
            length.map_or(-1, |n| n as i32),
        ),
    }
}

/// The OID of the array type of `element`.
fn array_oid(element: &ArrayElement) -> u32 {
    match element {
        ArrayElement::Bool => 1000,
        ArrayElement::Int32 => 1007,
        ArrayElement::Int64 => 1016,
        ArrayElement::Float64 => 1022,
        ArrayElement::Text => 1009,
    }
}

/// The OIDs PostgreSQL gives its own catalog tables, for `'pg_class'::regclass`.
pub fn catalog_table_oid(name: &str) -> Option<u32> {
    Some(match name {
        "pg_type" => 1247,
        "pg_attribute" => 1249,
        "pg_proc" => 1255,
        "pg_class" => 1259,
        "pg_database" => 1262,
        "pg_am" => 2601,
        "pg_constraint" => 2606,
        "pg_description" => 2609,
        "pg_index" => 2610,
        "pg_namespace" => 2615,
        "pg_extension" => 3079,
        _ => return None,
    })
}

/// The OID of a schema made by CREATE SCHEMA: a hash of its name, as [`table_oid`].
pub fn schema_oid(name: &str) -> u32 {
    match name {
        "public" => PUBLIC_NAMESPACE,
        "pg_catalog" => PG_CATALOG_NAMESPACE,
        "information_schema" => INFORMATION_SCHEMA_NAMESPACE,
        _ => 0x2000_0000 | (crc32c::crc32c(name.as_bytes()) & 0x1fff_ffff),
    }
}

/// A collection's OID: a hash of its name, so every gateway and restart agrees.
pub fn table_oid(name: &str) -> u32 {
    0x4000_0000 | (crc32c::crc32c(name.as_bytes()) & 0x3fff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_resolve_as_postgres_does() {
        assert_eq!(type_oid("vector"), Some(VECTOR_OID));
        assert_eq!(type_oid("public.vector"), Some(VECTOR_OID));
        assert_eq!(type_oid("integer"), Some(23));
        assert_eq!(type_oid("_vector"), Some(VECTOR_OID + 1));
        assert_eq!(type_oid("nope"), None);
        assert_eq!(format_type(VECTOR_OID, 384).as_deref(), Some("vector(384)"));
        assert_eq!(format_type(20, -1).as_deref(), Some("bigint"));
    }
}
