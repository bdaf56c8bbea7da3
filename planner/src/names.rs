//! Result column names as PostgreSQL gives them.
//!
//! Applications read rows by column name, so `SELECT 1` must name its column `?column?`,
//! `count(*)` must be `count` and `'[1,2]'::vector` must be `vector`, where DataFusion says
//! `Int64(1)`, `count(*)` and `Utf8("[1,2]")`. PostgreSQL derives a name from the expression as
//! written (its parser's `FigureColname`): a column reference gives its name, a function call
//! its function's name, a cast the type's name unless its operand names itself better, and
//! anything else `?column?`. That is computed here from the statement, before planning, and
//! the gateway puts the names into RowDescription.
//!
//! PostgreSQL also allows two result columns of one name (`SELECT 1 AS a, 2 AS a`), which
//! DataFusion's projections refuse: [`output_names`] gives the later ones a private alias for
//! DataFusion, while the client still reads the name it wrote.

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    AccessExpr, CastKind, CeilFloorKind, DataType, ExactNumberInfo, Expr, Ident, ObjectName,
    ObjectNamePart, Query, SelectItem, SetExpr, Statement, TimezoneInfo, UnaryOperator, Value,
};

/// PostgreSQL's name for a column whose expression names nothing.
pub const UNNAMED: &str = "?column?";

/// What each item of `statement`'s SELECT list names its column(s); `None` for statements
/// that return no rows this way. Items whose name an earlier item has get a private alias in
/// `statement`, so DataFusion plans it; [`line_up`] then gives the client's names.
pub fn output_names(statement: &mut DFStatement) -> Option<Vec<ItemName>> {
    let DFStatement::Statement(statement) = statement else {
        return None;
    };
    let items = match statement.as_mut() {
        Statement::Query(query) => projection_mut(query)?,
        // INSERT/UPDATE/DELETE … RETURNING: its list names the columns.
        write => crate::returning::returning_of(write)?.as_mut()?,
    };
    let names = items.iter().map(item_name).collect::<Vec<_>>();
    make_unique(items, &names);
    int4_literals(items);
    Some(names)
}

/// `SELECT 1`: PostgreSQL types an integer literal that fits 32 bits as `integer`, which
/// drivers read as a number (node-postgres reads `bigint` as a string); DataFusion reads
/// every integer literal as `bigint`. A literal that is a whole result column is cast.
fn int4_literals(items: &mut [SelectItem]) {
    for item in items {
        let (SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }) = item else {
            continue;
        };
        let number = match &*expr {
            Expr::Value(v) => &v.value,
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr: inner,
            } => match inner.as_ref() {
                Expr::Value(v) => &v.value,
                _ => continue,
            },
            _ => continue,
        };
        let fits = matches!(number, Value::Number(n, false) if n.parse::<i32>().is_ok());
        if fits {
            *expr = Expr::Cast {
                kind: CastKind::DoubleColon,
                expr: Box::new(expr.clone()),
                data_type: DataType::Int(None),
                array: false,
                format: None,
            };
        }
    }
}

/// The name of each of a result's `width` columns, lined up with the items written: `None`
/// where DataFusion's name is right (a `*` stands for as many columns as are left over, named
/// by their tables). `None` in all when they do not line up (several `*`).
pub fn line_up(names: &[ItemName], width: usize) -> Option<Vec<Option<String>>> {
    let wildcards = names
        .iter()
        .filter(|n| matches!(n, ItemName::Wildcard))
        .count();
    let written = names.len() - wildcards;
    match wildcards {
        0 if written == width => Some(names.iter().map(ItemName::name).collect()),
        1 if written <= width => {
            let mut out = Vec::with_capacity(width);
            for name in names {
                match name {
                    ItemName::Wildcard => out.extend((0..width - written).map(|_| None)),
                    other => out.push(other.name()),
                }
            }
            Some(out)
        }
        _ => None,
    }
}

/// `schema` with the names of [`line_up`] (an Arrow schema may repeat a name; RowDescription
/// is made from it).
pub fn rename(schema: &Schema, names: Option<&[ItemName]>) -> Schema {
    let Some(names) = names.and_then(|n| line_up(n, schema.fields().len())) else {
        return schema.clone();
    };
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(names)
        .map(|(field, name)| match name {
            Some(name) => field.as_ref().clone().with_name(name),
            None => field.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// What one SELECT item names its column(s).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemName {
    /// `*` or `t.*`: the table's columns, named by DataFusion.
    Wildcard,
    /// One column of this name.
    Column(String),
}

impl ItemName {
    pub fn name(&self) -> Option<String> {
        match self {
            ItemName::Wildcard => None,
            ItemName::Column(name) => Some(name.clone()),
        }
    }
}

/// The items of the SELECT list that names `query`'s columns (the first of a set operation).
fn projection_mut(query: &mut Query) -> Option<&mut Vec<SelectItem>> {
    let mut body = query.body.as_mut();
    loop {
        match body {
            SetExpr::Select(select) => return Some(&mut select.projection),
            SetExpr::Query(inner) => body = inner.body.as_mut(),
            SetExpr::SetOperation { left, .. } => body = left.as_mut(),
            _ => return None,
        }
    }
}

fn projection(query: &Query) -> Option<&Vec<SelectItem>> {
    let mut body = query.body.as_ref();
    loop {
        match body {
            SetExpr::Select(select) => return Some(&select.projection),
            SetExpr::Query(inner) => body = inner.body.as_ref(),
            SetExpr::SetOperation { left, .. } => body = left.as_ref(),
            _ => return None,
        }
    }
}

/// What `item` names its column(s).
pub fn item_name(item: &SelectItem) -> ItemName {
    match item {
        SelectItem::UnnamedExpr(expr) => ItemName::Column(figure(expr).0),
        SelectItem::ExprWithAlias { alias, .. } => ItemName::Column(ident(alias)),
        SelectItem::ExprWithAliases { aliases, .. } => {
            ItemName::Column(aliases.first().map_or_else(|| UNNAMED.into(), ident))
        }
        SelectItem::QualifiedWildcard(..) | SelectItem::Wildcard(_) => ItemName::Wildcard,
    }
}

/// Gives every item whose name an earlier item already has a private alias, so DataFusion
/// plans the projection (the client is told the names in `names`). So does every unnamed
/// cast: DataFusion names `c::text` after `c`, the name the column `c` itself has when
/// ORDER BY adds it to the projection.
fn make_unique(items: &mut [SelectItem], names: &[ItemName]) {
    let mut seen = std::collections::HashSet::new();
    for (position, (item, name)) in items.iter_mut().zip(names).enumerate() {
        let ItemName::Column(name) = name else {
            continue;
        };
        let unnamed_cast = matches!(item, SelectItem::UnnamedExpr(Expr::Cast { .. }));
        if seen.insert(name.clone()) && !unnamed_cast {
            continue;
        }
        let alias = Ident::with_quote('"', format!("{name}#{position}"));
        *item = match std::mem::replace(item, SelectItem::Wildcard(Default::default())) {
            SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                SelectItem::ExprWithAlias { expr, alias }
            }
            other => other,
        };
    }
}

/// An identifier as PostgreSQL folds it: unquoted ones to lower case.
pub fn ident(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// The last part of a dotted name (`public.items` → `items`), folded.
pub fn last_part(name: &ObjectName) -> String {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(i)) => ident(i),
        Some(ObjectNamePart::Function(f)) => ident(&f.name),
        None => UNNAMED.into(),
    }
}

/// PostgreSQL's `FigureColname`: the name and its strength (2 for a name the expression
/// has, 1 for a name a cast or CASE gives, 0 for none).
fn figure(expr: &Expr) -> (String, u8) {
    let named = |name: &str| (name.to_string(), 2);
    match expr {
        Expr::Identifier(i) => (ident(i), 2),
        Expr::CompoundIdentifier(parts) => {
            parts.last().map_or((UNNAMED.into(), 0), |i| (ident(i), 2))
        }
        Expr::Function(f) => (last_part(&f.name), 2),
        // `a[1]` is named for `a`; `(x).f` for `f`.
        Expr::CompoundFieldAccess { root, access_chain } => match access_chain.last() {
            Some(AccessExpr::Dot(field)) => figure(field),
            _ => figure(root),
        },
        Expr::Cast {
            expr, data_type, ..
        } => {
            let inner = figure(expr);
            if inner.1 > 1 {
                inner
            } else {
                (type_name(data_type), 1)
            }
        }
        Expr::TypedString(typed) => (type_name(&typed.data_type), 1),
        Expr::Nested(inner) | Expr::Collate { expr: inner, .. } => figure(inner),
        Expr::Case { .. } => ("case".into(), 1),
        Expr::Exists { .. } => named("exists"),
        Expr::Subquery(query) => {
            projection(query)
                .and_then(|items| items.first())
                .map_or((UNNAMED.into(), 0), |item| match item_name(item) {
                    ItemName::Column(name) => (name, 2),
                    ItemName::Wildcard => (UNNAMED.into(), 0),
                })
        }
        Expr::Array(_) => named("array"),
        Expr::Tuple(_) => named("row"),
        Expr::Extract { .. } => named("extract"),
        Expr::Position { .. } => named("position"),
        Expr::Substring { .. } => named("substring"),
        Expr::Trim { .. } => named("btrim"),
        Expr::Overlay { .. } => named("overlay"),
        Expr::Ceil {
            field: CeilFloorKind::DateTimeField(_),
            ..
        } => named("ceil"),
        Expr::Ceil { .. } => named("ceil"),
        Expr::Floor { .. } => named("floor"),
        Expr::AtTimeZone { .. } => named("timezone"),
        Expr::Interval(_) => ("interval".into(), 1),
        _ => (UNNAMED.into(), 0),
    }
}

/// The name PostgreSQL's grammar gives a type written in a cast (`int` is `int4`).
fn type_name(data_type: &DataType) -> String {
    let name = match data_type {
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => "int4",
        DataType::BigInt(_) | DataType::Int8(_) => "int8",
        DataType::SmallInt(_) | DataType::Int2(_) => "int2",
        DataType::Real | DataType::Float4 => "float4",
        DataType::DoublePrecision | DataType::Float8 | DataType::Double(_) => "float8",
        DataType::Float(ExactNumberInfo::Precision(bits)) if *bits <= 24 => "float4",
        DataType::Float(_) => "float8",
        DataType::Bool | DataType::Boolean => "bool",
        DataType::Text => "text",
        DataType::Varchar(_) | DataType::CharacterVarying(_) | DataType::CharVarying(_) => {
            "varchar"
        }
        DataType::Char(_) | DataType::Character(_) => "bpchar",
        DataType::Numeric(_) | DataType::Decimal(_) | DataType::Dec(_) => "numeric",
        DataType::Timestamp(_, TimezoneInfo::Tz | TimezoneInfo::WithTimeZone) => "timestamptz",
        DataType::Timestamp(..) => "timestamp",
        DataType::Time(_, TimezoneInfo::Tz | TimezoneInfo::WithTimeZone) => "timetz",
        DataType::Time(..) => "time",
        DataType::Date => "date",
        DataType::Interval { .. } => "interval",
        DataType::Bytea => "bytea",
        DataType::JSON => "json",
        DataType::JSONB => "jsonb",
        DataType::Uuid => "uuid",
        DataType::Bit(_) => "bit",
        DataType::BitVarying(_) | DataType::VarBit(_) => "varbit",
        DataType::Regclass => "regclass",
        DataType::Custom(name, _) => return last_part(name),
        DataType::Array(_) => return array_element_name(data_type),
        other => return other.to_string().to_lowercase(),
    };
    name.into()
}

/// `int[]` is named for its element type, as PostgreSQL names it.
fn array_element_name(data_type: &DataType) -> String {
    use datafusion::sql::sqlparser::ast::ArrayElemTypeDef;
    match data_type {
        DataType::Array(
            ArrayElemTypeDef::SquareBracket(inner, _)
            | ArrayElemTypeDef::AngleBracket(inner)
            | ArrayElemTypeDef::Parenthesis(inner),
        ) => type_name(inner),
        _ => UNNAMED.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn names(sql: &str) -> Vec<ItemName> {
        let mut statements = DFParser::parse_sql(sql).unwrap();
        let DFStatement::Statement(s) = statements.pop_front().unwrap() else {
            panic!("not a statement")
        };
        let Statement::Query(q) = *s else {
            panic!("not a query")
        };
        projection(&q).unwrap().iter().map(item_name).collect()
    }

    fn col(name: &str) -> ItemName {
        ItemName::Column(name.into())
    }

    #[test]
    fn names_are_postgresqls() {
        assert_eq!(
            names(
                "SELECT 1, count(*), '[1,2]'::vector, id, t.tag, id::text, 1::int, max(x)::bigint"
            ),
            [
                col("?column?"),
                col("count"),
                col("vector"),
                col("id"),
                col("tag"),
                col("id"),
                col("int4"),
                col("max")
            ]
        );
        assert_eq!(
            names(
                "SELECT \"Id\", Upper(x), CASE WHEN a THEN 1 END, (SELECT 1 AS y), a + b, x AS \"X\", Y AS z"
            ),
            [
                col("Id"),
                col("upper"),
                col("case"),
                col("y"),
                col("?column?"),
                col("X"),
                col("z")
            ]
        );
        assert_eq!(
            names("SELECT tags[1], (t.tags)[2], '{a}'::text[], now()::timestamptz"),
            [col("tags"), col("tags"), col("text"), col("now")]
        );
        assert_eq!(
            names("SELECT *, 1 FROM t"),
            [ItemName::Wildcard, col("?column?")]
        );
        assert_eq!(names("SELECT 1 UNION SELECT 2 AS b"), [col("?column?")]);
    }

    #[test]
    fn a_star_stands_for_the_columns_left_over() {
        let written = [ItemName::Wildcard, col("?column?")];
        assert_eq!(
            line_up(&written, 3),
            Some(vec![None, None, Some("?column?".into())])
        );
        assert_eq!(line_up(&[col("a")], 2), None);
        assert_eq!(line_up(&[ItemName::Wildcard, ItemName::Wildcard], 4), None);
    }

    #[test]
    fn repeated_names_get_private_aliases() {
        let mut statement = DFParser::parse_sql("SELECT 1 AS a, 2 AS a, id, id FROM t")
            .unwrap()
            .pop_front()
            .unwrap();
        let names = line_up(&output_names(&mut statement).unwrap(), 4).unwrap();
        assert_eq!(
            names,
            [
                Some("a".into()),
                Some("a".into()),
                Some("id".into()),
                Some("id".into())
            ]
        );
        // Integer literals are cast to integer too, as PostgreSQL types them.
        let text = statement.to_string();
        assert!(
            text.contains("2::INT AS \"a#1\"") && text.contains("id AS \"id#3\""),
            "{text}"
        );
    }
}
