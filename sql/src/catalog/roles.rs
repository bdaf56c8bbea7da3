//! The catalog's roles and privileges (`vecraft_cluster::meta::{roles, privileges}`): in the
//! meta document in a cluster, in `<data-dir>/roles.json` on a single node, replaced whole and
//! durably by each change.

use std::path::{Path, PathBuf};

use datafusion::error::{DataFusionError, Result};
use parking_lot::RwLock;
use vecraft_cluster::meta::privileges::{self, Acls, PrivilegeOp};
use vecraft_cluster::meta::roles::{self, RoleMeta, RoleOp, Roles};

use super::{Backend, Catalog, io, storage};

/// What a single node's file holds.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Doc {
    roles: Roles,
    #[serde(default)]
    privileges: Acls,
}

/// A single node's roles and privileges: the file and what it holds.
pub(super) struct LocalRoles {
    path: PathBuf,
    doc: RwLock<Doc>,
}

impl LocalRoles {
    pub(super) fn open(data_dir: &Path) -> Result<LocalRoles> {
        let path = data_dir.join("roles.json");
        let doc = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                let what = format!("{}: {e}", path.display());
                io(std::io::Error::new(std::io::ErrorKind::InvalidData, what))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Doc::default(),
            Err(e) => return Err(io(e)),
        };
        Ok(LocalRoles {
            path,
            doc: RwLock::new(doc),
        })
    }

    /// Changes the document with `change`, writing the file before anyone sees it.
    fn change(&self, change: impl FnOnce(&mut Doc) -> Result<bool>) -> Result<bool> {
        let mut doc = self.doc.write();
        let mut changed = doc.clone();
        let done = change(&mut changed)?;
        if done {
            let bytes = serde_json::to_vec_pretty(&changed).expect("roles always serialise");
            vecraft_storage::fsutil::write_atomic(&self.path, &bytes).map_err(storage)?;
            *doc = changed;
        }
        Ok(done)
    }

    /// A dropped collection or schema takes its grants along.
    pub(super) fn forget(&self, object: &str) -> Result<()> {
        self.change(|doc| Ok(doc.privileges.remove(object).is_some()))
            .map(|_| ())
    }
}

impl Catalog {
    /// `read` of the roles and privileges as this gateway sees them now.
    fn with_roles<T>(&self, read: impl FnOnce(&Roles, &Acls) -> T) -> T {
        match &self.backend {
            Backend::Local { roles, .. } => {
                let doc = roles.doc.read();
                read(&doc.roles, &doc.privileges)
            }
            Backend::Cluster { node, .. } => {
                let view = node.view();
                read(&view.roles, &view.privileges)
            }
        }
    }

    /// The stored roles (the bootstrap superuser only once altered).
    pub fn roles(&self) -> Roles {
        self.with_roles(|roles, _| roles.clone())
    }

    /// The role `name`, if it exists.
    pub fn role(&self, name: &str) -> Option<RoleMeta> {
        self.with_roles(|roles, _| roles::find(roles, name))
    }

    /// Whether role `name` is a superuser; `None` when there is no such role.
    pub fn is_superuser(&self, name: &str) -> Option<bool> {
        self.with_roles(|roles, _| match roles.get(name) {
            Some(role) => Some(role.superuser),
            None => (name == roles::BOOTSTRAP).then_some(true),
        })
    }

    /// The statements a second role `name` may start on a gateway, if it is limited.
    pub fn statement_rate(&self, name: &str) -> Option<u32> {
        self.with_roles(|roles, _| roles.get(name).and_then(|role| role.statement_rate))
    }

    /// Whether some role has a password (then loopback is no longer trusted by default).
    pub fn any_password(&self) -> bool {
        self.with_roles(|roles, _| roles.values().any(|r| r.password.is_some()))
    }

    /// CREATE, ALTER or DROP ROLE; whether it changed anything. Blocking (a cluster waits
    /// for the meta group).
    pub fn change_role(&self, op: RoleOp) -> Result<bool> {
        let changed = match &self.backend {
            Backend::Local { roles, .. } => roles
                .change(|doc| roles::apply(&mut doc.roles, op).map_err(DataFusionError::Plan))?,
            Backend::Cluster { node, .. } => node.change_role(op).map_err(storage)?,
        };
        self.changed();
        Ok(changed)
    }

    /// In a cluster: reads the roles (with the rest of the metadata) from the meta leader,
    /// unless that takes longer than `timeout` (the meta group is down): a login then goes on
    /// with what this node saw last (at most the watch interval old).
    pub async fn refresh_within(self: &std::sync::Arc<Self>, timeout: std::time::Duration) {
        if !self.is_cluster() {
            return;
        }
        let catalog = std::sync::Arc::clone(self);
        let read = tokio::task::spawn_blocking(move || catalog.refresh());
        let _ = tokio::time::timeout(timeout, read).await;
    }

    /// Owners and grants.
    pub fn privileges(&self) -> Acls {
        self.with_roles(|_, acls| acls.clone())
    }

    /// GRANT, REVOKE, or a new object's owner; whether it changed anything. Blocking.
    pub fn change_privileges(&self, op: PrivilegeOp) -> Result<bool> {
        match &self.backend {
            Backend::Local { roles, .. } => {
                roles.change(|doc| Ok(privileges::apply(&mut doc.privileges, op)))
            }
            Backend::Cluster { node, .. } => node.change_privileges(op).map_err(storage),
        }
    }
}
