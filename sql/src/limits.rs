//! What one client may take of a node: connections, descriptors, message sizes, prepared
//! statements, memory, time. Each limit has PostgreSQL's name where PostgreSQL has one, and
//! answers with PostgreSQL's SQLSTATE when it is reached, so that a careless or hostile client
//! gets an error and the node goes on serving everyone else.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use pgwire::error::{ErrorInfo, PgWireError};
use vecraft_cluster::meta::roles::RoleMeta;

/// The gateway's limits (README "Limits" lists each with its setting and SQLSTATE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Client sessions at once (PostgreSQL's `max_connections`); 53300 beyond it.
    pub max_connections: usize,
    /// Of those, the ones only the superuser (`postgres`) may take
    /// (`superuser_reserved_connections`).
    pub superuser_reserved_connections: usize,
    /// The largest protocol message a client may send (a Query, a Bind, a CopyData); the
    /// connection is closed with 08P01 beyond it, as PostgreSQL closes it.
    pub max_message_bytes: usize,
    /// The longest line (or binary tuple) of COPY data; 54000 beyond it.
    pub max_copy_line_bytes: usize,
    /// Named prepared statements one session may hold; 53400 beyond it.
    pub max_prepared_statements: usize,
    /// Memory all queries of the node may hold at once for sorts, joins, aggregates; 53200.
    pub node_memory_bytes: usize,
    /// Memory one query may hold; 53200 beyond it.
    pub query_memory_bytes: usize,
    /// A session idle this long outside a block is closed (57P05); zero never closes it.
    pub idle_session_timeout: Duration,
    /// A session idle this long inside a block is closed (25P03) and its block rolled back;
    /// zero never closes it. The default of `idle_in_transaction_session_timeout`, which a
    /// session may SET.
    pub idle_in_transaction_session_timeout: Duration,
    /// A client that has not finished logging in by then is dropped
    /// (PostgreSQL's `authentication_timeout`).
    pub startup_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 100,
            superuser_reserved_connections: 3,
            max_message_bytes: 256 << 20,
            max_copy_line_bytes: 64 << 20,
            max_prepared_statements: 1_000,
            node_memory_bytes: default_node_memory_bytes(),
            query_memory_bytes: default_node_memory_bytes() / 4,
            idle_session_timeout: Duration::ZERO,
            idle_in_transaction_session_timeout: Duration::ZERO,
            startup_timeout: Duration::from_secs(60),
        }
    }
}

/// Half the machine's memory (or 4 GiB where it cannot be read).
fn default_node_memory_bytes() -> usize {
    let total_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
    });
    total_kib.map_or(4 << 30, |kib| kib * 1024 / 2)
}

/// The bootstrap superuser, who may take the reserved connections (as may every role with
/// SUPERUSER).
pub const SUPERUSER: &str = vecraft_cluster::meta::roles::BOOTSTRAP;

/// Counts the node's sockets and sessions against the limits.
#[derive(Debug)]
pub struct Admission {
    pub limits: Limits,
    /// Sockets open at once (sessions, clients logging in, cancel requests): bounded by the
    /// descriptors the process may open, less what its files need.
    max_sockets: usize,
    sockets: AtomicUsize,
    sessions: AtomicUsize,
    /// Sessions of each role with a connection limit.
    by_role: Mutex<HashMap<String, usize>>,
    /// Each role's statement rate (`ALTER ROLE … SET vecraft.statement_rate`).
    pub statement_rates: crate::rates::StatementRates,
}

/// A socket counted against [`Admission`]; uncounted when dropped.
#[derive(Debug)]
pub struct SocketSlot(Arc<Admission>);

/// A client session counted against `max_connections` (and its role's connection limit,
/// when the role has one); uncounted when dropped.
#[derive(Debug)]
pub struct SessionSlot {
    admission: Arc<Admission>,
    /// Held while the session lasts.
    _role: Option<RoleSlot>,
}

/// A session counted against its role's connection limit; uncounted when dropped.
#[derive(Debug)]
pub struct RoleSlot(Arc<Admission>, String);

impl Admission {
    pub fn new(limits: Limits, max_sockets: usize) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            max_sockets,
            sockets: AtomicUsize::new(0),
            sessions: AtomicUsize::new(0),
            by_role: Mutex::default(),
            statement_rates: Default::default(),
        })
    }

    /// A slot for a socket just accepted, or `None` when the node is at its descriptor
    /// budget (the socket is then closed at once).
    pub fn socket(self: &Arc<Self>) -> Option<SocketSlot> {
        take(&self.sockets, self.max_sockets).then(|| SocketSlot(self.clone()))
    }

    /// A slot for a session of `user`, whose role is `role` (`None`: a name the embedded
    /// default lets in without a role), or PostgreSQL's 53300 error: past `max_connections`,
    /// or past the role's CONNECTION LIMIT (which binds all but superusers).
    pub fn session(
        self: &Arc<Self>,
        user: &str,
        role: Option<&RoleMeta>,
    ) -> Result<SessionSlot, PgWireError> {
        let superuser = role.map_or(user == SUPERUSER, |r| r.superuser);
        let role_slot = match role.filter(|r| !r.superuser && r.connection_limit >= 0) {
            Some(role) => Some(self.role_slot(user, role.connection_limit as usize)?),
            None => None,
        };
        let max = self.limits.max_connections;
        let open_to_all = max.saturating_sub(self.limits.superuser_reserved_connections);
        if take(&self.sessions, if superuser { max } else { open_to_all }) {
            return Ok(SessionSlot {
                admission: self.clone(),
                _role: role_slot,
            });
        }
        drop(role_slot);
        let message = if !superuser && self.sessions.load(Ordering::Acquire) < max {
            "remaining connection slots are reserved for roles with the SUPERUSER attribute"
        } else {
            "sorry, too many clients already"
        };
        Err(fatal("53300", message))
    }

    /// A place among the `limit` sessions role `user` may hold, or PostgreSQL's 53300.
    fn role_slot(self: &Arc<Self>, user: &str, limit: usize) -> Result<RoleSlot, PgWireError> {
        let mut by_role = self.by_role.lock();
        let held = by_role.entry(user.to_string()).or_default();
        if *held >= limit {
            let message = format!("too many connections for role \"{user}\"");
            return Err(fatal("53300", &message));
        }
        *held += 1;
        Ok(RoleSlot(self.clone(), user.to_string()))
    }

    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Acquire)
    }
}

/// Adds one to `count` unless it is at `max`.
fn take(count: &AtomicUsize, max: usize) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let before = self.0.sockets.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "a socket slot was given back twice");
    }
}

impl Drop for RoleSlot {
    fn drop(&mut self) {
        let mut by_role = self.0.by_role.lock();
        let held = by_role
            .get_mut(&self.1)
            .expect("a counted role has an entry");
        *held -= 1;
        if *held == 0 {
            by_role.remove(&self.1);
        }
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let before = self.admission.sessions.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "a session slot was given back twice");
    }
}

/// An error that ends the connection (severity FATAL).
pub fn fatal(code: &str, message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(fatal_info(code, message)))
}

pub fn fatal_info(code: &str, message: &str) -> ErrorInfo {
    ErrorInfo::new("FATAL".to_owned(), code.to_owned(), message.to_owned())
}

/// The fewest descriptors the node keeps for its own files (logs, segments, locks) and the
/// HTTP and cluster ports: sockets are refused before the process would run out.
pub const RESERVED_DESCRIPTORS: usize = 64;

/// Raises the process's soft limit on open descriptors to its hard limit, and returns how
/// many sockets the gateway may then hold: the limit less a quarter of it (at least
/// [`RESERVED_DESCRIPTORS`]). Zero when the limit leaves nothing for clients.
pub fn socket_budget() -> usize {
    let limit = raise_descriptor_limit();
    let reserved = RESERVED_DESCRIPTORS.max(limit / 4);
    limit.saturating_sub(reserved)
}

fn raise_descriptor_limit() -> usize {
    let mut rlim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlim) != 0 {
            return 1024;
        }
        if rlim.rlim_cur < rlim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: rlim.rlim_max,
                rlim_max: rlim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                rlim.rlim_cur = rlim.rlim_max;
            }
        }
    }
    usize::try_from(rlim.rlim_cur).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max_connections: usize, reserved: usize) -> Arc<Admission> {
        let limits = Limits {
            max_connections,
            superuser_reserved_connections: reserved,
            ..Limits::default()
        };
        Admission::new(limits, 4)
    }

    fn code(e: PgWireError) -> (String, String) {
        match e {
            PgWireError::UserError(info) => (info.code, info.message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reserved_slots_are_the_superusers_and_slots_come_back() {
        let a = admission(3, 1);
        let first = a.session("app", None).unwrap();
        let _second = a.session("app", None).unwrap();
        let (sqlstate, message) = code(a.session("app", None).unwrap_err());
        assert_eq!(sqlstate, "53300");
        assert!(message.contains("reserved"), "{message}");
        let third = a.session(SUPERUSER, None).unwrap();
        let (sqlstate, message) = code(a.session(SUPERUSER, None).unwrap_err());
        assert_eq!(
            (sqlstate.as_str(), message.as_str()),
            ("53300", "sorry, too many clients already")
        );
        drop(first);
        assert_eq!(a.sessions(), 2);
        assert!(
            a.session("app", None).is_err(),
            "the slot left is the reserved one"
        );
        drop(third);
        assert!(
            a.session("app", None).is_ok(),
            "a slot given back is taken again"
        );
    }

    #[test]
    fn a_roles_connection_limit_binds_all_but_superusers() {
        let a = admission(10, 0);
        let mut role = RoleMeta::bootstrap();
        (role.superuser, role.connection_limit) = (false, 1);
        let held = a.session("alice", Some(&role)).unwrap();
        let (sqlstate, message) = code(a.session("alice", Some(&role)).unwrap_err());
        assert_eq!(
            (sqlstate.as_str(), message.as_str()),
            ("53300", "too many connections for role \"alice\"")
        );
        assert!(a.session("bob", Some(&role)).is_ok(), "counted per role");
        role.superuser = true;
        assert!(
            a.session("alice", Some(&role)).is_ok(),
            "superusers are not bound"
        );
        role.superuser = false;
        drop(held);
        assert!(
            a.session("alice", Some(&role)).is_ok(),
            "the slot came back"
        );
    }

    #[test]
    fn sockets_stop_at_the_budget() {
        let a = admission(10, 0);
        let held: Vec<_> = (0..4).map(|_| a.socket().unwrap()).collect();
        assert!(a.socket().is_none());
        drop(held);
        assert!(a.socket().is_some());
    }

    #[test]
    fn the_budget_leaves_descriptors_for_files() {
        let budget = socket_budget();
        let mut rlim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes only the struct passed.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlim) },
            0
        );
        let limit = rlim.rlim_cur as usize;
        assert!(
            budget + RESERVED_DESCRIPTORS <= limit,
            "{budget} of {limit}"
        );
    }
}
