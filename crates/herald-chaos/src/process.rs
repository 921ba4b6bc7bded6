//! The `herald` binary, the suite lock, free ports, and child processes that die with the test.

use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::settings::{target_dir, workspace_root};

/// The release `herald` binary: `HERALD_CHAOS_BIN` if set (scripts/chaos.sh builds it and sets
/// it), else `cargo build --release -p herald-gateway --features lab` once per
/// test process (bounded; the same features as every lab build, so nothing is rebuilt).
pub fn herald_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("HERALD_CHAOS_BIN") {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "HERALD_CHAOS_BIN={} does not exist",
                p.display()
            );
            return p;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        eprintln!("[chaos] cargo build --release -p herald-gateway --features lab --bin herald");
        let mut child = Command::new(cargo)
            .args([
                "build",
                "--release",
                "-p",
                "herald-gateway",
                "--features",
                "lab",
                "--bin",
                "herald",
            ])
            .current_dir(workspace_root())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn cargo build");
        let deadline = Instant::now() + Duration::from_secs(30 * 60);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait cargo") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("cargo build --release -p herald-gateway took more than 30 minutes");
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(
            status.success(),
            "cargo build --release -p herald-gateway failed"
        );
        let p = target_dir().join("release/herald");
        assert!(p.is_file(), "{} missing after the build", p.display());
        p
    })
    .clone()
}

/// Serialises chaos tests across threads and processes (cargo test threads, nextest
/// processes): each one starts several processes and measures timings on 2 cores.
pub struct SuiteLock {
    _f: File,
}

impl SuiteLock {
    pub fn acquire() -> SuiteLock {
        use std::os::fd::AsRawFd;
        let dir = target_dir();
        std::fs::create_dir_all(&dir).expect("target dir");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("chaos.lock"))
            .expect("open chaos.lock");
        let deadline = Instant::now() + Duration::from_secs(20 * 60);
        loop {
            // SAFETY: flock on a file descriptor we own.
            let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if r == 0 {
                return SuiteLock { _f: f };
            }
            assert!(
                Instant::now() < deadline,
                "waited 20 minutes for target/chaos.lock"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    l.local_addr().expect("addr").port()
}

/// Kill the child when this (test) process dies, even by SIGKILL.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Proc {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open log");
        let err = out.try_clone().expect("dup log");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc {
            name: name.into(),
            child: Some(child),
        }
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    pub fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: plain kill(2) on our own child.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits (bounded) for the process to exit; SIGKILLs it on timeout.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(c) = self.child.as_mut() else {
                return Err(format!("{}: not running", self.name));
            };
            if let Some(s) = c.try_wait().map_err(|e| e.to_string())? {
                self.child = None;
                return Ok(s);
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("{} did not exit within {timeout:?}", self.name));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) async fn wait_port(port: u16, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
