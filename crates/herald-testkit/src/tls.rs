//! TLS servers for tests: a CA made for the test, and a private PostgreSQL cluster with
//! `ssl = on` and a private `redis-server` with only a TLS port, both presenting a certificate
//! from that CA. Everything lives in a temporary directory removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use crate::{eventually, free_port};

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("herald-{tag}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
}

/// A server certificate and its key, PEM.
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names` (DNS names, or IP addresses such as `127.0.0.1`).
    pub fn issue(&self, names: &[&str]) -> ServerCert {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("server"),
        );
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes the CA certificate to `dir/<file>` and returns the path.
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

const PG_BIN_ROOT: &str = "/usr/lib/postgresql";

fn pg_bin(tool: &str) -> PathBuf {
    // The newest installed major version.
    let mut versions: Vec<u32> = std::fs::read_dir(PG_BIN_ROOT)
        .unwrap_or_else(|e| panic!("{PG_BIN_ROOT}: {e} (is PostgreSQL installed?)"))
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let v = versions
        .last()
        .expect("a PostgreSQL version under /usr/lib/postgresql");
    PathBuf::from(format!("{PG_BIN_ROOT}/{v}/bin/{tool}"))
}

/// Runs a PostgreSQL tool as the `postgres` user when we are root (initdb refuses root).
fn as_postgres(tool: &str) -> Command {
    let is_root = euid_is_root();
    if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(pg_bin(tool));
        c
    } else {
        Command::new(pg_bin(tool))
    }
}

fn euid_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn chown_postgres(path: &Path) {
    let ok = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if euid_is_root() {
        assert!(ok, "chown postgres {}", path.display());
    }
}

/// A private PostgreSQL cluster on a free loopback port with `ssl = on`, trust auth, and the
/// given server certificate. Stopped (fast) and removed on drop.
pub struct TlsPostgres {
    pub port: u16,
    dir: TempDir,
}

impl TlsPostgres {
    pub async fn start(cert: &ServerCert) -> TlsPostgres {
        let dir = TempDir::new("tls-pg");
        let data = dir.0.join("data");
        std::fs::create_dir_all(&data).unwrap();
        chown_postgres(&dir.0);
        let out = as_postgres("initdb")
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "--no-sync"])
            .stdout(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(data.join("server.crt"), &cert.cert_pem).unwrap();
        std::fs::write(data.join("server.key"), &cert.key_pem).unwrap();
        chown_postgres(&data);
        set_mode(&data.join("server.key"), 0o600);
        let port = free_port();
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
             fsync = off\nmax_connections = 30\nshared_buffers = 16MB\n",
            dir.0.display()
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut f, conf.as_bytes()).unwrap();
        // Only TLS connections over TCP: a plaintext attempt is refused by pg_hba.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        chown_postgres(&data);
        let out = as_postgres("pg_ctl")
            .args(["-D"])
            .arg(&data)
            .args(["-l"])
            .arg(dir.0.join("log"))
            .args(["-w", "-t", "30", "start"])
            .stdout(Stdio::null())
            .output()
            .expect("run pg_ctl start");
        let pg = TlsPostgres { port, dir };
        assert!(
            out.status.success(),
            "pg_ctl start: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(pg.dir.0.join("log")).unwrap_or_default()
        );
        let up = eventually(Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        assert!(up, "TLS PostgreSQL on {port} did not start");
        pg
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl")
            .args(["-D"])
            .arg(self.dir.0.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A private `redis-server` listening only on a TLS port (no plaintext port), presenting the
/// given certificate; clients are not asked for certificates. Killed on drop.
pub struct TlsRedis {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl TlsRedis {
    pub async fn start(cert: &ServerCert, ca: &TestCa) -> TlsRedis {
        let dir = TempDir::new("tls-redis");
        std::fs::write(dir.0.join("server.crt"), &cert.cert_pem).unwrap();
        std::fs::write(dir.0.join("server.key"), &cert.key_pem).unwrap();
        let ca_path = ca.write(&dir.0, "ca.pem");
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--tls-cert-file")
            .arg(dir.0.join("server.crt"))
            .arg("--tls-key-file")
            .arg(dir.0.join("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(&ca_path)
            .args(["--tls-auth-clients", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (is it installed?)");
        let up = eventually(Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        assert!(up, "TLS redis-server on {port} did not start");
        TlsRedis {
            port,
            child,
            _dir: dir,
        }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
