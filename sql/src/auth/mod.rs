//! Logging in: which method the access rules give a client (`hba.rs`), the SCRAM-SHA-256
//! exchange against the role's stored verifier (`scram.rs`), and PostgreSQL's answers when it
//! fails — 28P01 "password authentication failed for user" whether the role is unknown, has
//! no password, has an expired one or the password is wrong; 28000 for a refused host or a
//! role that may not log in; 53300 past the role's connection limit.
//!
//! The connection's handler (`handler.rs`) calls [`Login::on_startup`] with the startup
//! message and [`Login::on_password`] with each SASL message; once either says
//! [`Step::LoggedIn`], the handler finishes the startup as a trusted one does.

pub mod hba;
pub mod scram;

use std::sync::LazyLock;

use bytes::Bytes;
use parking_lot::Mutex;
use pgwire::error::PgWireError;
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use vecraft_cluster::meta::roles::RoleMeta;

use crate::catalog::Catalog;
use crate::limits::fatal;
use hba::{Access, Asking, Decision};
use scram::{Binding, Exchange, Failure, Verifier};

/// A secret of the process that salts mock verifiers (see `scram.rs`).
static MOCK_SECRET: LazyLock<[u8; 32]> = LazyLock::new(|| {
    let mut secret = [0u8; 32];
    rand::fill(&mut secret);
    secret
});

/// Where one connection is in logging in.
#[derive(Debug, Default)]
pub struct Login {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Start,
    /// AuthenticationSASL was sent for `user`; with SCRAM-SHA-256-PLUS among the
    /// mechanisms when there is `channel_binding` data.
    Offered {
        user: String,
        channel_binding: Option<Vec<u8>>,
    },
    /// The server's first message was sent.
    ServerFirstSent {
        user: String,
        exchange: Exchange,
    },
    Done,
}

/// What the handler does next.
#[derive(Debug)]
pub enum Step {
    /// Send this to the client and wait for its answer.
    Send(Authentication),
    /// Send this (if any), then finish the startup: the client is `user`.
    LoggedIn {
        last: Option<Authentication>,
        user: String,
        role: Option<RoleMeta>,
    },
}

/// Who logs in, from the startup message.
pub struct Client<'a> {
    pub peer: std::net::IpAddr,
    pub tls: bool,
    /// The TLS channel's `tls-server-end-point` data, when it has some.
    pub channel_binding: Option<Vec<u8>>,
    pub user: &'a str,
    pub database: Option<&'a str>,
}

impl Login {
    /// The method the rules give the client: in at once (trust), a SASL offer, or refused.
    pub fn on_startup(
        &self,
        client: &Client<'_>,
        access: &Access,
        catalog: &Catalog,
    ) -> Result<Step, PgWireError> {
        let asking = Asking {
            peer: client.peer,
            tls: client.tls,
            user: client.user,
            database: client.database.unwrap_or(client.user),
        };
        let role = catalog.role(client.user);
        match access.decide(&asking, catalog.any_password()) {
            Decision::Refused { rejected } => Err(fatal("28000", &hba::refusal(&asking, rejected))),
            Decision::Trust { open } => {
                if role.is_none() && !open {
                    let message = format!("role \"{}\" does not exist", client.user);
                    return Err(fatal("28000", &message));
                }
                *self.state.lock() = State::Done;
                may_log_in(client.user, role.as_ref())?;
                Ok(Step::LoggedIn {
                    last: None,
                    user: client.user.to_string(),
                    role,
                })
            }
            Decision::ScramSha256 => {
                let user = client.user.to_string();
                let channel_binding = client.channel_binding.clone();
                // PostgreSQL's order: the one with channel binding first.
                let mechanisms = match channel_binding {
                    Some(_) => vec![scram::MECHANISM_PLUS, scram::MECHANISM],
                    None => vec![scram::MECHANISM],
                };
                *self.state.lock() = State::Offered {
                    user,
                    channel_binding,
                };
                let mechanisms = mechanisms.into_iter().map(String::from).collect();
                Ok(Step::Send(Authentication::SASL(mechanisms)))
            }
        }
    }

    /// The client's SASL messages: the server's first message, then the final check.
    pub fn on_password(
        &self,
        message: PasswordMessageFamily,
        catalog: &Catalog,
    ) -> Result<Step, PgWireError> {
        let state = std::mem::replace(&mut *self.state.lock(), State::Done);
        match state {
            State::Offered {
                user,
                channel_binding,
            } => {
                let initial = message.into_sasl_initial_response()?;
                let binding = match (initial.auth_method.as_str(), &channel_binding) {
                    (scram::MECHANISM, None) => Binding::Unavailable,
                    (scram::MECHANISM, Some(_)) => Binding::Declined,
                    (scram::MECHANISM_PLUS, Some(data)) => Binding::Chosen(data),
                    _ => {
                        let message = "client selected an invalid SASL authentication mechanism";
                        return Err(fatal("08P01", message));
                    }
                };
                let verifier = usable_verifier(catalog.role(&user).as_ref())
                    .unwrap_or_else(|| Verifier::mock(&user, MOCK_SECRET.as_slice()));
                let first = initial.data.unwrap_or_default();
                let (exchange, server_first) =
                    Exchange::start(&first, verifier, binding).map_err(|f| failure(f, &user))?;
                *self.state.lock() = State::ServerFirstSent { user, exchange };
                Ok(Step::Send(Authentication::SASLContinue(Bytes::from(
                    server_first,
                ))))
            }
            State::ServerFirstSent { user, exchange } => {
                let response = message.into_sasl_response()?;
                let server_final = exchange
                    .finish(&response.data)
                    .map_err(|f| failure(f, &user))?;
                let role = catalog.role(&user);
                may_log_in(&user, role.as_ref())?;
                Ok(Step::LoggedIn {
                    last: Some(Authentication::SASLFinal(Bytes::from(server_final))),
                    user,
                    role,
                })
            }
            State::Start | State::Done => Err(fatal(
                "08P01",
                "expected SASL response, got an unexpected password message",
            )),
        }
    }
}

/// The role's verifier, if it has one that works now (set, well-formed, not expired).
fn usable_verifier(role: Option<&RoleMeta>) -> Option<Verifier> {
    let role = role?;
    let verifier = Verifier::parse(role.password.as_deref()?)?;
    let expired = role
        .valid_until_micros
        .is_some_and(|until| until <= chrono::Utc::now().timestamp_micros());
    (!expired).then_some(verifier)
}

/// PostgreSQL's answer to a failed exchange: one message for every wrong-password case.
fn failure(failure: Failure, user: &str) -> PgWireError {
    match failure {
        Failure::Malformed(why) => fatal("08P01", why),
        Failure::WrongProof => {
            let message = format!("password authentication failed for user \"{user}\"");
            fatal("28P01", &message)
        }
    }
}

/// Refuses a role without LOGIN, after it proved who it is (as PostgreSQL does).
fn may_log_in(user: &str, role: Option<&RoleMeta>) -> Result<(), PgWireError> {
    match role {
        Some(role) if !role.login => {
            let message = format!("role \"{user}\" is not permitted to log in");
            Err(fatal("28000", &message))
        }
        _ => Ok(()),
    }
}
