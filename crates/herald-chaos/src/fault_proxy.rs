//! A TCP proxy that passes traffic or cuts it, to take PostgreSQL away from the nodes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// A TCP proxy on loopback (as in crates/herald-gateway/tests/api/helpers.rs) that passes
/// traffic or cuts every connection and refuses new ones.
pub struct FaultProxy {
    pub port: u16,
    cutting: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream_port: u16) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let cutting = Arc::new(AtomicBool::new(false));
        let (cut, _) = watch::channel(0u64);
        let c = cutting.clone();
        let cut_tx = cut.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut_rx = cut_tx.subscribe();
                tokio::spawn(async move {
                    let Ok(Ok(server)) = tokio::time::timeout(
                        Duration::from_secs(5),
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)),
                    )
                    .await
                    else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    tokio::select! {
                        _ = tokio::io::copy(&mut cr, &mut sw) => {}
                        _ = tokio::io::copy(&mut sr, &mut cw) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        FaultProxy {
            port,
            cutting,
            cut,
            task,
        }
    }

    /// Cut every open connection and refuse new ones (true), or pass traffic again (false).
    pub fn set_cut(&self, on: bool) {
        self.cutting.store(on, Ordering::SeqCst);
        if on {
            self.cut.send_modify(|n| *n += 1);
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut.send_modify(|n| *n += 1);
    }
}
