//! Who may connect, and how they prove who they are: rules in the shape of PostgreSQL's
//! `pg_hba.conf`, read top to bottom, the first whose connection type, database, user and
//! address match deciding the method (`trust`, `scram-sha-256`, `reject`); no rule matching
//! refuses the connection. In the node's TOML:
//!
//! ```toml
//! [[access]]
//! type = "host"             # host | hostssl | hostnossl
//! database = "all"          # optional: "all" or a name or a list of names
//! user = ["alice", "bob"]   # "all" or a role or a list of roles
//! address = "10.0.0.0/8"    # a CIDR range, one address, or "all"
//! method = "scram-sha-256"  # trust | scram-sha-256 | reject
//! ```
//!
//! Without rules the node keeps the embedded default: loopback clients are trusted while no
//! role has a password, and every other client (or every client, once a password is set)
//! logs in with SCRAM-SHA-256.

use std::net::IpAddr;

use ipnet::IpNet;

/// One `[[access]]` entry as the config file spells it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub database: Option<Names>,
    pub user: Names,
    pub address: String,
    pub method: String,
}

/// `"all"`, one name, or a list of names.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum Names {
    One(String),
    Many(Vec<String>),
}

impl Names {
    fn matches(&self, name: &str) -> bool {
        match self {
            Names::One(all) if all == "all" => true,
            Names::One(one) => one == name,
            Names::Many(many) => many.iter().any(|n| n == name),
        }
    }
}

/// How a client proves who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Trust,
    ScramSha256,
    Reject,
}

/// Which connections a rule is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// TLS or not.
    Host,
    HostSsl,
    HostNoSsl,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    kind: Kind,
    database: Option<Names>,
    user: Names,
    /// `None`: any address.
    address: Option<IpNet>,
    method: Method,
}

/// The rules of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// `None`: the embedded default (see the module's doc).
    rules: Option<Vec<Rule>>,
    /// Plain connections match no rule (`--require-tls`).
    require_tls: bool,
}

/// What a connection gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// In without a password. `open`: by the embedded default, where any user name is
    /// taken (as before roles existed); under a `trust` rule the role must exist.
    Trust {
        open: bool,
    },
    ScramSha256,
    /// Refused by a `reject` rule (`true`) or by no rule matching.
    Refused {
        rejected: bool,
    },
}

/// Who is asking: the client's address, whether it speaks TLS, the role and database it
/// named.
pub struct Asking<'a> {
    pub peer: IpAddr,
    pub tls: bool,
    pub user: &'a str,
    pub database: &'a str,
}

impl Access {
    /// The rules of the config's `[[access]]` entries, in order; `[]` keeps the default.
    pub fn from_config(entries: &[RuleConfig]) -> Result<Access, String> {
        if entries.is_empty() {
            return Ok(Access::default());
        }
        let rules = entries
            .iter()
            .enumerate()
            .map(|(i, e)| rule(e).map_err(|why| format!("access rule {}: {why}", i + 1)))
            .collect::<Result<_, _>>()?;
        Ok(Access {
            rules: Some(rules),
            require_tls: false,
        })
    }

    /// These rules, under which a client without TLS matches none when `require_tls` (as
    /// if every line were `hostssl`).
    pub fn requiring_tls(self, require_tls: bool) -> Access {
        Access {
            require_tls,
            ..self
        }
    }

    /// What the node's log says at start.
    pub fn describe(&self) -> String {
        let rules = match &self.rules {
            None => "access: the embedded default: clients on loopback are trusted while no \
                     role has a password, every other client logs in with SCRAM-SHA-256"
                .into(),
            Some(rules) => format!("access: {} rule(s) from the config file", rules.len()),
        };
        match self.require_tls {
            true => format!("{rules}; clients without TLS are refused"),
            false => rules,
        }
    }

    /// What `asking` gets; `any_password` says whether some role has a password.
    pub fn decide(&self, asking: &Asking<'_>, any_password: bool) -> Decision {
        let peer = canonical(asking.peer);
        if self.require_tls && !asking.tls {
            return Decision::Refused { rejected: false };
        }
        let Some(rules) = &self.rules else {
            return match peer.is_loopback() && !any_password {
                true => Decision::Trust { open: true },
                false => Decision::ScramSha256,
            };
        };
        let matching = rules.iter().find(|r| {
            let kind = match r.kind {
                Kind::Host => true,
                Kind::HostSsl => asking.tls,
                Kind::HostNoSsl => !asking.tls,
            };
            kind && r
                .database
                .as_ref()
                .is_none_or(|d| d.matches(asking.database))
                && r.user.matches(asking.user)
                && r.address.is_none_or(|net| net.contains(&peer))
        });
        match matching.map(|r| r.method) {
            Some(Method::Trust) => Decision::Trust { open: false },
            Some(Method::ScramSha256) => Decision::ScramSha256,
            Some(Method::Reject) => Decision::Refused { rejected: true },
            None => Decision::Refused { rejected: false },
        }
    }
}

/// PostgreSQL's words for a refused connection (28000).
pub fn refusal(asking: &Asking<'_>, rejected: bool) -> String {
    let encryption = if asking.tls {
        "SSL encryption"
    } else {
        "no encryption"
    };
    let host = canonical(asking.peer);
    let (user, database) = (asking.user, asking.database);
    match rejected {
        true => format!(
            "pg_hba.conf rejects connection for host \"{host}\", user \"{user}\", \
             database \"{database}\", {encryption}"
        ),
        false => format!(
            "no pg_hba.conf entry for host \"{host}\", user \"{user}\", \
             database \"{database}\", {encryption}"
        ),
    }
}

/// An IPv4 client seen through an IPv6 socket as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn rule(e: &RuleConfig) -> Result<Rule, String> {
    let kind = match e.kind.as_str() {
        "host" => Kind::Host,
        "hostssl" => Kind::HostSsl,
        "hostnossl" => Kind::HostNoSsl,
        other => return Err(format!("type \"{other}\": host, hostssl or hostnossl")),
    };
    let method = match e.method.as_str() {
        "trust" => Method::Trust,
        "scram-sha-256" => Method::ScramSha256,
        "reject" => Method::Reject,
        other => {
            return Err(format!(
                "method \"{other}\": trust, scram-sha-256 or reject"
            ));
        }
    };
    let address = match e.address.as_str() {
        "all" => None,
        text => Some(match text.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => text
                .parse::<IpAddr>()
                .map(IpNet::from)
                .map_err(|_| format!("address \"{text}\": a CIDR range, an address or all"))?,
        }),
    };
    Ok(Rule {
        kind,
        database: e.database.clone(),
        user: e.user.clone(),
        address,
        method,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str, user: Names, address: &str, method: &str) -> RuleConfig {
        RuleConfig {
            kind: kind.into(),
            database: None,
            user,
            address: address.into(),
            method: method.into(),
        }
    }

    fn ask(peer: &str, user: &'static str) -> Asking<'static> {
        Asking {
            peer: peer.parse().unwrap(),
            tls: false,
            user,
            database: "postgres",
        }
    }

    #[test]
    fn the_default_trusts_loopback_until_a_password_exists() {
        let access = Access::default();
        let local = ask("127.0.0.1", "anyone");
        assert_eq!(access.decide(&local, false), Decision::Trust { open: true });
        assert_eq!(access.decide(&local, true), Decision::ScramSha256);
        let mapped = ask("::ffff:127.0.0.1", "anyone");
        assert_eq!(
            access.decide(&mapped, false),
            Decision::Trust { open: true }
        );
        let remote = ask("10.1.2.3", "anyone");
        assert_eq!(access.decide(&remote, false), Decision::ScramSha256);
    }

    #[test]
    fn the_first_matching_rule_decides_and_none_refuses() {
        let one = |n: &str| Names::One(n.into());
        let access = Access::from_config(&[
            entry("host", one("mallory"), "all", "reject"),
            entry("host", one("all"), "127.0.0.1", "trust"),
            entry("hostssl", one("all"), "all", "scram-sha-256"),
            entry(
                "host",
                Names::Many(vec!["alice".into(), "bob".into()]),
                "10.0.0.0/8",
                "scram-sha-256",
            ),
        ])
        .unwrap();
        let decide = |peer, user| access.decide(&ask(peer, user), false);
        assert_eq!(
            decide("10.0.0.1", "mallory"),
            Decision::Refused { rejected: true }
        );
        assert_eq!(
            decide("127.0.0.1", "carol"),
            Decision::Trust { open: false }
        );
        assert_eq!(decide("10.9.9.9", "bob"), Decision::ScramSha256);
        assert_eq!(
            decide("10.9.9.9", "carol"),
            Decision::Refused { rejected: false }
        );
        assert_eq!(
            decide("192.168.0.1", "bob"),
            Decision::Refused { rejected: false }
        );
        let mut secure = ask("192.168.0.1", "carol");
        secure.tls = true;
        assert_eq!(access.decide(&secure, false), Decision::ScramSha256);
        let text = refusal(&ask("10.9.9.9", "carol"), false);
        assert_eq!(
            text,
            "no pg_hba.conf entry for host \"10.9.9.9\", user \"carol\", database \"postgres\", \
             no encryption"
        );
    }

    #[test]
    fn require_tls_refuses_plain_clients_before_any_rule() {
        let trust_all = entry("host", Names::One("all".into()), "all", "trust");
        for access in [
            Access::default(),
            Access::from_config(&[trust_all]).unwrap(),
        ] {
            let access = access.requiring_tls(true);
            let mut asking = ask("127.0.0.1", "anyone");
            let refused = Decision::Refused { rejected: false };
            assert_eq!(access.decide(&asking, false), refused);
            asking.tls = true;
            assert_ne!(access.decide(&asking, false), refused);
            assert!(
                access
                    .describe()
                    .ends_with("clients without TLS are refused")
            );
        }
    }

    #[test]
    fn bad_rules_are_refused_by_number() {
        let bad = entry("local", Names::One("all".into()), "all", "trust");
        let e = Access::from_config(&[bad]).unwrap_err();
        assert!(e.starts_with("access rule 1: type \"local\""), "{e}");
        let bad = entry("host", Names::One("all".into()), "10.0.0.0/33", "trust");
        assert!(Access::from_config(&[bad]).is_err());
        let bad = entry("host", Names::One("all".into()), "all", "md5");
        assert!(Access::from_config(&[bad]).is_err());
    }
}
