//! The catalog's roles (`vecraft_cluster::meta::roles`): in the meta document in a cluster, in
//! `<data-dir>/roles.json` on a single node, replaced whole and durably by each change.

use std::path::{Path, PathBuf};

use datafusion::error::Result;
use parking_lot::RwLock;
use vecraft_cluster::meta::roles::{self, RoleMeta, RoleOp, Roles};

use super::{Backend, Catalog, io, storage};

/// A single node's roles: the file and what it holds.
pub(super) struct LocalRoles {
    path: PathBuf,
    roles: RwLock<Roles>,
}

impl LocalRoles {
    pub(super) fn open(data_dir: &Path) -> Result<LocalRoles> {
        let path = data_dir.join("roles.json");
        let roles = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                let what = format!("{}: {e}", path.display());
                io(std::io::Error::new(std::io::ErrorKind::InvalidData, what))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Roles::new(),
            Err(e) => return Err(io(e)),
        };
        Ok(LocalRoles {
            path,
            roles: RwLock::new(roles),
        })
    }

    /// Makes `op`, writing the file before anyone sees the change.
    fn change(&self, op: RoleOp) -> Result<bool> {
        let mut roles = self.roles.write();
        let mut changed = roles.clone();
        let done = roles::apply(&mut changed, op)
            .map_err(|e| datafusion::error::DataFusionError::Plan(e))?;
        if done {
            let bytes = serde_json::to_vec_pretty(&changed).expect("roles always serialise");
            vecraft_storage::fsutil::write_atomic(&self.path, &bytes).map_err(storage)?;
            *roles = changed;
        }
        Ok(done)
    }
}

impl Catalog {
    /// The stored roles (the bootstrap superuser only once altered).
    pub fn roles(&self) -> Roles {
        match &self.backend {
            Backend::Local { roles, .. } => roles.roles.read().clone(),
            Backend::Cluster { node, .. } => node.view().roles.clone(),
        }
    }

    /// The role `name`, if it exists.
    pub fn role(&self, name: &str) -> Option<RoleMeta> {
        match &self.backend {
            Backend::Local { roles, .. } => roles::find(&roles.roles.read(), name),
            Backend::Cluster { node, .. } => roles::find(&node.view().roles, name),
        }
    }

    /// Whether some role has a password (then loopback is no longer trusted by default).
    pub fn any_password(&self) -> bool {
        let any = |roles: &Roles| roles.values().any(|r| r.password.is_some());
        match &self.backend {
            Backend::Local { roles, .. } => any(&roles.roles.read()),
            Backend::Cluster { node, .. } => any(&node.view().roles),
        }
    }

    /// CREATE, ALTER or DROP ROLE; whether it changed anything. Blocking (a cluster waits
    /// for the meta group).
    pub fn change_role(&self, op: RoleOp) -> Result<bool> {
        let changed = match &self.backend {
            Backend::Local { roles, .. } => roles.change(op)?,
            Backend::Cluster { node, .. } => node.change_role(op).map_err(storage)?,
        };
        self.changed();
        Ok(changed)
    }
}
