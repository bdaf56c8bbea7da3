//! Role DDL as PostgreSQL has it: `CREATE ROLE|USER name [WITH] [LOGIN|NOLOGIN]
//! [SUPERUSER|NOSUPERUSER] [PASSWORD '…'|NULL] [VALID UNTIL '…'] [CONNECTION LIMIT n]`,
//! `ALTER ROLE|USER` with the same options or `SET vecraft.statement_rate = n` (`rates.rs`),
//! `DROP ROLE|USER [IF EXISTS]`. A password is kept
//! only as its SCRAM-SHA-256 verifier (a verifier sent by a client is kept as sent). Only a
//! superuser makes, drops or changes roles; any role may change its own password.
//!
//! The session's user (`SessionUser`) is who logged in; whether it is a superuser is read
//! from the catalog at each statement, so an ALTER ROLE takes effect at once everywhere.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    AlterRoleOperation, CreateRole, Expr, ObjectName, Password, RoleOption, UnaryOperator, Value,
};
use pgwire::api::results::{Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use vecraft_cluster::meta::roles::{BOOTSTRAP, MAX_NAME_BYTES, RoleChange, RoleOp};

use crate::errors::{to_pg, user_error};
use crate::session::Session;

/// Who a session logged in as.
#[derive(Clone, Debug)]
pub struct SessionUser {
    pub name: String,
    /// Let in by the embedded default under a name that is no role: it may do anything
    /// (as every client could before roles existed).
    pub open: bool,
}

impl Default for SessionUser {
    /// A session that did not log in (tests build those): the bootstrap superuser.
    fn default() -> Self {
        SessionUser {
            name: BOOTSTRAP.to_string(),
            open: true,
        }
    }
}

/// `current_user` and `session_user`: the role the session logged in as (Vecraft has no SET
/// ROLE, so the two agree).
pub(crate) fn user_udfs(user: &Arc<parking_lot::Mutex<SessionUser>>) -> Vec<ScalarUDF> {
    ["current_user", "session_user"]
        .into_iter()
        .map(|name| {
            let user = Arc::clone(user);
            let name_of = move |_: &[ColumnarValue]| {
                let name = user.lock().name.clone();
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))))
            };
            create_udf(
                name,
                vec![],
                DataType::Utf8,
                Volatility::Stable,
                Arc::new(name_of),
            )
        })
        .collect()
}

impl Session {
    /// The role this session logged in as.
    pub fn user(&self) -> SessionUser {
        self.user.lock().clone()
    }

    /// Records who logged in.
    pub fn set_user(&self, user: SessionUser) {
        *self.user.lock() = user;
    }

    /// Whether the session's role is a superuser now (checked before every statement: no
    /// copies).
    pub fn is_superuser(&self) -> bool {
        let user = self.user.lock();
        self.catalog.is_superuser(&user.name).unwrap_or(user.open)
    }

    pub(crate) async fn create_role(&self, create: &CreateRole) -> PgWireResult<Response> {
        self.must_be_superuser("create role")?;
        refuse_memberships(create)?;
        let change = change_of(&create_options(create))?;
        for name in &create.names {
            let name = role_name(name)?;
            let op = RoleOp::Create {
                name: name.clone(),
                change: change.clone(),
            };
            if !self.change_role(op).await? {
                let message = format!("role \"{name}\" already exists");
                return Err(user_error("42710", message));
            }
        }
        Ok(Response::Execution(Tag::new("CREATE ROLE")))
    }

    pub(crate) async fn alter_role(
        &self,
        name: &datafusion::sql::sqlparser::ast::Ident,
        operation: &AlterRoleOperation,
    ) -> PgWireResult<Response> {
        let name = crate::idents::ident(name);
        let change = match operation {
            AlterRoleOperation::WithOptions { options } => change_of(options)?,
            AlterRoleOperation::Set { .. } | AlterRoleOperation::Reset { .. } => {
                setting_change(operation)?
            }
            _ => {
                let message = format!("not supported: ALTER ROLE {operation}");
                return Err(user_error("0A000", message));
            }
        };
        let own_password = change == password_only(&change) && name == self.user().name;
        if !own_password {
            self.must_be_superuser("alter role")?;
        }
        if name == BOOTSTRAP && change.superuser == Some(false) {
            // Somebody must stay able to manage the roles (PostgreSQL's rule and answer).
            return Err(user_error("0A000", "permission denied to alter role"));
        }
        let op = RoleOp::Alter {
            name: name.clone(),
            change,
        };
        if !self.change_role(op).await? {
            return Err(user_error(
                "42704",
                format!("role \"{name}\" does not exist"),
            ));
        }
        Ok(Response::Execution(Tag::new("ALTER ROLE")))
    }

    pub(crate) async fn drop_roles(
        &self,
        names: &[ObjectName],
        if_exists: bool,
    ) -> PgWireResult<Response> {
        self.must_be_superuser("drop role")?;
        for name in names {
            let name = role_name(name)?;
            if name == self.user().name {
                return Err(user_error("55006", "current user cannot be dropped"));
            }
            if name == BOOTSTRAP {
                let message = format!(
                    "cannot drop role {name} because it is required by the database system"
                );
                return Err(user_error("2BP01", message));
            }
            let acls = self.catalog.privileges();
            if vecraft_cluster::meta::privileges::depends_on(&acls, &name) {
                let message =
                    format!("role \"{name}\" cannot be dropped because some objects depend on it");
                return Err(user_error("2BP01", message));
            }
            let dropped = self
                .change_role(RoleOp::Drop { name: name.clone() })
                .await?;
            if !dropped && !if_exists {
                return Err(user_error(
                    "42704",
                    format!("role \"{name}\" does not exist"),
                ));
            }
        }
        Ok(Response::Execution(Tag::new("DROP ROLE")))
    }

    /// 42501 unless the session's role is a superuser.
    fn must_be_superuser(&self, what: &str) -> PgWireResult<()> {
        match self.is_superuser() {
            true => Ok(()),
            false => Err(user_error("42501", format!("permission denied to {what}"))),
        }
    }

    async fn change_role(&self, op: RoleOp) -> PgWireResult<bool> {
        let catalog = Arc::clone(&self.catalog);
        tokio::task::spawn_blocking(move || catalog.change_role(op))
            .await
            .map_err(|e| user_error("XX000", format!("role change stopped: {e}")))?
            .map_err(|e| to_pg(&e))
    }
}

/// The change with nothing but its password (to tell a role changing its own password).
fn password_only(change: &RoleChange) -> RoleChange {
    RoleChange {
        password: change.password.clone(),
        ..RoleChange::default()
    }
}

/// A name CREATE ROLE may use: PostgreSQL reserves `pg_…`, `public` and `none`.
fn role_name(name: &ObjectName) -> PgWireResult<String> {
    let [part] = name.0.as_slice() else {
        return Err(user_error("42601", format!("invalid role name \"{name}\"")));
    };
    let ident = part
        .as_ident()
        .ok_or_else(|| user_error("42601", format!("invalid role name \"{name}\"")))?;
    let name = crate::idents::ident(ident);
    if name.starts_with("pg_") || name == "public" || name == "none" {
        return Err(user_error(
            "42939",
            format!("role name \"{name}\" is reserved"),
        ));
    }
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(user_error("42622", format!("invalid role name \"{name}\"")));
    }
    Ok(name)
}

/// CREATE ROLE's options as ALTER ROLE spells them.
fn create_options(create: &CreateRole) -> Vec<RoleOption> {
    let mut options = Vec::new();
    let flags = [
        (create.login, RoleOption::Login as fn(bool) -> RoleOption),
        (create.superuser, RoleOption::SuperUser),
        (create.inherit, RoleOption::Inherit),
        (create.create_db, RoleOption::CreateDB),
        (create.create_role, RoleOption::CreateRole),
        (create.replication, RoleOption::Replication),
        (create.bypassrls, RoleOption::BypassRLS),
    ];
    options.extend(
        flags
            .into_iter()
            .filter_map(|(set, option)| set.map(option)),
    );
    options.extend(create.password.clone().map(RoleOption::Password));
    options.extend(
        create
            .connection_limit
            .clone()
            .map(RoleOption::ConnectionLimit),
    );
    options.extend(create.valid_until.clone().map(RoleOption::ValidUntil));
    options
}

/// Role membership (`IN ROLE`, `ROLE`, `ADMIN`) is not kept.
fn refuse_memberships(create: &CreateRole) -> PgWireResult<()> {
    let memberships = !create.in_role.is_empty()
        || !create.in_group.is_empty()
        || !create.role.is_empty()
        || !create.user.is_empty()
        || !create.admin.is_empty();
    match memberships {
        true => Err(user_error("0A000", "role membership is not supported")),
        false => Ok(()),
    }
}

/// What the options change. Attributes that would grant what Vecraft does not have
/// (CREATEDB, CREATEROLE, REPLICATION, BYPASSRLS) are refused; INHERIT is what every role does.
fn change_of(options: &[RoleOption]) -> PgWireResult<RoleChange> {
    let mut change = RoleChange::default();
    for option in options {
        match option {
            RoleOption::Login(login) => change.login = Some(*login),
            RoleOption::SuperUser(superuser) => change.superuser = Some(*superuser),
            RoleOption::Inherit(_) => {}
            RoleOption::CreateDB(false)
            | RoleOption::CreateRole(false)
            | RoleOption::Replication(false)
            | RoleOption::BypassRLS(false) => {}
            RoleOption::Password(Password::NullPassword) => change.password = Some(None),
            RoleOption::Password(Password::Password(expr)) => {
                let password = text(expr, "PASSWORD")?;
                if password.is_empty() {
                    // PostgreSQL sets no password for an empty one (and says so).
                    change.password = Some(None);
                } else {
                    change.password = Some(Some(crate::auth::scram::verifier_for(&password)));
                }
            }
            RoleOption::ConnectionLimit(expr) => {
                let limit = integer(expr)
                    .filter(|n| *n >= -1)
                    .ok_or_else(|| user_error("22023", "invalid connection limit"))?;
                change.connection_limit = Some(limit);
            }
            RoleOption::ValidUntil(expr) => {
                change.valid_until_micros = Some(valid_until(&text(expr, "VALID UNTIL")?)?);
            }
            other => {
                return Err(user_error(
                    "0A000",
                    format!("not supported: role option {other}"),
                ));
            }
        }
    }
    Ok(change)
}

/// `ALTER ROLE … SET vecraft.statement_rate = n` (`0` or `DEFAULT`: no limit) and its
/// RESET: the one per-role setting Vecraft keeps (`rates.rs`).
fn setting_change(operation: &AlterRoleOperation) -> PgWireResult<RoleChange> {
    use datafusion::sql::sqlparser::ast::{ResetConfig, SetConfigValue};
    let (name, value) = match operation {
        AlterRoleOperation::Set {
            config_name,
            config_value,
            in_database: None,
        } => (config_name.to_string(), Some(config_value)),
        AlterRoleOperation::Reset {
            config_name: ResetConfig::ConfigName(name),
            in_database: None,
        } => (name.to_string(), None),
        AlterRoleOperation::Reset {
            config_name: ResetConfig::ALL,
            in_database: None,
        } => (crate::rates::SETTING.to_string(), None),
        _ => {
            return Err(user_error(
                "0A000",
                format!("not supported: ALTER ROLE {operation}"),
            ));
        }
    };
    if !name.eq_ignore_ascii_case(crate::rates::SETTING) {
        let message = format!(
            "not supported: ALTER ROLE … SET {name} (a role keeps {} only)",
            crate::rates::SETTING
        );
        return Err(user_error("0A000", message));
    }
    let rate = match value {
        None | Some(SetConfigValue::Default) => None,
        Some(SetConfigValue::Value(expr)) => {
            let rate = integer(expr).filter(|n| *n >= 0).ok_or_else(|| {
                let message = format!("invalid value for parameter \"{}\"", crate::rates::SETTING);
                user_error("22023", message)
            })?;
            (rate > 0).then_some(rate as u32)
        }
        Some(SetConfigValue::FromCurrent) => {
            return Err(user_error("0A000", "not supported: SET … FROM CURRENT"));
        }
    };
    Ok(RoleChange {
        statement_rate: Some(rate),
        ..RoleChange::default()
    })
}

/// A string literal's text.
fn text(expr: &Expr, what: &str) -> PgWireResult<String> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => Ok(s.clone()),
            _ => Err(syntax(what)),
        },
        _ => Err(syntax(what)),
    }
}

fn syntax(what: &str) -> PgWireError {
    user_error("42601", format!("syntax error at or near \"{what}\""))
}

/// An integer literal, signed.
fn integer(expr: &Expr) -> Option<i32> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => integer(expr).map(|n| -n),
        _ => None,
    }
}

/// `VALID UNTIL`'s timestamp in microseconds since the epoch (UTC unless it names a zone);
/// `None` for `infinity`.
fn valid_until(text: &str) -> PgWireResult<Option<i64>> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let text = text.trim();
    if text.eq_ignore_ascii_case("infinity") {
        return Ok(None);
    }
    let with_zone = ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"]
        .iter()
        .find_map(|f| DateTime::parse_from_str(text, f).ok())
        .map(|t| t.timestamp_micros());
    let naive = || {
        ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
            .or_else(|| {
                let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
                date.and_hms_opt(0, 0, 0)
            })
            .map(|t| t.and_utc().timestamp_micros())
    };
    with_zone.or_else(naive).map(Some).ok_or_else(|| {
        let message = format!("invalid input syntax for type timestamp with time zone: \"{text}\"");
        user_error("22007", message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_until_reads_postgresql_timestamps() {
        assert_eq!(valid_until("infinity").unwrap(), None);
        let midnight = valid_until("2030-01-01").unwrap().unwrap();
        assert_eq!(valid_until("2030-01-01 00:00:00").unwrap(), Some(midnight));
        assert_eq!(
            valid_until("2030-01-01 02:00:00+02").unwrap(),
            Some(midnight)
        );
        assert!(valid_until("soon").is_err());
    }
}
