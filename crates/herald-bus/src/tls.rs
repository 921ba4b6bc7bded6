//! `rediss://`: the Redis client with TLS (rustls, through the redis crate's
//! `tokio-rustls-comp`), trusting the CA file of `HERALD_REDIS_CA_FILE` or, without one, the
//! operating system's store. The same client opens the publish pool's connections and the
//! subscriber connection, so both are encrypted and checked the same way. The process's
//! rustls crypto provider must be installed first (`herald_store::tls::install_crypto_provider`
//! at start).

use std::path::Path;

use redis::{Client, TlsCertificates};

/// Reads a PEM CA file and checks it holds at least one certificate.
pub fn read_ca(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let text = String::from_utf8_lossy(&pem);
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!("{shown}: holds no PEM certificate"));
    }
    Ok(pem)
}

/// The client for `url`: with TLS (and `ca_file`'s CA, if given) for `rediss://`, plain
/// otherwise.
pub fn client(url: &str, ca_file: Option<&Path>) -> Result<Client, String> {
    if url.starts_with("rediss://") {
        let root_cert = ca_file.map(read_ca).transpose()?;
        Client::build_with_tls(
            url,
            TlsCertificates {
                client_tls: None,
                root_cert,
            },
        )
        .map_err(|e| format!("invalid rediss:// URL or CA: {e}"))
    } else {
        Client::open(url).map_err(|e| format!("invalid redis url: {e}"))
    }
}
