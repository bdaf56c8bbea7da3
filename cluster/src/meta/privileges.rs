//! Privileges on collections and schemas: PostgreSQL's ACLs, kept beside the roles (in the meta
//! document, or a single node's file). Each object has an owner, who may do anything with it,
//! and the privileges granted to roles or to PUBLIC. An object without an entry belongs to the
//! bootstrap superuser and grants nothing. Superusers are never checked.

use std::collections::BTreeMap;

/// ACLs by object: a collection's key, or [`schema_object`] of a schema's key.
pub type Acls = BTreeMap<String, Acl>;

/// The grantee that stands for every role.
pub const PUBLIC: &str = "public";

/// The ACL key of schema `key`.
pub fn schema_object(key: &str) -> String {
    format!("schema {key}")
}

/// A set of privileges (PostgreSQL's letters: r a w d D C U).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Privileges(pub u8);

impl Privileges {
    pub const SELECT: Privileges = Privileges(1);
    pub const INSERT: Privileges = Privileges(1 << 1);
    pub const UPDATE: Privileges = Privileges(1 << 2);
    pub const DELETE: Privileges = Privileges(1 << 3);
    pub const TRUNCATE: Privileges = Privileges(1 << 4);
    /// On a schema: make collections in it.
    pub const CREATE: Privileges = Privileges(1 << 5);
    /// On a schema.
    pub const USAGE: Privileges = Privileges(1 << 6);
    /// `ALL` on a collection.
    pub const ALL_TABLE: Privileges = Privileges(0b1_1111);
    /// `ALL` on a schema.
    pub const ALL_SCHEMA: Privileges = Privileges(0b110_0000);

    pub fn contains(self, other: Privileges) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: Privileges) -> Privileges {
        Privileges(self.0 | other.0)
    }

    pub fn without(self, other: Privileges) -> Privileges {
        Privileges(self.0 & !other.0)
    }

    /// PostgreSQL's name of the one privilege `self` is.
    pub fn name(self) -> &'static str {
        match self {
            Privileges::SELECT => "SELECT",
            Privileges::INSERT => "INSERT",
            Privileges::UPDATE => "UPDATE",
            Privileges::DELETE => "DELETE",
            Privileges::TRUNCATE => "TRUNCATE",
            Privileges::CREATE => "CREATE",
            Privileges::USAGE => "USAGE",
            _ => "ALL",
        }
    }
}

/// One object's owner and grants.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Acl {
    /// `None`: the bootstrap superuser.
    pub owner: Option<String>,
    /// What each role (or PUBLIC) was granted.
    pub grants: BTreeMap<String, Privileges>,
}

/// A change of the ACLs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PrivilegeOp {
    Grant {
        objects: Vec<String>,
        grantees: Vec<String>,
        privileges: Privileges,
    },
    Revoke {
        objects: Vec<String>,
        grantees: Vec<String>,
        privileges: Privileges,
    },
    /// A collection or schema just made by `owner`.
    Own { object: String, owner: String },
}

/// Makes `op`; whether it changed anything. Idempotent.
pub fn apply(acls: &mut Acls, op: PrivilegeOp) -> bool {
    let before = acls.clone();
    match op {
        PrivilegeOp::Grant {
            objects,
            grantees,
            privileges,
        } => {
            for object in objects {
                let acl = acls.entry(object).or_default();
                for grantee in &grantees {
                    let held = acl.grants.entry(grantee.clone()).or_default();
                    *held = held.union(privileges);
                }
            }
        }
        PrivilegeOp::Revoke {
            objects,
            grantees,
            privileges,
        } => {
            for object in objects {
                let Some(acl) = acls.get_mut(&object) else {
                    continue;
                };
                for grantee in &grantees {
                    if let Some(held) = acl.grants.get_mut(grantee) {
                        *held = held.without(privileges);
                    }
                }
                acl.grants.retain(|_, held| !held.is_empty());
            }
        }
        PrivilegeOp::Own { object, owner } => {
            acls.entry(object).or_default().owner = Some(owner);
        }
    }
    acls.retain(|_, acl| acl.owner.is_some() || !acl.grants.is_empty());
    *acls != before
}

/// Whether `role` owns `object`.
pub fn owns(acls: &Acls, object: &str, role: &str) -> bool {
    let owner = acls.get(object).and_then(|acl| acl.owner.as_deref());
    owner.unwrap_or(super::roles::BOOTSTRAP) == role
}

/// Whether `role` (not a superuser) may do `wanted` on `object`: it owns it, or it or PUBLIC
/// was granted all of `wanted`.
pub fn allowed(acls: &Acls, object: &str, role: &str, wanted: Privileges) -> bool {
    owns(acls, object, role) || granted(acls, object, role).contains(wanted)
}

/// What was granted on `object` to `role` or to PUBLIC.
pub fn granted(acls: &Acls, object: &str, role: &str) -> Privileges {
    let Some(acl) = acls.get(object) else {
        return Privileges::default();
    };
    [role, PUBLIC]
        .iter()
        .filter_map(|grantee| acl.grants.get(*grantee))
        .fold(Privileges::default(), |all, p| all.union(*p))
}

/// Whether anything depends on `role` (it owns an object or holds a grant): then it cannot
/// be dropped.
pub fn depends_on(acls: &Acls, role: &str) -> bool {
    acls.values()
        .any(|acl| acl.owner.as_deref() == Some(role) || acl.grants.contains_key(role))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(objects: &[&str], grantees: &[&str], privileges: Privileges) -> PrivilegeOp {
        PrivilegeOp::Grant {
            objects: objects.iter().map(|s| s.to_string()).collect(),
            grantees: grantees.iter().map(|s| s.to_string()).collect(),
            privileges,
        }
    }

    #[test]
    fn grants_add_up_and_revokes_take_away() {
        let mut acls = Acls::new();
        let items = "items";
        assert!(!allowed(&acls, items, "alice", Privileges::SELECT));
        assert!(apply(
            &mut acls,
            grant(&[items], &["alice"], Privileges::SELECT)
        ));
        assert!(apply(
            &mut acls,
            grant(&[items], &["alice"], Privileges::INSERT)
        ));
        assert!(!apply(
            &mut acls,
            grant(&[items], &["alice"], Privileges::INSERT)
        ));
        let both = Privileges::SELECT.union(Privileges::INSERT);
        assert!(allowed(&acls, items, "alice", both));
        assert!(!allowed(&acls, items, "alice", Privileges::DELETE));
        assert!(depends_on(&acls, "alice"));
        let revoke = PrivilegeOp::Revoke {
            objects: vec![items.into()],
            grantees: vec!["alice".into()],
            privileges: Privileges::ALL_TABLE,
        };
        assert!(apply(&mut acls, revoke));
        assert!(acls.is_empty(), "an ACL with nothing in it goes");
        assert!(!depends_on(&acls, "alice"));
    }

    #[test]
    fn owners_may_do_anything_and_public_grants_reach_everyone() {
        let mut acls = Acls::new();
        let own = PrivilegeOp::Own {
            object: "items".into(),
            owner: "alice".into(),
        };
        apply(&mut acls, own);
        assert!(allowed(&acls, "items", "alice", Privileges::ALL_TABLE));
        assert!(!allowed(&acls, "items", "bob", Privileges::SELECT));
        apply(&mut acls, grant(&["items"], &[PUBLIC], Privileges::SELECT));
        assert!(allowed(&acls, "items", "bob", Privileges::SELECT));
        assert!(owns(&acls, "other", super::super::roles::BOOTSTRAP));
    }
}
