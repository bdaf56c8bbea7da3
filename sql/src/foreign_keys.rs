//! `REFERENCES` and `FOREIGN KEY (…) REFERENCES` of `CREATE TABLE`, read and checked against
//! the catalog as PostgreSQL checks them, and the rule that a referenced table is dropped only
//! with `CASCADE`. What a key does to writes is the planner's `foreign_keys.rs`.
//!
//! A key is one column referencing one column (by default the referenced table's primary
//! key) of an integer, text or uuid type. `ON DELETE` may be `NO ACTION`, `RESTRICT`,
//! `CASCADE` or `SET NULL`; what is not kept (`SET DEFAULT`, keys of several columns, `ON
//! UPDATE` actions other than the default) is refused with 0A000 rather than ignored.

use datafusion::sql::sqlparser::ast::{
    ColumnOption, CreateTable, ForeignKeyConstraint, ReferentialAction, TableConstraint,
};
use pgwire::error::{PgWireError, PgWireResult};
use vecraft_storage::schema::{CollectionSchema, ColumnType, ForeignKey, OnDelete};

use crate::catalog::Catalog;
use crate::errors::{detailed_error, user_error};
use crate::idents::{ident, shown, table_name};

/// The foreign keys `create` declares for table `table` (its catalog name, `schema` its
/// columns), each checked: the referenced table and column exist (the table itself may be
/// referenced) and the two columns' types compare.
pub fn declared(
    create: &CreateTable,
    table: &str,
    schema: &CollectionSchema,
    catalog: &Catalog,
) -> PgWireResult<Vec<ForeignKey>> {
    let mut declared: Vec<(Option<String>, Vec<String>, &ForeignKeyConstraint)> = Vec::new();
    for column in &create.columns {
        for option in &column.options {
            if let ColumnOption::ForeignKey(fk) = &option.option {
                let name = option.name.as_ref().or(fk.name.as_ref()).map(ident);
                declared.push((name, vec![ident(&column.name)], fk));
            }
        }
    }
    for constraint in &create.constraints {
        if let TableConstraint::ForeignKey(fk) = constraint {
            let columns = fk.columns.iter().map(ident).collect();
            declared.push((fk.name.as_ref().map(ident), columns, fk));
        }
    }
    declared
        .into_iter()
        .map(|(name, columns, fk)| one_key(name, &columns, fk, table, schema, catalog))
        .collect()
}

fn one_key(
    name: Option<String>,
    columns: &[String],
    fk: &ForeignKeyConstraint,
    table: &str,
    schema: &CollectionSchema,
    catalog: &Catalog,
) -> PgWireResult<ForeignKey> {
    let ([column], [] | [_]) = (columns, fk.referred_columns.as_slice()) else {
        return Err(user_error(
            "0A000",
            "foreign keys of more than one column are not supported",
        ));
    };
    let parent = table_name(&fk.foreign_table)?;
    let parent_schema = if parent == table {
        schema.clone()
    } else {
        let missing = format!("relation \"{}\" does not exist", shown(&parent));
        catalog
            .get(&parent)
            .ok_or_else(|| without_position(user_error("42P01", missing)))?
            .schema()
            .as_ref()
            .clone()
    };
    let referenced = match fk.referred_columns.first() {
        Some(c) => ident(c),
        None if parent_schema.hidden_key => {
            let message = format!(
                "there is no primary key for referenced table \"{}\"",
                shown(&parent)
            );
            return Err(user_error("42830", message));
        }
        None => parent_schema.primary_key().name.clone(),
    };
    let not_found = |c: &str| {
        let message = format!("column \"{c}\" referenced in foreign key constraint does not exist");
        without_position(user_error("42703", message))
    };
    let own_type = schema.column(column).map_err(|_| not_found(column))?.ty;
    let parent_type = parent_schema
        .column(&referenced)
        .map_err(|_| not_found(&referenced))?
        .ty;
    let name = name.unwrap_or_else(|| format!("{}_{column}_fkey", shown(table)));
    if family(own_type).is_none() || family(own_type) != family(parent_type) {
        let detail = format!(
            "Key columns \"{column}\" of the referencing table and \"{referenced}\" of the \
             referenced table are of incompatible types: {} and {}.",
            type_name(own_type),
            type_name(parent_type)
        );
        let message = format!("foreign key constraint \"{name}\" cannot be implemented");
        return Err(detailed_error("42804", message, detail, None));
    }
    if !matches!(
        fk.on_update,
        None | Some(ReferentialAction::NoAction | ReferentialAction::Restrict)
    ) {
        return Err(user_error("0A000", "ON UPDATE actions are not supported"));
    }
    let on_delete = match fk.on_delete {
        None | Some(ReferentialAction::NoAction) => OnDelete::NoAction,
        Some(ReferentialAction::Restrict) => OnDelete::Restrict,
        Some(ReferentialAction::Cascade) => OnDelete::Cascade,
        Some(ReferentialAction::SetNull) => OnDelete::SetNull,
        Some(ReferentialAction::SetDefault) => {
            return Err(user_error(
                "0A000",
                "ON DELETE SET DEFAULT is not supported",
            ));
        }
    };
    Ok(ForeignKey {
        name,
        column: column.clone(),
        table: parent,
        referenced,
        on_delete,
    })
}

/// The kinds of value a key compares: integers of any width, text of any length, uuids.
fn family(ty: ColumnType) -> Option<u8> {
    match ty {
        ColumnType::Int32 | ColumnType::Int64 => Some(0),
        ColumnType::Text | ColumnType::Varchar(_) => Some(1),
        ColumnType::Uuid => Some(2),
        _ => None,
    }
}

fn type_name(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Int32 => "integer",
        ColumnType::Int64 => "bigint",
        ColumnType::Text => "text",
        ColumnType::Varchar(_) => "character varying",
        ColumnType::Uuid => "uuid",
        ColumnType::Float32 => "real",
        ColumnType::Float64 => "double precision",
        ColumnType::Bool => "boolean",
        ColumnType::Timestamp => "timestamp without time zone",
        ColumnType::TimestampTz => "timestamp with time zone",
        ColumnType::Date => "date",
        ColumnType::Numeric(_) => "numeric",
        ColumnType::Json => "json",
        ColumnType::Jsonb => "jsonb",
        ColumnType::Vector(spec) => spec.element.type_name(),
        ColumnType::VectorUnsized => "vector",
        ColumnType::SparseVec(_) => "sparsevec",
        ColumnType::Bit { varying: false, .. } => "bit",
        ColumnType::Bit { varying: true, .. } => "bit varying",
        ColumnType::Array(_) => "array",
    }
}

/// Refuses to drop table `table` while a table not dropped with it (`dropped`) references it,
/// unless `cascade` (which, as in PostgreSQL, takes only the constraint: the referencing
/// table's key no longer checks anything while no table of that name exists).
pub fn check_drop(
    catalog: &Catalog,
    table: &str,
    dropped: &[String],
    cascade: bool,
) -> PgWireResult<()> {
    if cascade {
        return Ok(());
    }
    for (child, collection) in catalog.all() {
        if dropped.contains(&child) {
            continue;
        }
        let schema = collection.schema();
        if let Some(key) = schema.foreign_keys.iter().find(|k| k.table == table) {
            let message = format!(
                "cannot drop table {} because other objects depend on it",
                shown(table)
            );
            let detail = format!(
                "constraint {} on table {} depends on table {}",
                key.name,
                shown(&child),
                shown(table)
            );
            let hint = "Use DROP ... CASCADE to drop the dependent objects too.";
            return Err(detailed_error("2BP01", message, detail, Some(hint)));
        }
    }
    Ok(())
}

/// The tables a `TRUNCATE` of `names` empties: with `cascade`, also every table referencing
/// one of them (and so on); without, a table referenced by one not emptied with it is
/// refused (0A000), as PostgreSQL refuses it.
pub fn truncated(
    catalog: &Catalog,
    mut names: Vec<String>,
    cascade: bool,
) -> PgWireResult<Vec<String>> {
    let referencing: Vec<(String, ForeignKey)> = catalog
        .all()
        .into_iter()
        .flat_map(|(child, c)| {
            let keys = c.schema().foreign_keys.clone();
            keys.into_iter().map(move |k| (child.clone(), k))
        })
        .collect();
    let mut at = 0;
    while at < names.len() {
        let table = names[at].clone();
        for (child, _) in referencing.iter().filter(|(_, k)| k.table == table) {
            if names.contains(child) {
                continue;
            }
            if !cascade {
                let message = "cannot truncate a table referenced in a foreign key constraint";
                let detail = format!(
                    "Table \"{}\" references \"{}\".",
                    shown(child),
                    shown(&table)
                );
                let hint = format!(
                    "Truncate table \"{}\" at the same time, or use TRUNCATE ... CASCADE.",
                    shown(child)
                );
                return Err(detailed_error("0A000", message, detail, Some(&hint)));
            }
            names.push(child.clone());
        }
        at += 1;
    }
    Ok(names)
}

/// `e`, which PostgreSQL sends without a position.
fn without_position(mut e: PgWireError) -> PgWireError {
    if let PgWireError::UserError(info) = &mut e {
        info.position = Some(crate::positions::NOWHERE.to_string());
    }
    e
}
