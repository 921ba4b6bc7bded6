//! TLS to PostgreSQL with rustls, configured the way libpq is: `sslmode` and `sslrootcert` in
//! the connection URL.
//!
//! tokio-postgres understands only `sslmode=disable|prefer|require` and nothing of
//! certificates, so [`PgTls::split`] takes `sslmode` and `sslrootcert` out of the URL and hands
//! the rest to tokio-postgres. The modes, as in libpq:
//!
//! | `sslmode`     | encrypted          | server certificate checked                      |
//! |---------------|--------------------|-------------------------------------------------|
//! | `disable`     | no                 | -                                               |
//! | `prefer`      | if the server can  | no (the default when `sslmode` is absent)       |
//! | `require`     | yes                | no; with `sslrootcert`, as `verify-ca`          |
//! | `verify-ca`   | yes                | chain up to the CA, host name not checked       |
//! | `verify-full` | yes                | chain up to the CA, and the host name           |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the operating system's
//! store; `verify-ca`/`verify-full` without it use the system store. Client certificates
//! (`sslcert`, `sslkey`) and CRLs are not supported and refused by name.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// Installs `ring` as the process's rustls crypto provider (used by every crate that builds a
/// rustls config without naming one: the Redis client, the JWKS fetcher). Idempotent.
pub fn install_crypto_provider() {
    // Err means a provider is already installed: either ours or, in a test binary, the same
    // one from an earlier call.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(v: &str) -> Result<SslMode, String> {
        Ok(match v {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err(
                    "sslmode=allow is not supported (use disable, prefer, require, verify-ca or verify-full)"
                        .to_owned(),
                )
            }
            other => {
                return Err(format!(
                    "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
                ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// The operating system's store (`sslrootcert=system`, or none given with `verify-*`).
    System,
    /// A PEM file.
    File(PathBuf),
}

/// The TLS half of a database URL.
#[derive(Clone, PartialEq, Eq)]
pub struct PgTls {
    pub mode: SslMode,
    /// `None` with `prefer`/`require` and no `sslrootcert`: the certificate is not checked.
    pub roots: Option<RootCerts>,
}

impl fmt::Debug for PgTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTls")
            .field("mode", &self.mode.as_str())
            .field("roots", &self.roots)
            .finish()
    }
}

/// URL parameters that name TLS features this build does not have.
const UNSUPPORTED: &[&str] = &[
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslsni",
];

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl PgTls {
    /// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL. Returns the URL for
    /// tokio-postgres (its `sslmode` set to what it understands) and the TLS settings. Checks
    /// that a CA file exists and holds at least one certificate, so a bad setting is refused
    /// at start rather than at the first connection.
    pub fn split(url: &str) -> Result<(String, PgTls), String> {
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, q),
            None => (url, ""),
        };
        let mut mode = None;
        let mut rootcert = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "sslmode" => mode = Some(SslMode::parse(&percent_decode(v))?),
                "sslrootcert" => rootcert = Some(percent_decode(v)),
                k if UNSUPPORTED.contains(&k) => {
                    return Err(format!(
                        "{k} is not supported (client certificates and CRLs are not implemented)"
                    ))
                }
                _ => kept.push(pair),
            }
        }
        let mode = mode.unwrap_or(SslMode::Prefer);
        let roots = match rootcert.as_deref() {
            Some("system") => Some(RootCerts::System),
            Some(path) => {
                let path = PathBuf::from(path);
                load_roots(&path)?;
                Some(RootCerts::File(path))
            }
            None if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) => {
                Some(RootCerts::System)
            }
            None => None,
        };
        let pg_mode = match mode {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            _ => "require",
        };
        kept.push(match pg_mode {
            "disable" => "sslmode=disable",
            "prefer" => "sslmode=prefer",
            _ => "sslmode=require",
        });
        let rebuilt = format!("{base}?{}", kept.join("&"));
        Ok((rebuilt, PgTls { mode, roots }))
    }

    /// The rustls configuration for these settings.
    pub fn client_config(&self) -> Result<ClientConfig, String> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS protocol versions: {e}"))?;
        let verify = match (self.mode, &self.roots) {
            (SslMode::Disable, _) | (SslMode::Prefer | SslMode::Require, None) => None,
            (SslMode::VerifyFull, Some(roots)) => Some((roots, true)),
            (_, Some(roots)) => Some((roots, false)),
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => Some((&RootCerts::System, true)),
        };
        let config = match verify {
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
                .with_no_client_auth(),
            Some((roots, check_name)) => {
                let store = Arc::new(match roots {
                    RootCerts::File(p) => load_roots(p)?,
                    RootCerts::System => system_roots()?,
                });
                let webpki = WebPkiServerVerifier::builder_with_provider(store, provider())
                    .build()
                    .map_err(|e| format!("building the certificate verifier: {e}"))?;
                if check_name {
                    builder.with_webpki_verifier(webpki).with_no_client_auth()
                } else {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
                        .with_no_client_auth()
                }
            }
        };
        Ok(config)
    }
}

fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("sslrootcert {shown}: cannot read: {e}"))?;
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("sslrootcert {shown}: not PEM certificates: {e}"))?;
        store
            .add(cert)
            .map_err(|e| format!("sslrootcert {shown}: {e}"))?;
    }
    if store.is_empty() {
        return Err(format!("sslrootcert {shown}: holds no certificate"));
    }
    Ok(store)
}

fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(format!(
            "no system CA certificates found (install ca-certificates, or set sslrootcert=<file>){}",
            found
                .errors
                .first()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
    }
    Ok(store)
}

/// `verify-ca`: the chain must lead to a trusted CA; the name in the certificate is not
/// compared with the host connected to.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Ok(v) => Ok(v),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer`/`require` without a CA: encrypted, but any certificate is accepted (libpq's
/// meaning of these modes). The handshake signatures are still checked.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_rootcert_are_taken_out_of_the_url() {
        let (url, tls) = PgTls::split("postgres://u:p@db:5432/herald?application_name=x&sslmode=verify-full&sslrootcert=system").unwrap();
        assert_eq!(
            url,
            "postgres://u:p@db:5432/herald?application_name=x&sslmode=require"
        );
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.roots, Some(RootCerts::System));
    }

    #[test]
    fn no_sslmode_means_prefer_as_in_libpq() {
        let (url, tls) = PgTls::split("postgres://db/herald").unwrap();
        assert_eq!(url, "postgres://db/herald?sslmode=prefer");
        assert_eq!(tls.mode, SslMode::Prefer);
        assert_eq!(tls.roots, None);
        let (_, tls) = PgTls::split("postgres://db/herald?sslmode=verify-ca").unwrap();
        assert_eq!(tls.roots, Some(RootCerts::System));
    }

    #[test]
    fn what_cannot_work_is_refused_by_name() {
        for (url, needle) in [
            (
                "postgres://db/h?sslmode=verify",
                "sslmode=verify is not one of",
            ),
            (
                "postgres://db/h?sslmode=allow",
                "sslmode=allow is not supported",
            ),
            ("postgres://db/h?sslcert=/c.pem", "sslcert is not supported"),
            ("postgres://db/h?sslkey=/k.pem", "sslkey is not supported"),
            (
                "postgres://db/h?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
                "sslrootcert /nonexistent/ca.pem: cannot read",
            ),
        ] {
            let err = PgTls::split(url).unwrap_err();
            assert!(err.contains(needle), "{url}: {err}");
        }
    }

    #[test]
    fn a_rootcert_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("herald-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let url = format!(
            "postgres://db/h?sslmode=verify-ca&sslrootcert={}",
            path.display()
        );
        let err = PgTls::split(&url).unwrap_err();
        assert!(err.contains("holds no certificate"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn percent_encoded_paths_are_decoded() {
        assert_eq!(percent_decode("%2Fetc%2Fca%20x.pem"), "/etc/ca x.pem");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
