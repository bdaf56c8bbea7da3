//! Logging in, for the connection: the access rules and the SCRAM exchange (`crate::auth`)
//! decide, then the session takes its slots and the startup ends as pgwire's trusted one
//! does (the cancel key, AuthenticationOk, the parameters, ReadyForQuery).

use std::fmt::Debug;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::{DefaultServerParameterProvider, StartupHandler};
use pgwire::api::{
    ClientInfo, ConnectionManager, PgWireConnectionState, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use vecraft_cluster::meta::roles::RoleMeta;

use super::Connection;
use crate::auth::Step;
use crate::metrics::GATEWAY;

/// How long a login waits for the meta group's roles in a cluster before it goes on with the
/// node's copy (see `Catalog::refresh_within`).
const LOGIN_REFRESH_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// Every session's process id and cancel key, whichever way it logged in.
static PIDS: LazyLock<RandomPidSecretKeyGenerator> =
    LazyLock::new(RandomPidSecretKeyGenerator::default);

/// A trusted startup (pgwire's) registers the cancel key, so a CancelRequest on another
/// socket interrupts the statement running here (57014).
#[async_trait]
impl NoopStartupHandler for Connection {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.cancels.clone())
    }

    fn pid_secret_key_generator(&self) -> &dyn PidSecretKeyGenerator {
        &*PIDS
    }

    async fn post_startup<C>(
        &self,
        _client: &mut C,
        _message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.started();
        Ok(())
    }
}

impl Connection {
    /// A client session started here: counted.
    fn started(&self) {
        self.started.store(true, Ordering::Relaxed);
        GATEWAY.connections.inc();
        GATEWAY.connections_total.inc();
    }

    /// The session takes a slot under `max_connections` and its role's connection limit
    /// (53300 when none is left, the last few kept for superusers).
    fn admit(&self, user: &str, role: Option<&RoleMeta>) -> PgWireResult<()> {
        self.session.set_user(crate::roles::SessionUser {
            name: user.to_string(),
            open: role.is_none(),
        });
        match self.admission.session(user, role) {
            Ok(slot) => *self.slot.lock() = Some(slot),
            Err(e) => {
                GATEWAY.refused("max_connections");
                return Err(e);
            }
        }
        Ok(())
    }

    /// Ends a SCRAM login the way a trusted startup ends (`NoopStartupHandler`): the cancel
    /// key, AuthenticationOk, the parameters, ReadyForQuery.
    async fn finish_login<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (pid, secret_key) = PIDS.generate(client);
        client.set_pid_and_secret_key(pid, secret_key.clone());
        let (handle, guard) = self.cancels.register(pid, secret_key);
        client.session_extensions().insert(handle);
        client.session_extensions().insert(guard);
        self.started();
        let parameters = DefaultServerParameterProvider::default();
        pgwire::api::auth::finish_authentication(client, &parameters).await
    }
}

/// Startup: the access rules decide how the client logs in (`auth`); a trusted one goes
/// through pgwire's startup at once, a SCRAM one after its SASL exchange. Either takes a
/// slot under the connection limits first.
pub struct Startup(pub(super) Arc<Connection>);

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let connection = &self.0;
        let catalog = &connection.session.catalog;
        let step = match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                connection
                    .session
                    .startup_search_path(&startup.parameters)?;
                let parameter = |name: &str| startup.parameters.get(name).map(String::as_str);
                let who = crate::auth::Client {
                    peer: client.socket_addr().ip(),
                    tls: client.is_secure(),
                    // Read before the startup parameters join the metadata below.
                    channel_binding: (client.is_secure())
                        .then(|| crate::tls::end_point_of(client.metadata()))
                        .flatten(),
                    user: parameter("user").unwrap_or(""),
                    database: parameter("database"),
                };
                if catalog.role(who.user).is_none() {
                    // A role another gateway of the cluster made a moment ago.
                    catalog.refresh_within(LOGIN_REFRESH_TIMEOUT).await;
                }
                let step = connection
                    .login
                    .on_startup(&who, &connection.access, catalog)?;
                if let Step::Send(_) = step {
                    // The verifier is read at the client's first SASL message: the newest,
                    // if another gateway changed the password a moment ago.
                    catalog.refresh_within(LOGIN_REFRESH_TIMEOUT).await;
                    pgwire::api::auth::protocol_negotiation(client, startup).await?;
                    pgwire::api::auth::save_startup_parameters_to_metadata(client, startup);
                    client.set_state(PgWireConnectionState::AuthenticationInProgress);
                }
                step
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) => {
                let step = connection.login.on_password(password, catalog)?;
                return connection.proceed(client, step, None).await;
            }
            _ => return Ok(()),
        };
        connection.proceed(client, step, Some(message)).await
    }
}

impl Connection {
    /// Does what a login step says: sends the next SASL message, or admits the session and
    /// ends the startup (pgwire's trusted startup for the `startup` message, or the end of
    /// a SCRAM exchange).
    async fn proceed<C>(
        self: &Arc<Self>,
        client: &mut C,
        step: Step,
        startup: Option<PgWireFrontendMessage>,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match step {
            Step::Send(authentication) => {
                client
                    .send(PgWireBackendMessage::Authentication(authentication))
                    .await?;
            }
            Step::LoggedIn { last, user, role } => {
                self.admit(&user, role.as_ref())?;
                if let Some(last) = last {
                    client
                        .feed(PgWireBackendMessage::Authentication(last))
                        .await?;
                }
                match startup {
                    Some(startup) => {
                        StartupHandler::on_startup(self.as_ref(), client, startup).await?
                    }
                    None => self.finish_login(client).await?,
                }
            }
        }
        Ok(())
    }
}
