//! Draining a gateway (SIGTERM on a node): it stops accepting connections, lets every
//! statement that runs finish, and ends each session once it is idle outside a transaction
//! block (PostgreSQL's `57P01`, "terminating connection due to administrator command"). A
//! session inside a block ends when the block does. The caller waits for the sessions to end
//! ([`Drain::sessions_ended`]) with its own deadline, then exits.
//!
//! A session is ended only between statements, after its `ReadyForQuery`: a statement a
//! client sends then was not read, so no statement is cut short or half done, and the client
//! may send it again elsewhere.

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Debug)]
pub struct Drain {
    draining: watch::Sender<bool>,
    sessions: watch::Sender<usize>,
}

/// A session's place in the count; dropped when the session ends.
pub struct SessionGuard(Arc<Drain>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.sessions.send_modify(|n| *n -= 1);
    }
}

impl Drain {
    pub fn new() -> Arc<Drain> {
        Arc::new(Drain {
            draining: watch::channel(false).0,
            sessions: watch::channel(0).0,
        })
    }

    /// Stops accepting connections and ends sessions as they go idle.
    pub fn start(&self) {
        self.draining.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Returns once the drain started.
    pub async fn started(&self) {
        let mut draining = self.draining.subscribe();
        // The sender lives as long as `self`.
        let _ = draining.wait_for(|d| *d).await;
    }

    /// Counts a session until the guard is dropped.
    pub fn session(self: &Arc<Self>) -> SessionGuard {
        self.sessions.send_modify(|n| *n += 1);
        SessionGuard(Arc::clone(self))
    }

    /// The sessions open now.
    pub fn sessions(&self) -> usize {
        *self.sessions.borrow()
    }

    /// Returns once no session is open.
    pub async fn sessions_ended(&self) {
        let mut sessions = self.sessions.subscribe();
        let _ = sessions.wait_for(|n| *n == 0).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sessions_are_counted_until_they_end() {
        let drain = Drain::new();
        let (a, b) = (drain.session(), drain.session());
        assert_eq!(drain.sessions(), 2);
        assert!(!drain.is_draining());
        drain.start();
        drain.started().await;
        drop(a);
        let ended = tokio::spawn({
            let drain = Arc::clone(&drain);
            async move { drain.sessions_ended().await }
        });
        assert_eq!(drain.sessions(), 1);
        assert!(!ended.is_finished());
        drop(b);
        ended.await.unwrap();
        assert_eq!(drain.sessions(), 0);
    }
}
