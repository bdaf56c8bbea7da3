//! `vecraft cert`: a certificate authority and node certificates for a test cluster, so that
//! TLS (the SQL port's `--tls-cert`, the nodes' `--cluster-ca`) can be tried without
//! openssl. A production cluster uses the organisation's CA; README "Security" gives the
//! openssl commands for that.
//!
//! The CA is made once per directory (`ca.crt`, `ca.key`) and reused after; each `--name`
//! gets `NAME.crt` and `NAME.key`, signed by it, good for the host names and addresses given
//! and as a server and a client (nodes present it to each other both ways).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, date_time_ymd,
};

/// The CA's subject, followed by a few hex digits of its public key so that two CAs made
/// here have different names. The CA is rebuilt from its key to sign (rcgen cannot read a
/// certificate back without a parser this project does not need), so a `ca.crt` must be one
/// this command made.
const CA_NAME: &str = "Vecraft cluster CA";

/// How long certificates are valid, in years from the start of this one.
const VALID_YEARS: i32 = 10;

#[derive(Debug, Args)]
pub struct CertArgs {
    /// Where the CA (ca.crt, ca.key) is, or is made if it is not there yet, and where the
    /// node certificates go. A CA found there must be one this command made
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// A node certificate to make, signed by the CA: NAME.crt and NAME.key (repeatable)
    #[arg(long, value_name = "NAME")]
    name: Vec<String>,
    /// A host name or IP address the node certificates are good for (repeatable)
    /// [default: localhost, 127.0.0.1, ::1]
    #[arg(long, value_name = "HOST")]
    host: Vec<String>,
}

/// Makes the CA if `args.dir` has none, then each named certificate, and says what it made.
pub fn run(args: CertArgs) -> Result<(), String> {
    for line in make(&args.dir, &args.name, args.host)? {
        println!("{line}");
    }
    Ok(())
}

/// Makes the CA in `dir` if it has none, then a certificate for each of `names`, good for
/// `hosts` (none: loopback's names); what was made, a line each.
pub fn make(dir: &Path, names: &[String], hosts: Vec<String>) -> Result<Vec<String>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut said = Vec::new();
    let ca_key = ca(dir, &mut said)?;
    let issuer = Issuer::new(ca_params(&ca_key), ca_key);
    let hosts = match hosts.is_empty() {
        true => vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        false => hosts,
    };
    for name in names {
        check_name(name)?;
        let key = KeyPair::generate().map_err(|e| format!("a key for {name}: {e}"))?;
        let cert = node_params(name, &hosts)?
            .signed_by(&key, &issuer)
            .map_err(|e| format!("the certificate of {name}: {e}"))?;
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        write(&cert_path, &cert.pem(), false)?;
        write(&key_path, &key.serialize_pem(), true)?;
        said.push(format!(
            "{} and {}: {name}, for {}",
            cert_path.display(),
            key_path.display(),
            hosts.join(", ")
        ));
    }
    Ok(said)
}

/// The CA's key: read from `dir`, or made there with its certificate; `said` gets which.
fn ca(dir: &Path, said: &mut Vec<String>) -> Result<KeyPair, String> {
    let (cert_path, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
    match (cert_path.exists(), key_path.exists()) {
        (true, false) | (false, true) => {
            return Err(format!(
                "{}: one of ca.crt and ca.key is there without the other; move it away to \
                 make a new CA",
                dir.display()
            ));
        }
        _ => {}
    }
    if key_path.exists() {
        let pem = std::fs::read_to_string(&key_path)
            .map_err(|e| format!("{}: {e}", key_path.display()))?;
        said.push(format!("{}: the CA in use", cert_path.display()));
        return KeyPair::from_pem(&pem).map_err(|e| format!("{}: {e}", key_path.display()));
    }
    let key = KeyPair::generate().map_err(|e| format!("the CA's key: {e}"))?;
    let cert = ca_params(&key)
        .self_signed(&key)
        .map_err(|e| format!("the CA's certificate: {e}"))?;
    write(&key_path, &key.serialize_pem(), true)?;
    write(&cert_path, &cert.pem(), false)?;
    said.push(format!(
        "{} and {}: a new CA (give clients ca.crt: sslrootcert=…)",
        cert_path.display(),
        key_path.display()
    ));
    Ok(key)
}

fn ca_params(key: &KeyPair) -> CertificateParams {
    // The public key's first bytes after the point format byte: random for a new key.
    let tag: String = (key.public_key_raw().iter().skip(1).take(4))
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{CA_NAME} {tag}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params);
    params
}

fn node_params(name: &str, hosts: &[String]) -> Result<CertificateParams, String> {
    let mut params = CertificateParams::new(hosts.to_vec())
        .map_err(|e| format!("host names {}: {e}", hosts.join(", ")))?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params);
    Ok(params)
}

/// Valid from the start of this year, for [`VALID_YEARS`].
fn set_validity(params: &mut CertificateParams) {
    const SECONDS_PER_YEAR: u64 = 31_556_952; // the Gregorian calendar's average
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let year = 1970 + (seconds / SECONDS_PER_YEAR) as i32;
    params.not_before = date_time_ymd(year, 1, 1);
    params.not_after = date_time_ymd(year + VALID_YEARS, 1, 1);
}

/// A name that makes a file in the directory, not one elsewhere.
fn check_name(name: &str) -> Result<(), String> {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
        && name != "ca";
    match plain {
        true => Ok(()),
        false => Err(format!(
            "--name \"{name}\": letters, digits, '-', '_' and '.', not starting with '.', not \"ca\""
        )),
    }
}

/// Writes `text` to `path`; a private key readable by its owner only.
fn write(path: &Path, text: &str, private: bool) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_certificates_chain_to_the_ca_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let args = |name: &str| CertArgs {
            dir: dir.path().to_path_buf(),
            name: vec![name.into()],
            host: vec![],
        };
        run(args("node1")).unwrap();
        let ca_first = std::fs::read(dir.path().join("ca.crt")).unwrap();
        run(args("node2")).unwrap();
        assert_eq!(std::fs::read(dir.path().join("ca.crt")).unwrap(), ca_first);
        for name in ["node1", "node2"] {
            let pem = std::fs::read_to_string(dir.path().join(format!("{name}.crt"))).unwrap();
            assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("ca.key"))
                .unwrap()
                .permissions();
            assert_eq!(mode.mode() & 0o777, 0o600);
        }
        assert!(check_name("../x").is_err() && check_name("ca").is_err());
    }
}
