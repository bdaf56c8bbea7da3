//! Roles: the names clients log in as, their passwords (SCRAM-SHA-256 verifiers only, never
//! the password itself) and their attributes, as PostgreSQL's `pg_authid` keeps them. A
//! cluster keeps them in the meta document, so every gateway knows a role the moment the meta
//! group committed it; a single node keeps the same map in a file (`vecraft-sql`'s catalog).
//! Both change it only through [`apply`], so both answer a statement the same way.

use std::collections::BTreeMap;

/// The bootstrap superuser, as `initdb` makes it: always there, whether or not it was
/// altered (then it is also stored).
pub const BOOTSTRAP: &str = "postgres";
/// Its OID, PostgreSQL's.
pub const BOOTSTRAP_OID: u32 = 10;
/// The first OID given to a role made by CREATE ROLE (PostgreSQL's first user OID).
const FIRST_ROLE_OID: u32 = 16_384;
/// The longest role name, in bytes (PostgreSQL's NAMEDATALEN - 1).
pub const MAX_NAME_BYTES: usize = 63;

/// The stored roles, by name.
pub type Roles = BTreeMap<String, RoleMeta>;

/// One role.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoleMeta {
    pub oid: u32,
    pub superuser: bool,
    /// Whether it may log in (`LOGIN`; CREATE USER's default).
    pub login: bool,
    /// Its SCRAM-SHA-256 verifier, in PostgreSQL's form
    /// (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`); `None`: no password,
    /// so no password login.
    pub password: Option<String>,
    /// When its password stops working, in microseconds since the Unix epoch (UTC).
    pub valid_until_micros: Option<i64>,
    /// How many sessions it may hold at once; -1 for no limit.
    pub connection_limit: i32,
    /// How many statements a second its sessions may start, together, on each gateway;
    /// `None` for no limit.
    #[serde(default)]
    pub statement_rate: Option<u32>,
}

impl RoleMeta {
    /// A new role's attributes: PostgreSQL's defaults for CREATE ROLE.
    fn new(oid: u32) -> RoleMeta {
        RoleMeta {
            oid,
            superuser: false,
            login: false,
            password: None,
            valid_until_micros: None,
            connection_limit: -1,
            statement_rate: None,
        }
    }

    /// The bootstrap superuser as `initdb` leaves it.
    pub fn bootstrap() -> RoleMeta {
        RoleMeta {
            superuser: true,
            login: true,
            ..RoleMeta::new(BOOTSTRAP_OID)
        }
    }
}

/// What CREATE ROLE or ALTER ROLE says; `None` leaves an attribute as it is (at its default
/// for a new role).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoleChange {
    pub superuser: Option<bool>,
    pub login: Option<bool>,
    /// `Some(None)`: `PASSWORD NULL`. A verifier, never a password.
    pub password: Option<Option<String>>,
    /// `Some(None)`: `VALID UNTIL 'infinity'`.
    pub valid_until_micros: Option<Option<i64>>,
    pub connection_limit: Option<i32>,
    /// `Some(None)`: no limit.
    pub statement_rate: Option<Option<u32>>,
}

impl RoleChange {
    fn apply_to(self, role: &mut RoleMeta) {
        let RoleChange {
            superuser,
            login,
            password,
            valid_until_micros,
            connection_limit,
            statement_rate,
        } = self;
        role.superuser = superuser.unwrap_or(role.superuser);
        role.login = login.unwrap_or(role.login);
        role.password = password.unwrap_or(role.password.take());
        role.valid_until_micros = valid_until_micros.unwrap_or(role.valid_until_micros);
        role.connection_limit = connection_limit.unwrap_or(role.connection_limit);
        role.statement_rate = statement_rate.unwrap_or(role.statement_rate);
    }
}

/// A change of the roles.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RoleOp {
    /// `Done(false)` when it exists.
    Create { name: String, change: RoleChange },
    /// `Done(false)` when there is no such role.
    Alter { name: String, change: RoleChange },
    /// `Done(false)` when there is no such role.
    Drop { name: String },
}

impl RoleOp {
    /// Whether doing it twice does no more than doing it once.
    pub fn idempotent(&self) -> bool {
        matches!(self, RoleOp::Alter { .. })
    }
}

/// The role `name`, if it exists: a stored one, or the bootstrap superuser.
pub fn find(roles: &Roles, name: &str) -> Option<RoleMeta> {
    match roles.get(name) {
        Some(role) => Some(role.clone()),
        None => (name == BOOTSTRAP).then(RoleMeta::bootstrap),
    }
}

/// Every role, the bootstrap superuser first.
pub fn all(roles: &Roles) -> Vec<(String, RoleMeta)> {
    let bootstrap = find(roles, BOOTSTRAP).expect("the bootstrap superuser always exists");
    let mut all = vec![(BOOTSTRAP.to_string(), bootstrap)];
    all.extend(
        roles
            .iter()
            .filter(|(name, _)| *name != BOOTSTRAP)
            .map(|(name, role)| (name.clone(), role.clone())),
    );
    all
}

/// Refuses an operation the SQL path would never send (any member of a cluster may send one).
pub fn check(op: &RoleOp) -> Result<(), String> {
    let (RoleOp::Create { name, .. } | RoleOp::Alter { name, .. } | RoleOp::Drop { name }) = op;
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.contains('\0') {
        return Err(format!("invalid role name \"{name}\""));
    }
    let change = match op {
        RoleOp::Create { change, .. } | RoleOp::Alter { change, .. } => change,
        RoleOp::Drop { .. } => return Ok(()),
    };
    if let Some(Some(verifier)) = &change.password
        && !verifier.starts_with("SCRAM-SHA-256$")
    {
        return Err("a role's password is stored as a SCRAM-SHA-256 verifier only".into());
    }
    if change.connection_limit.is_some_and(|limit| limit < -1) {
        return Err("invalid connection limit".into());
    }
    Ok(())
}

/// Makes `op` on `roles`; whether it changed anything.
pub fn apply(roles: &mut Roles, op: RoleOp) -> Result<bool, String> {
    check(&op)?;
    match op {
        RoleOp::Create { name, change } => {
            if find(roles, &name).is_some() {
                return Ok(false);
            }
            let oid = roles
                .values()
                .map(|r| r.oid + 1)
                .max()
                .unwrap_or(FIRST_ROLE_OID)
                .max(FIRST_ROLE_OID);
            let mut role = RoleMeta::new(oid);
            change.apply_to(&mut role);
            roles.insert(name, role);
            Ok(true)
        }
        RoleOp::Alter { name, change } => {
            if name == BOOTSTRAP && change.superuser == Some(false) {
                return Err("the bootstrap superuser keeps SUPERUSER".into());
            }
            let Some(mut role) = find(roles, &name) else {
                return Ok(false);
            };
            change.apply_to(&mut role);
            roles.insert(name, role);
            Ok(true)
        }
        RoleOp::Drop { name } if name == BOOTSTRAP => Err(format!(
            "cannot drop role {name} because it is required by the database system"
        )),
        RoleOp::Drop { name } => Ok(roles.remove(&name).is_some()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(roles: &mut Roles, name: &str, change: RoleChange) -> bool {
        let name = name.to_string();
        apply(roles, RoleOp::Create { name, change }).unwrap()
    }

    #[test]
    fn roles_get_oids_from_16384_and_postgres_always_exists() {
        let mut roles = Roles::new();
        assert_eq!(find(&roles, BOOTSTRAP), Some(RoleMeta::bootstrap()));
        assert!(create(&mut roles, "alice", RoleChange::default()));
        assert!(create(&mut roles, "bob", RoleChange::default()));
        assert!(!create(&mut roles, "alice", RoleChange::default()));
        assert!(!create(&mut roles, BOOTSTRAP, RoleChange::default()));
        let oids: Vec<u32> = all(&roles).iter().map(|(_, r)| r.oid).collect();
        assert_eq!(oids, vec![10, 16_384, 16_385]);
        let bob = find(&roles, "bob").unwrap();
        assert!(!bob.login && !bob.superuser && bob.connection_limit == -1);
    }

    #[test]
    fn alter_changes_only_what_it_names() {
        let mut roles = Roles::new();
        let login = RoleChange {
            login: Some(true),
            password: Some(Some("SCRAM-SHA-256$4096:c2FsdA==$a:b".into())),
            ..RoleChange::default()
        };
        create(&mut roles, "alice", login);
        let limit = RoleChange {
            connection_limit: Some(2),
            ..RoleChange::default()
        };
        let alice = RoleOp::Alter {
            name: "alice".into(),
            change: limit,
        };
        assert!(apply(&mut roles, alice).unwrap());
        let alice = find(&roles, "alice").unwrap();
        assert!(alice.login && alice.password.is_some());
        assert_eq!(alice.connection_limit, 2);
        let missing = RoleOp::Alter {
            name: "carol".into(),
            change: RoleChange::default(),
        };
        assert!(!apply(&mut roles, missing).unwrap());
    }

    #[test]
    fn the_bootstrap_superuser_can_be_altered_not_dropped() {
        let mut roles = Roles::new();
        let password = RoleChange {
            password: Some(Some("SCRAM-SHA-256$4096:c2FsdA==$a:b".into())),
            ..RoleChange::default()
        };
        let alter = RoleOp::Alter {
            name: BOOTSTRAP.into(),
            change: password,
        };
        assert!(apply(&mut roles, alter).unwrap());
        let postgres = find(&roles, BOOTSTRAP).unwrap();
        assert!(postgres.superuser && postgres.password.is_some());
        assert_eq!(postgres.oid, BOOTSTRAP_OID);
        let drop = RoleOp::Drop {
            name: BOOTSTRAP.into(),
        };
        assert!(apply(&mut roles, drop).is_err());
        let demote = RoleOp::Alter {
            name: BOOTSTRAP.into(),
            change: RoleChange {
                superuser: Some(false),
                ..RoleChange::default()
            },
        };
        assert!(apply(&mut roles, demote).is_err());
    }

    #[test]
    fn plain_passwords_and_bad_names_are_refused() {
        let mut roles = Roles::new();
        let plain = RoleChange {
            password: Some(Some("secret".into())),
            ..RoleChange::default()
        };
        let op = RoleOp::Create {
            name: "alice".into(),
            change: plain,
        };
        assert!(apply(&mut roles, op).is_err());
        let long = RoleOp::Drop {
            name: "x".repeat(64),
        };
        assert!(apply(&mut roles, long).is_err());
    }
}
