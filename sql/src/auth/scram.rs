//! SCRAM-SHA-256 (RFC 5802, RFC 7677) on the server's side, as PostgreSQL runs it: against a
//! stored verifier (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`), never a
//! password. pgwire's own SCRAM wants the salted password, which logs in as the user if it
//! leaks; a verifier does not, and it is what PostgreSQL stores and what `\password` and
//! drivers send in `ALTER ROLE … PASSWORD`, so the exchange is written here on pgwire's
//! SASL messages.
//!
//! A role without a usable verifier (unknown, no password) gets a mock exchange, as in
//! PostgreSQL: a salt derived from its name and a secret of the process, so a client cannot
//! tell from the exchange whether the role exists; it fails at the proof like a wrong
//! password.
//!
//! Over TLS the server also offers SCRAM-SHA-256-PLUS: the exchange is then bound to the
//! channel (`tls-server-end-point`, RFC 5929: a hash of the server's certificate), so a
//! man in the middle with a certificate of its own cannot relay it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The mechanism Vecraft offers.
pub const MECHANISM: &str = "SCRAM-SHA-256";
/// The mechanism with channel binding, offered over TLS.
pub const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// The channel binding type PostgreSQL and Vecraft support.
const BINDING_TYPE: &str = "tls-server-end-point";
/// Random bytes in the server's half of the nonce (PostgreSQL's length).
const SERVER_NONCE_BYTES: usize = 18;
/// Iterations of a mock verifier (PostgreSQL's default).
const MOCK_ITERATIONS: u32 = 4096;
/// The most iterations a stored verifier may ask for (bounds the client's work we invite).
const MAX_ITERATIONS: u32 = 1 << 24;

type HmacSha256 = Hmac<Sha256>;

/// A SCRAM-SHA-256 verifier: what the server keeps of a password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl Verifier {
    /// Reads PostgreSQL's text form; `None` when `text` is not one.
    pub fn parse(text: &str) -> Option<Verifier> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored_key, server_key) = keys.split_once(':')?;
        let iterations: u32 = iterations.parse().ok()?;
        let key = |b64: &str| -> Option<[u8; 32]> { BASE64.decode(b64).ok()?.try_into().ok() };
        let salt = BASE64.decode(salt).ok()?;
        let valid = (1..=MAX_ITERATIONS).contains(&iterations) && !salt.is_empty();
        valid.then_some(Verifier {
            iterations,
            salt,
            stored_key: key(stored_key)?,
            server_key: key(server_key)?,
        })
    }

    /// A verifier that no proof matches, with a salt that depends only on `user` and
    /// `secret` (the same on every attempt, as a real one's would be).
    pub fn mock(user: &str, secret: &[u8]) -> Verifier {
        let salt = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update(secret)
            .finalize();
        let mut stored_key = [0u8; 32];
        rand::fill(&mut stored_key);
        Verifier {
            iterations: MOCK_ITERATIONS,
            salt: salt[..16].to_vec(),
            stored_key,
            server_key: [0u8; 32],
        }
    }
}

/// The verifier to store for `password` (with a fresh salt), or `password` itself when it
/// already is a SCRAM-SHA-256 verifier (drivers and `\password` send those).
pub fn verifier_for(password: &str) -> String {
    if Verifier::parse(password).is_some() {
        return password.to_string();
    }
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

/// Why an exchange failed.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// The client broke the protocol (08P01); the text says how.
    Malformed(&'static str),
    /// The proof did not match (28P01).
    WrongProof,
}

/// Channel binding, as the server offered it and the client chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding<'a> {
    /// Not offered (no TLS): SCRAM-SHA-256 only.
    Unavailable,
    /// Offered; the client chose SCRAM-SHA-256 without it.
    Declined,
    /// The client chose SCRAM-SHA-256-PLUS: `c=` must carry this hash of the certificate.
    Chosen(&'a [u8]),
}

/// The server's state after the client's first message.
#[derive(Debug)]
pub struct Exchange {
    verifier: Verifier,
    /// The client's first message without its GS2 header, as the proofs sign it.
    client_first_bare: String,
    server_first: String,
    /// What `c=` must carry: the GS2 header and the channel binding data, base64.
    channel_binding: String,
    nonce: String,
}

impl Exchange {
    /// Answers the client's first message (`n,,n=…,r=…`, or `p=tls-server-end-point,,…`
    /// when it chose channel binding) with the server's (`r=…,s=…,i=…`).
    pub fn start(
        client_first: &[u8],
        verifier: Verifier,
        binding: Binding<'_>,
    ) -> Result<(Exchange, String), Failure> {
        let text = std::str::from_utf8(client_first)
            .map_err(|_| Failure::Malformed("malformed SCRAM message"))?;
        let (header, bare) = split_gs2_header(text, binding)?;
        let client_nonce = attribute(bare, 'r')?;
        if client_nonce.is_empty() || !client_nonce.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Failure::Malformed("malformed SCRAM message"));
        }
        let mut random = [0u8; SERVER_NONCE_BYTES];
        rand::fill(&mut random);
        let nonce = format!("{client_nonce}{}", BASE64.encode(random));
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&verifier.salt),
            verifier.iterations
        );
        let exchange = Exchange {
            verifier,
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            channel_binding: match binding {
                Binding::Chosen(data) => BASE64.encode([header.as_bytes(), data].concat()),
                _ => BASE64.encode(header),
            },
            nonce,
        };
        Ok((exchange, server_first))
    }

    /// Checks the client's final message (`c=…,r=…,p=…`); the server's final message
    /// (`v=…`) when the proof matches.
    pub fn finish(self, client_final: &[u8]) -> Result<String, Failure> {
        let malformed = Failure::Malformed("malformed SCRAM message");
        let text = std::str::from_utf8(client_final).map_err(|_| malformed)?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(Failure::Malformed("malformed SCRAM message"))?;
        if attribute(without_proof, 'c')? != self.channel_binding {
            return Err(Failure::Malformed("SCRAM channel binding check failed"));
        }
        if attribute(without_proof, 'r')? != self.nonce {
            return Err(Failure::Malformed("SCRAM nonce mismatch"));
        }
        let proof: [u8; 32] = BASE64
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(Failure::Malformed("malformed SCRAM message"))?;
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
        let stored_key = Sha256::digest(&client_key);
        if !bool::from(stored_key.as_slice().ct_eq(&self.verifier.stored_key)) {
            return Err(Failure::WrongProof);
        }
        let server_signature = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)))
    }
}

/// Splits `n,,rest`, `y,,rest` or `p=type,,rest` into the GS2 header and the rest, and
/// checks its flag against `binding` as PostgreSQL does: `p=` only with SCRAM-SHA-256-PLUS
/// (and `tls-server-end-point`), `n` and `y` only without it, and `y` ("I could bind, the
/// server did not offer it") refused when the server did offer it: a downgrade. An
/// authorization identity (`a=`) is refused.
fn split_gs2_header<'t>(
    text: &'t str,
    binding: Binding<'_>,
) -> Result<(&'t str, &'t str), Failure> {
    let malformed = Failure::Malformed("malformed SCRAM message");
    let flag = text.split(',').next().ok_or(malformed)?;
    let chosen = matches!(binding, Binding::Chosen(_));
    match flag {
        "n" if !chosen => {}
        "y" if binding == Binding::Declined => {
            return Err(Failure::Malformed(
                "SCRAM channel binding negotiation error",
            ));
        }
        "y" if !chosen => {}
        f if f.starts_with("p=") && chosen => {
            if f != format!("p={BINDING_TYPE}") {
                return Err(Failure::Malformed("unsupported SCRAM channel-binding type"));
            }
        }
        f if f.starts_with("p=") && binding == Binding::Unavailable => {
            return Err(Failure::Malformed(
                "channel binding is not supported without SSL",
            ));
        }
        _ => return Err(Failure::Malformed("malformed SCRAM message")),
    }
    let after_flag = &text[flag.len()..];
    let Some(after_authzid) = after_flag.strip_prefix(",,") else {
        return Err(Failure::Malformed(
            "client uses authorization identity, but it is not supported",
        ));
    };
    let header_len = text.len() - after_authzid.len();
    Ok((&text[..header_len], after_authzid))
}

/// The value of attribute `name` (`name=value`) of a comma-separated SCRAM message.
fn attribute(message: &str, name: char) -> Result<&str, Failure> {
    message
        .split(',')
        .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
        .ok_or(Failure::Malformed("malformed SCRAM message"))
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's final message for `password`, computed as RFC 5802 says a client does.
    fn client_final(password: &str, server_first: &str, client_first_bare: &str) -> String {
        bound_client_final(password, server_first, client_first_bare, "biws")
    }

    /// [`client_final`] with `c=` carrying `channel` (base64 of the GS2 header and data).
    fn bound_client_final(password: &str, server_first: &str, bare: &str, channel: &str) -> String {
        let client_first_bare = bare;
        let attr = |name| attribute(server_first, name).unwrap().to_string();
        let (nonce, salt, iterations) = (attr('r'), attr('s'), attr('i'));
        let salt = BASE64.decode(salt).unwrap();
        let mut salted = [0u8; 32];
        pbkdf2_hmac_sha256(
            password.as_bytes(),
            &salt,
            iterations.parse().unwrap(),
            &mut salted,
        );
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(client_key);
        let without_proof = format!("c={channel},r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        format!("{without_proof},p={}", BASE64.encode(proof))
    }

    fn pbkdf2_hmac_sha256(password: &[u8], salt: &[u8], rounds: u32, out: &mut [u8; 32]) {
        let mut u = hmac(password, &[salt, &1u32.to_be_bytes()].concat());
        *out = u;
        for _ in 1..rounds {
            u = hmac(password, &u);
            out.iter_mut().zip(u).for_each(|(o, x)| *o ^= x);
        }
    }

    #[test]
    fn the_right_password_passes_and_a_wrong_one_fails() {
        let stored = verifier_for("pencil");
        for (password, ok) in [("pencil", true), ("pen", false)] {
            let verifier = Verifier::parse(&stored).unwrap();
            let bare = "n=,r=rOprNGfwEbeRWgbNEkqO";
            let (exchange, server_first) = Exchange::start(
                format!("n,,{bare}").as_bytes(),
                verifier,
                Binding::Unavailable,
            )
            .unwrap();
            let last = client_final(password, &server_first, bare);
            let answer = exchange.finish(last.as_bytes());
            assert_eq!(answer.is_ok(), ok, "{password}: {answer:?}");
            if !ok {
                assert_eq!(answer.unwrap_err(), Failure::WrongProof);
            }
        }
    }

    #[test]
    fn channel_binding_holds_only_with_the_servers_certificate_hash() {
        let stored = verifier_for("pencil");
        let header = "p=tls-server-end-point,,";
        let bare = "n=,r=nonce";
        let first = format!("{header}{bare}");
        for (data, ok) in [(&b"our hash"[..], true), (b"relayed", false)] {
            let verifier = Verifier::parse(&stored).unwrap();
            let (exchange, server_first) =
                Exchange::start(first.as_bytes(), verifier, Binding::Chosen(b"our hash")).unwrap();
            let channel = BASE64.encode([header.as_bytes(), data].concat());
            let last = bound_client_final("pencil", &server_first, bare, &channel);
            let answer = exchange.finish(last.as_bytes());
            match ok {
                true => assert!(answer.is_ok(), "{answer:?}"),
                false => assert_eq!(
                    answer.unwrap_err(),
                    Failure::Malformed("SCRAM channel binding check failed")
                ),
            }
        }
        let start = |first: &str, binding| {
            let verifier = Verifier::parse(&stored).unwrap();
            Exchange::start(first.as_bytes(), verifier, binding).map(|_| ())
        };
        let chosen = Binding::Chosen(b"our hash");
        let refused = |why| Err(Failure::Malformed(why));
        // A client that could bind, told the server could not: a downgrade.
        assert_eq!(
            start("y,,n=,r=a", Binding::Declined),
            refused("SCRAM channel binding negotiation error")
        );
        assert_eq!(start("y,,n=,r=a", Binding::Unavailable), Ok(()));
        assert_eq!(start("n,,n=,r=a", Binding::Declined), Ok(()));
        assert_eq!(
            start("n,,n=,r=a", chosen),
            refused("malformed SCRAM message")
        );
        assert_eq!(
            start("p=tls-unique,,n=,r=a", chosen),
            refused("unsupported SCRAM channel-binding type")
        );
        assert_eq!(
            start("p=tls-server-end-point,,n=,r=a", Binding::Declined),
            refused("malformed SCRAM message")
        );
    }

    #[test]
    fn a_mock_verifier_fails_at_the_proof_with_a_stable_salt() {
        let (a, b) = (Verifier::mock("ghost", b"k"), Verifier::mock("ghost", b"k"));
        assert_eq!(a.salt, b.salt);
        assert_ne!(a.salt, Verifier::mock("other", b"k").salt);
        let bare = "n=,r=abc";
        let (exchange, server_first) =
            Exchange::start(b"n,,n=,r=abc", a, Binding::Unavailable).unwrap();
        let last = client_final("anything", &server_first, bare);
        assert_eq!(exchange.finish(last.as_bytes()), Err(Failure::WrongProof));
    }

    #[test]
    fn verifiers_are_kept_as_sent_and_malformed_ones_are_not_verifiers() {
        let stored = verifier_for("secret");
        assert_eq!(verifier_for(&stored), stored);
        assert!(stored.starts_with("SCRAM-SHA-256$4096:"));
        for bad in [
            "",
            "md5abc",
            "SCRAM-SHA-256$0:c2FsdA==$a:b",
            "SCRAM-SHA-256$4096:$a:b",
        ] {
            assert!(Verifier::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn protocol_breaks_are_malformed_not_wrong_passwords() {
        let v = || Verifier::parse(&verifier_for("x")).unwrap();
        for bad in [
            &b"p=tls-server-end-point,,n=,r=a"[..],
            b"n,a=bob,n=,r=a",
            b"q,,r=a",
            b"n,,n=",
        ] {
            assert!(
                matches!(
                    Exchange::start(bad, v(), Binding::Unavailable),
                    Err(Failure::Malformed(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let (exchange, server_first) =
            Exchange::start(b"n,,n=,r=abc", v(), Binding::Unavailable).unwrap();
        let nonce = attribute(&server_first, 'r').unwrap();
        let wrong_nonce = format!("c=biws,r={nonce}x,p={}", BASE64.encode([0u8; 32]));
        assert!(matches!(
            exchange.finish(wrong_nonce.as_bytes()),
            Err(Failure::Malformed(_))
        ));
    }
}
