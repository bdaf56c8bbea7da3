//! `CALL vecraft_add_meta_member(node_id)` and `CALL vecraft_remove_meta_member(node_id)`:
//! an operator adds a node of the cluster to its meta group, or takes one out (the meta
//! leader makes the change: `vecraft_cluster::node::meta_change`). Each answers `CALL` once
//! the change is made; `vecraft_nodes.meta` shows the members at once. Both are idempotent.
//! On a single node there is no meta group to change (0A000).

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectNamePart, Statement, Value,
};
use pgwire::error::PgWireResult;
use vecraft_cluster::meta::MetaMembersChange;

use crate::errors::user_error;

const ADD: &str = "vecraft_add_meta_member";
const REMOVE: &str = "vecraft_remove_meta_member";

/// The change `statement` asks for, if it calls one of the procedures; an error if it calls
/// one with anything but a node id.
pub fn of(statement: &Statement) -> Option<PgWireResult<MetaMembersChange>> {
    let Statement::Call(call) = statement else {
        return None;
    };
    let [ObjectNamePart::Identifier(name)] = call.name.0.as_slice() else {
        return None;
    };
    let procedure = match name.quote_style {
        Some(_) => name.value.clone(),
        None => name.value.to_ascii_lowercase(),
    };
    let change: fn(u64) -> MetaMembersChange = match procedure.as_str() {
        ADD => MetaMembersChange::Add,
        REMOVE => MetaMembersChange::Remove,
        _ => return None,
    };
    Some(node_id(&call.args, &procedure).map(change))
}

/// The one argument: a node id, an integer constant.
fn node_id(args: &FunctionArguments, procedure: &str) -> PgWireResult<u64> {
    let wrong = || {
        let message = format!("{procedure} takes one argument: a node id (an integer)");
        user_error("22023", message)
    };
    let FunctionArguments::List(list) = args else {
        return Err(wrong());
    };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))] = list.args.as_slice() else {
        return Err(wrong());
    };
    match &v.value {
        Value::Number(text, _) => text.parse().map_err(|_| wrong()),
        _ => Err(wrong()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn read(sql: &str) -> Option<PgWireResult<MetaMembersChange>> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        of(&statements[0])
    }

    #[test]
    fn the_procedures_take_a_node_id() {
        let add = read("CALL vecraft_add_meta_member(4)").unwrap().unwrap();
        assert_eq!(add, MetaMembersChange::Add(4));
        let remove = read("call VECRAFT_REMOVE_META_MEMBER(12)")
            .unwrap()
            .unwrap();
        assert_eq!(remove, MetaMembersChange::Remove(12));
        assert!(read("CALL other_procedure(4)").is_none());
        assert!(read("CALL \"VECRAFT_ADD_META_MEMBER\"(4)").is_none());
        for wrong in [
            "CALL vecraft_add_meta_member('4')",
            "CALL vecraft_add_meta_member(-1)",
            "CALL vecraft_add_meta_member(1.5)",
            "CALL vecraft_add_meta_member(1, 2)",
            "CALL vecraft_add_meta_member()",
        ] {
            assert!(matches!(read(wrong), Some(Err(_))), "{wrong}");
        }
    }
}
