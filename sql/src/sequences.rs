//! Sequences: where `serial`, `bigserial` and `smallserial` columns, and identity columns
//! (`GENERATED … AS IDENTITY`), get their values.
//!
//! As in PostgreSQL, such a column is an integer column, NOT NULL, whose `DEFAULT` is
//! `nextval('<table>_<column>_seq'::regclass)`: an INSERT that leaves it out (what ORMs and
//! vector stores do for an `id BIGSERIAL PRIMARY KEY`) gets the sequence's next values, and
//! reads them back with `RETURNING id`. The sequence belongs to its column and goes with its
//! table: the default a table plans calls `nextval(table, column)`, so a sequence's name (made
//! unique at CREATE TABLE, [`name_uniquely`]) only matters to a `nextval('name')` written by
//! hand.
//!
//! Values are reserved in blocks, durably (a file in the table's directory on a single node,
//! a row of the meta group in a cluster: `Catalog::reserve`), and handed out from memory. So a
//! value is never given twice, also across gateways and restarts; what a gateway reserved and
//! did not hand out before it stopped is skipped, as PostgreSQL's cached sequences skip
//! values after a crash. Values are unique and, from one gateway, increasing; from several
//! gateways they interleave by block.

use std::sync::Arc;

use datafusion::arrow::array::Int64Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use vecraft_storage::names::split_qualified;
use vecraft_storage::schema::CollectionSchema;

use crate::catalog::Catalog;
use crate::pg_catalog::{Shared, relation_oid};

/// The fewest values one reservation takes (more when one statement needs more).
const BLOCK: u64 = 64;

/// PostgreSQL's name for the sequence of `table`'s `column` (`items_id_seq`), written as
/// `nextval` reads it: schema-qualified outside `public`, quoted where it needs quotes.
pub fn sequence_name(table: &str, column: &str) -> String {
    numbered_sequence_name(table, column, 0)
}

/// The `n`th name PostgreSQL tries for the sequence (`items_id_seq1` when `items_id_seq` is
/// taken, by table `items_id` with column `seq`, say).
fn numbered_sequence_name(table: &str, column: &str, n: usize) -> String {
    let (schema, table) = split_qualified(table);
    let number = if n == 0 { String::new() } else { n.to_string() };
    let name = quote_ident(&format!("{table}_{column}_seq{number}"));
    match schema {
        Some(schema) => format!("{}.{name}", quote_ident(schema)),
        None => name,
    }
}

/// The `DEFAULT` of a serial column whose sequence is `sequence`, as PostgreSQL shows it.
pub fn serial_default(sequence: &str) -> String {
    format!("nextval('{}'::regclass)", sequence.replace('\'', "''"))
}

/// The sequence a serial column's `DEFAULT` (made by [`serial_default`]) draws from.
pub fn default_sequence(default: &str) -> Option<String> {
    let quoted = default
        .strip_prefix("nextval('")?
        .strip_suffix("'::regclass)")?;
    Some(quoted.replace("''", "'"))
}

/// An identifier as PostgreSQL's `quote_ident` writes it: bare when it reads back the same.
fn quote_ident(name: &str) -> String {
    let bare = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if bare {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// Gives each sequence of `schema` (a new table `table`'s) a name no other table's sequence
/// has, as PostgreSQL does: `a_b` + `c` and `a` + `b_c` would both make `a_b_c_seq`.
pub fn name_uniquely(catalog: &Catalog, table: &str, schema: &mut CollectionSchema) {
    let mut taken: Vec<String> = catalog
        .all()
        .iter()
        .flat_map(|(_, c)| sequences_of(&c.schema()))
        .collect();
    for column in &mut schema.columns {
        let Some(default) = column.default.as_deref() else {
            continue;
        };
        if default_sequence(default).is_none() {
            continue;
        }
        let name = (0..)
            .map(|n| numbered_sequence_name(table, &column.name, n))
            .find(|name| !taken.contains(name))
            .expect("some number is free");
        column.default = Some(serial_default(&name));
        taken.push(name);
    }
}

/// The names of the sequences `schema`'s columns draw from.
fn sequences_of(schema: &CollectionSchema) -> Vec<String> {
    let defaults = schema.columns.iter().filter_map(|c| c.default.as_deref());
    defaults.filter_map(default_sequence).collect()
}

impl Catalog {
    /// The table and column whose sequence's name `is_it` picks.
    fn sequence_owner(&self, is_it: impl Fn(&str) -> bool) -> Option<(String, String)> {
        self.all().into_iter().find_map(|(table, collection)| {
            let schema = collection.schema();
            schema.columns.iter().find_map(|c| {
                let default = default_sequence(c.default.as_deref()?)?;
                is_it(&default).then(|| (table.clone(), c.name.clone()))
            })
        })
    }

    /// The next `count` values of the sequence named `sequence`.
    pub fn next_values(&self, sequence: &str, count: usize) -> Result<Vec<i64>> {
        let Some((table, column)) = self.sequence_owner(|name| name == sequence) else {
            return plan_err!("relation \"{sequence}\" does not exist");
        };
        self.next_values_of(&table, &column, count)
    }

    /// The same for the sequence whose OID is `oid` (`nextval('s'::regclass)`: the dialect
    /// pass reads `'s'::regclass` as the relation's OID).
    fn next_values_by_oid(&self, oid: i64, count: usize) -> Result<Vec<i64>> {
        let owner = self.sequence_owner(|name| i64::from(relation_oid(name)) == oid);
        let Some((table, column)) = owner else {
            return plan_err!("could not open relation with OID {oid}");
        };
        self.next_values_of(&table, &column, count)
    }

    /// The next `count` values of the sequence of `table`'s `column`. Each sequence has its
    /// own lock, held while a block is reserved (a file written, or a round trip to the meta
    /// group), so that one sequence waiting holds up no other.
    pub fn next_values_of(&self, table: &str, column: &str, count: usize) -> Result<Vec<i64>> {
        let home = self.sequence_home(table, column)?;
        let block = Arc::clone(self.sequence_blocks.lock().entry(home.clone()).or_default());
        let mut block = block.lock();
        let mut values = Vec::with_capacity(count);
        while values.len() < count {
            if block.is_empty() {
                let wanted = (count - values.len()) as u64;
                let first = self.reserve(&home, wanted.max(BLOCK))?;
                *block = first..first + wanted.max(BLOCK) as i64;
            }
            let take = (count - values.len()).min(block.end.saturating_sub(block.start) as usize);
            values.extend(block.start..block.start + take as i64);
            block.start += take as i64;
        }
        debug_assert_eq!(values.len(), count);
        Ok(values)
    }
}

/// `nextval(sequence)`: the sequence's next value, one per row. A column's default calls it
/// as `nextval(table, column)`, bound to its own column whatever the sequence is named.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NextVal {
    catalog: Shared<Catalog>,
    signature: Signature,
}

/// The `nextval` function of the sessions of `catalog`.
pub fn nextval_udf(catalog: Arc<Catalog>) -> ScalarUDF {
    ScalarUDF::new_from_impl(NextVal {
        catalog: Shared(catalog),
        signature: Signature::one_of(
            vec![
                TypeSignature::Exact(vec![DataType::Utf8]),
                TypeSignature::Exact(vec![DataType::Int64]),
                TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8]),
            ],
            Volatility::Volatile,
        ),
    })
}

impl ScalarUDFImpl for NextVal {
    fn name(&self) -> &str {
        "nextval"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let text = |value: &ColumnarValue| match value {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(text))) => Some(text.clone()),
            _ => None,
        };
        if let [ColumnarValue::Scalar(ScalarValue::Int64(Some(oid)))] = args.args.as_slice() {
            let values = self.catalog.0.next_values_by_oid(*oid, args.number_rows)?;
            return Ok(ColumnarValue::Array(Arc::new(Int64Array::from(values))));
        }
        let names: Option<Vec<String>> = args.args.iter().map(text).collect();
        let values = match names.as_deref() {
            // Named as `serial_default` writes it (`public` is left out there).
            Some([sequence]) => {
                let sequence = sequence.strip_prefix("public.").unwrap_or(sequence);
                self.catalog.0.next_values(sequence, args.number_rows)?
            }
            Some([table, column]) => {
                self.catalog
                    .0
                    .next_values_of(table, column, args.number_rows)?
            }
            _ => return exec_err!("nextval takes the name of a sequence"),
        };
        Ok(ColumnarValue::Array(Arc::new(Int64Array::from(values))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vecraft_storage::names::qualified;

    #[test]
    fn sequences_are_named_as_postgresql_names_them() {
        assert_eq!(sequence_name("items", "id"), "items_id_seq");
        assert_eq!(
            sequence_name(&qualified("shop", "orders"), "n"),
            "shop.orders_n_seq"
        );
        assert_eq!(sequence_name("My Items", "id"), "\"My Items_id_seq\"");
        assert_eq!(sequence_name("it's", "id"), "\"it's_id_seq\"");
        assert_eq!(
            serial_default("items_id_seq"),
            "nextval('items_id_seq'::regclass)"
        );
    }

    #[test]
    fn a_serial_default_gives_back_its_sequence() {
        for sequence in ["items_id_seq", "\"it's_id_seq\"", "s.t_id_seq"] {
            let default = serial_default(sequence);
            assert_eq!(default_sequence(&default).as_deref(), Some(sequence));
        }
        assert_eq!(default_sequence("'{}'"), None);
        assert_eq!(default_sequence("gen_random_uuid()"), None);
    }
}
