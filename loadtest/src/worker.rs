//! A worker process: holds a shard of the sockets (one task each, small buffers) on a
//! single-threaded runtime and obeys the coordinator's commands (see `ctl`).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use herald_protocol::ws::ServerMessage;
use serde::Deserialize;
use tokio::net::TcpSocket;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::ctl::{
    new_hist, now_ns, Cmd, Ev, HistWire, Progress, Protocol, Window, WorkerReport, WorkerSpec,
    WINDOW_MS,
};
use crate::sio;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Up,
    Down,
    Quit,
}

/// Per-socket state the coordinator's checks need: a few atomics, nothing per message.
struct Slot {
    /// `latest_seq` at the first `connected` (-1 before): notifications at or below it are
    /// older than the run and not counted.
    baseline: AtomicI64,
    /// Highest seq held: the resume cursor.
    last_seq: AtomicI64,
    /// Distinct notifications received above the baseline.
    unique: AtomicU32,
    globals: AtomicU32,
    /// Herald's Socket.IO endpoint: the recovery `pid` of the first CONNECT answer, sent back
    /// with the offset (`last_seq`) on every reconnect.
    pid: std::sync::OnceLock<Box<str>>,
}

#[derive(Default)]
struct Hists {
    live: Option<Histogram<u64>>,
    catchup: Option<Histogram<u64>>,
    broadcast: Option<Histogram<u64>>,
    handshake: Option<Histogram<u64>>,
    live_windows: BTreeMap<u64, Window>,
}

impl Hists {
    fn fresh() -> Hists {
        Hists {
            live: Some(new_hist()),
            catchup: Some(new_hist()),
            broadcast: Some(new_hist()),
            handshake: Some(new_hist()),
            live_windows: BTreeMap::new(),
        }
    }
}

fn rec(h: &mut Option<Histogram<u64>>, us: u64) {
    if let Some(h) = h {
        h.saturating_record(us.max(1));
    }
}

struct Target {
    addr: SocketAddr,
    url: String,
}

struct Shared {
    spec: WorkerSpec,
    slots: Vec<Slot>,
    targets: Vec<Target>,
    sources: Vec<IpAddr>,
    key: jsonwebtoken::EncodingKey,
    ws_config: WebSocketConfig,
    sem: Semaphore,
    phase: watch::Sender<Phase>,
    ready: AtomicU64,
    handshakes: AtomicU64,
    connect_errors: AtomicU64,
    unexpected_closes: AtomicU64,
    received: AtomicU64,
    catchup_received: AtomicU64,
    globals: AtomicU64,
    duplicates: AtomicU64,
    gaps: AtomicU64,
    resyncs: AtomicU64,
    last_handshake_ns: AtomicU64,
    last_ready_ns: AtomicU64,
    last_rx_ns: AtomicU64,
    hists: Mutex<Hists>,
    close_codes: Mutex<BTreeMap<String, u64>>,
    error_kinds: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn progress(&self) -> Progress {
        Progress {
            sockets: self.slots.len() as u64,
            ready: self.ready.load(Relaxed),
            handshakes: self.handshakes.load(Relaxed),
            connect_errors: self.connect_errors.load(Relaxed),
            unexpected_closes: self.unexpected_closes.load(Relaxed),
            received: self.received.load(Relaxed),
            globals: self.globals.load(Relaxed),
        }
    }

    fn bump(map: &Mutex<BTreeMap<String, u64>>, key: String) {
        *map.lock().unwrap().entry(key).or_insert(0) += 1;
    }

    fn token(&self, user: &str) -> String {
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            sub: &'a str,
            exp: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            aud: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            iss: Option<&'a str>,
        }
        let exp = now_ns() / 1_000_000_000 + self.spec.token_ttl_secs;
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &Claims {
                sub: user,
                exp,
                aud: self.spec.jwt_audience.as_deref(),
                iss: self.spec.jwt_issuer.as_deref(),
            },
            &self.key,
        )
        .expect("HS256 encode")
    }
}

fn max_store(a: &AtomicU64, v: u64) {
    a.fetch_max(v, Relaxed);
}

/// Lean view of a server event: only what the harness measures is parsed on the hot path.
#[derive(Deserialize)]
struct LeanEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    notification: Option<LeanNotification>,
    #[serde(default)]
    notifications: Option<Vec<LeanNotification>>,
    #[serde(default)]
    complete: Option<bool>,
}

#[derive(Deserialize)]
struct LeanNotification {
    #[serde(default)]
    seq: Option<i64>,
    #[serde(default)]
    data: Option<LeanData>,
}

#[derive(Deserialize)]
struct LeanData {
    /// Unix ns at the start of the publish call, set by the coordinator.
    #[serde(default)]
    t: Option<u64>,
}

enum End {
    PhaseChanged,
    Failed(String),
    Closed(String),
}

pub fn run() -> Result<()> {
    let stdin = std::io::stdin();
    let mut first = String::new();
    stdin.lock().read_line(&mut first)?;
    let spec: WorkerSpec = serde_json::from_str(&first).context("worker spec")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (tx, rx) = mpsc::unbounded_channel::<Cmd>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Cmd>(&line) {
                Ok(c) => {
                    if tx.send(c).is_err() {
                        break;
                    }
                }
                Err(e) => eprintln!("worker: bad command {line:?}: {e}"),
            }
        }
        // Coordinator gone (or closed our stdin): stop.
        std::process::exit(0);
    });
    rt.block_on(main_loop(spec, rx))
}

fn emit(ev: &Ev) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, ev);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

fn parse_target(url: &str) -> Result<Target> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| anyhow!("target {url:?}: only ws:// URLs are supported"))?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    let addr: SocketAddr = hostport
        .parse()
        .with_context(|| format!("target {url:?}: host must be an IP:port"))?;
    Ok(Target {
        addr,
        url: url.to_string(),
    })
}

async fn main_loop(spec: WorkerSpec, mut rx: mpsc::UnboundedReceiver<Cmd>) -> Result<()> {
    let shard = spec.shard;
    let n = (spec.user_end - spec.user_start) * spec.sockets_per_user;
    let targets = spec
        .targets
        .iter()
        .map(|t| parse_target(t))
        .collect::<Result<Vec<_>>>()?;
    let sources = spec
        .source_ips
        .iter()
        .map(|s| {
            s.parse::<IpAddr>()
                .with_context(|| format!("source ip {s:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(spec.read_buffer)
        .write_buffer_size(0)
        .max_message_size(Some(4 << 20))
        .max_frame_size(Some(4 << 20));
    let (phase, _) = watch::channel(Phase::Idle);
    let sh = Arc::new(Shared {
        key: jsonwebtoken::EncodingKey::from_secret(spec.jwt_secret.as_bytes()),
        sem: Semaphore::new(spec.connect_concurrency.max(1)),
        slots: (0..n)
            .map(|_| Slot {
                baseline: AtomicI64::new(-1),
                last_seq: AtomicI64::new(-1),
                unique: AtomicU32::new(0),
                globals: AtomicU32::new(0),
                pid: std::sync::OnceLock::new(),
            })
            .collect(),
        spec,
        targets,
        sources,
        ws_config,
        phase,
        ready: AtomicU64::new(0),
        handshakes: AtomicU64::new(0),
        connect_errors: AtomicU64::new(0),
        unexpected_closes: AtomicU64::new(0),
        received: AtomicU64::new(0),
        catchup_received: AtomicU64::new(0),
        globals: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        gaps: AtomicU64::new(0),
        resyncs: AtomicU64::new(0),
        last_handshake_ns: AtomicU64::new(0),
        last_ready_ns: AtomicU64::new(0),
        last_rx_ns: AtomicU64::new(0),
        hists: Mutex::new(Hists::fresh()),
        close_codes: Mutex::new(BTreeMap::new()),
        error_kinds: Mutex::new(BTreeMap::new()),
    });

    // Progress ticker.
    {
        let sh = sh.clone();
        let every = Duration::from_millis(sh.spec.progress_ms.max(100));
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(every);
            loop {
                iv.tick().await;
                emit(&Ev::Progress {
                    shard,
                    p: sh.progress(),
                });
            }
        });
    }

    let mut spawned = false;
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Cmd::Connect { deadline_ms } => {
                if !spawned {
                    spawned = true;
                    for k in 0..n {
                        tokio::spawn(conn_task(sh.clone(), k));
                    }
                }
                sh.phase.send_replace(Phase::Up);
                wait_ready(&sh, deadline_ms).await;
                emit(&phase_ev(&sh, "connect"));
            }
            Cmd::Reset => {
                *sh.hists.lock().unwrap() = Hists::fresh();
                for a in [
                    &sh.handshakes,
                    &sh.connect_errors,
                    &sh.unexpected_closes,
                    &sh.received,
                    &sh.catchup_received,
                    &sh.globals,
                    &sh.duplicates,
                    &sh.gaps,
                    &sh.resyncs,
                    &sh.last_handshake_ns,
                    &sh.last_ready_ns,
                    &sh.last_rx_ns,
                ] {
                    a.store(0, Relaxed);
                }
                sh.close_codes.lock().unwrap().clear();
                sh.error_kinds.lock().unwrap().clear();
                for s in &sh.slots {
                    let b = s.last_seq.load(Relaxed);
                    let _ = b;
                    s.globals.store(0, Relaxed);
                }
            }
            Cmd::Drop => {
                sh.phase.send_replace(Phase::Down);
                let start = Instant::now();
                while sh.ready.load(Relaxed) > 0 && start.elapsed() < Duration::from_secs(30) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                emit(&phase_ev(&sh, "drop"));
            }
            Cmd::Resume { deadline_ms } => {
                sh.handshakes.store(0, Relaxed);
                sh.last_handshake_ns.store(0, Relaxed);
                sh.last_ready_ns.store(0, Relaxed);
                sh.phase.send_replace(Phase::Up);
                wait_ready(&sh, deadline_ms).await;
                emit(&phase_ev(&sh, "resume"));
            }
            Cmd::Verify { expected, grace_ms } => {
                let spu = sh.spec.sockets_per_user;
                let deadline = Instant::now() + Duration::from_millis(grace_ms);
                let (lost, missing) = loop {
                    let mut lost = 0u64;
                    let mut missing = 0u64;
                    for (k, s) in sh.slots.iter().enumerate() {
                        let want = expected.get(k / spu).copied().unwrap_or(0);
                        let got = s.unique.load(Relaxed);
                        if got < want {
                            lost += (want - got) as u64;
                            missing += 1;
                        }
                    }
                    if lost == 0 || Instant::now() >= deadline {
                        break (lost, missing);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                };
                emit(&Ev::Verified {
                    shard,
                    lost,
                    sockets_missing: missing,
                    received: sh.received.load(Relaxed),
                    duplicates: sh.duplicates.load(Relaxed),
                    gaps: sh.gaps.load(Relaxed),
                    last_ns: sh.last_rx_ns.load(Relaxed),
                });
            }
            Cmd::WaitBroadcast { count, grace_ms } => {
                let deadline = Instant::now() + Duration::from_millis(grace_ms);
                let (lost, missing) = loop {
                    let mut lost = 0u64;
                    let mut missing = 0u64;
                    for s in &sh.slots {
                        let got = s.globals.load(Relaxed);
                        if got < count {
                            lost += (count - got) as u64;
                            missing += 1;
                        }
                    }
                    if lost == 0 || Instant::now() >= deadline {
                        break (lost, missing);
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                };
                emit(&Ev::Verified {
                    shard,
                    lost,
                    sockets_missing: missing,
                    received: sh.globals.load(Relaxed),
                    duplicates: 0,
                    gaps: 0,
                    last_ns: sh.last_rx_ns.load(Relaxed),
                });
            }
            Cmd::Report => {
                let h = sh.hists.lock().unwrap();
                let w = |h: &Option<Histogram<u64>>| {
                    h.as_ref().map(HistWire::from_hist).unwrap_or_default()
                };
                let r = WorkerReport {
                    counters: sh.progress(),
                    duplicates: sh.duplicates.load(Relaxed),
                    gaps: sh.gaps.load(Relaxed),
                    resyncs: sh.resyncs.load(Relaxed),
                    catchup_received: sh.catchup_received.load(Relaxed),
                    close_codes: sh.close_codes.lock().unwrap().clone(),
                    connect_error_kinds: sh.error_kinds.lock().unwrap().clone(),
                    latency_us: w(&h.live),
                    catchup_latency_us: w(&h.catchup),
                    broadcast_latency_us: w(&h.broadcast),
                    handshake_us: w(&h.handshake),
                    live_windows: h.live_windows.iter().map(|(k, w)| (*k, *w)).collect(),
                    rss_kib: crate::sys::self_rss_kib(),
                };
                drop(h);
                emit(&Ev::Report { shard, r });
            }
            Cmd::Quit => {
                sh.phase.send_replace(Phase::Quit);
                tokio::time::sleep(Duration::from_millis(100)).await;
                break;
            }
        }
    }
    Ok(())
}

fn phase_ev(sh: &Shared, name: &str) -> Ev {
    Ev::Phase {
        shard: sh.spec.shard,
        name: name.into(),
        ready: sh.ready.load(Relaxed),
        sockets: sh.slots.len() as u64,
        last_handshake_ns: sh.last_handshake_ns.load(Relaxed),
        last_ready_ns: sh.last_ready_ns.load(Relaxed),
        handshakes: sh.handshakes.load(Relaxed),
    }
}

async fn wait_ready(sh: &Shared, deadline_ms: u64) {
    let deadline = Instant::now() + Duration::from_millis(deadline_ms);
    while (sh.ready.load(Relaxed) as usize) < sh.slots.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn conn_task(sh: Arc<Shared>, k: usize) {
    let mut rx = sh.phase.subscribe();
    let spu = sh.spec.sockets_per_user;
    let uidx = sh.spec.user_start + k / spu;
    let user = format!("{}-{}", sh.spec.user_prefix, uidx);
    let target = (uidx + k % spu) % sh.targets.len();
    let src = sh.sources[k % sh.sources.len()];
    // Signed once and reused by every reconnect, as a real client reuses the token its
    // auth server issued (the TTL covers the whole run: `token_ttl_secs`).
    let mut token: Option<String> = None;
    let mut attempt: u32 = 0;
    loop {
        let ph = *rx.borrow_and_update();
        match ph {
            Phase::Quit => return,
            Phase::Up => {}
            _ => {
                if rx.changed().await.is_err() {
                    return;
                }
                continue;
            }
        }
        let token = token.get_or_insert_with(|| sh.token(&user));
        let end = session(&sh, k, token, target, src, &mut rx).await;
        let why = match end {
            End::PhaseChanged => {
                attempt = 0;
                continue;
            }
            End::Failed(kind) => {
                sh.connect_errors.fetch_add(1, Relaxed);
                Shared::bump(&sh.error_kinds, kind);
                attempt += 1;
                "failed"
            }
            End::Closed(code) => {
                sh.unexpected_closes.fetch_add(1, Relaxed);
                Shared::bump(&sh.close_codes, code);
                attempt = attempt.max(1);
                "closed"
            }
        };
        let _ = why;
        // Exponential backoff with full jitter (base 100 ms, cap 3 s); a phase change cuts it.
        let cap = (100u64 << attempt.min(5)).min(3_000);
        let wait = rand::random_range(cap / 4..=cap);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            r = rx.changed() => { if r.is_err() { return; } }
        }
    }
}

fn classify(e: &WsError) -> String {
    match e {
        WsError::Http(resp) => format!("http {}", resp.status().as_u16()),
        WsError::Io(io) => format!("io {:?}", io.kind()),
        other => format!(
            "ws {}",
            other.to_string().chars().take(40).collect::<String>()
        ),
    }
}

async fn session(
    sh: &Shared,
    k: usize,
    token: &str,
    target: usize,
    src: IpAddr,
    rx: &mut watch::Receiver<Phase>,
) -> End {
    let slot = &sh.slots[k];
    let permit = tokio::select! {
        p = sh.sem.acquire() => p.expect("semaphore"),
        _ = rx.changed() => return End::PhaseChanged,
    };
    let t0 = Instant::now();
    let tgt = &sh.targets[target];
    let sock = match TcpSocket::new_v4() {
        Ok(s) => s,
        Err(e) => return End::Failed(format!("socket {:?}", e.kind())),
    };
    let _ = sock.set_reuseaddr(true);
    no_port_at_bind(&sock);
    if let Err(e) = sock.bind(SocketAddr::new(src, 0)) {
        return End::Failed(format!("bind {:?}", e.kind()));
    }
    let tcp = match tokio::time::timeout(Duration::from_secs(10), sock.connect(tgt.addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return End::Failed(format!("connect {:?}", e.kind())),
        Err(_) => return End::Failed("connect timeout".into()),
    };
    let _ = tcp.set_nodelay(true);
    let resumed = slot.baseline.load(Relaxed) >= 0;
    let socketio = sh.spec.protocol.socketio_wire();
    let url = if resumed && !socketio {
        format!("{}?last_seq={}", tgt.url, slot.last_seq.load(Relaxed))
    } else {
        tgt.url.clone()
    };
    let mut req = match url.as_str().into_client_request() {
        Ok(r) => r,
        Err(e) => return End::Failed(classify(&e)),
    };
    if !socketio {
        let auth = format!("Bearer {token}");
        req.headers_mut()
            .insert("authorization", auth.parse().expect("header value"));
    }
    let hs = tokio_tungstenite::client_async_with_config(req, tcp, Some(sh.ws_config));
    let mut ws = match tokio::time::timeout(Duration::from_secs(15), hs).await {
        Ok(Ok((ws, _resp))) => ws,
        Ok(Err(e)) => return End::Failed(classify(&e)),
        Err(_) => return End::Failed("handshake timeout".into()),
    };
    let (end, ready) = if socketio {
        sio_loop(sh, slot, token, &mut ws, t0, permit, rx).await
    } else {
        let mut permit = Some(permit);
        let mut ready = false;
        let first_session = !resumed;
        let end = loop {
            tokio::select! {
                r = rx.changed() => {
                    if r.is_err() || *rx.borrow() != Phase::Up {
                        break End::PhaseChanged;
                    }
                }
                m = ws.next() => match m {
                    None => break End::Closed("eof".into()),
                    Some(Err(e)) => break End::Closed(classify(&e)),
                    Some(Ok(Message::Close(f))) => {
                        break End::Closed(f.map(|f| u16::from(f.code).to_string()).unwrap_or_else(|| "close".into()));
                    }
                    Some(Ok(Message::Text(t))) => {
                        let now = now_ns();
                        let ev: LeanEvent = match serde_json::from_str(t.as_str()) {
                            Ok(ev) => ev,
                            Err(_) => continue,
                        };
                        match ev.kind {
                            "connected" => {
                                let latest = match serde_json::from_str::<ServerMessage>(t.as_str()) {
                                    Ok(ServerMessage::Connected { latest_seq, .. }) => latest_seq,
                                    _ => break End::Closed("bad connected".into()),
                                };
                                if slot.baseline.load(Relaxed) < 0 {
                                    slot.baseline.store(latest, Relaxed);
                                    slot.last_seq.store(latest, Relaxed);
                                }
                                sh.handshakes.fetch_add(1, Relaxed);
                                max_store(&sh.last_handshake_ns, now);
                                rec(&mut sh.hists.lock().unwrap().handshake, t0.elapsed().as_micros() as u64);
                                permit.take();
                            }
                            "notifications:batch" => {
                                for n in ev.notifications.unwrap_or_default() {
                                    on_notification(sh, slot, n, now, true, first_session && !ready);
                                }
                                if ev.complete == Some(true) && !ready {
                                    ready = true;
                                    sh.ready.fetch_add(1, Relaxed);
                                    max_store(&sh.last_ready_ns, now);
                                }
                            }
                            "notification" => {
                                if let Some(n) = ev.notification {
                                    on_notification(sh, slot, n, now, false, false);
                                }
                            }
                            "global_notification" => {
                                sh.globals.fetch_add(1, Relaxed);
                                slot.globals.fetch_add(1, Relaxed);
                                max_store(&sh.last_rx_ns, now);
                                if let Some(t) = ev.notification.and_then(|n| n.data).and_then(|d| d.t) {
                                    rec(&mut sh.hists.lock().unwrap().broadcast, now.saturating_sub(t) / 1000);
                                }
                            }
                            "resync" => {
                                sh.resyncs.fetch_add(1, Relaxed);
                            }
                            _ => {}
                        }
                    }
                    Some(Ok(_)) => {}
                }
            }
        };
        (end, ready)
    };
    if ready {
        sh.ready.fetch_sub(1, Relaxed);
    }
    if matches!(end, End::PhaseChanged) && *rx.borrow() == Phase::Quit {
        let _ = ws.close(None).await;
    }
    // Otherwise: dropping the stream drops the socket at once (no close handshake).
    drop(ws);
    end
}

/// The Socket.IO v4 session after the WebSocket upgrade (see `sio`): namespace connect with
/// `auth.token`, pong every ping, `connected` event = ready (Socket.IO has no catch-up),
/// `notification` events deduplicated by id (no seq), `global_notification` counted.
/// Herald's endpoint (`Protocol::HeraldSio`) has a seq: its notifications go through
/// `on_notification` (duplicates, gaps and the resume cursor by seq, as the native protocol),
/// and a reconnect sends the `pid` and the offset (last seq held), Socket.IO's recovery;
/// notifications published before a recovering session began count as caught up.
async fn sio_loop<S>(
    sh: &Shared,
    slot: &Slot,
    token: &str,
    ws: &mut S,
    t0: Instant,
    permit: tokio::sync::SemaphorePermit<'_>,
    rx: &mut watch::Receiver<Phase>,
) -> (End, bool)
where
    S: futures_util::Stream<Item = Result<Message, WsError>>
        + futures_util::Sink<Message, Error = WsError>
        + Unpin,
{
    let nsp = sh.spec.sio_namespace.as_str();
    let mut permit = Some(permit);
    let mut ready = false;
    let mut seen: std::collections::HashSet<u64> = Default::default();
    let herald = sh.spec.protocol == Protocol::HeraldSio;
    let first_session = slot.baseline.load(Relaxed) < 0;
    let began = now_ns();
    if first_session && !herald {
        slot.baseline.store(0, Relaxed);
    }
    let end = loop {
        tokio::select! {
            r = rx.changed() => {
                if r.is_err() || *rx.borrow() != Phase::Up {
                    break End::PhaseChanged;
                }
            }
            m = ws.next() => match m {
                None => break End::Closed("eof".into()),
                Some(Err(e)) => break End::Closed(classify(&e)),
                Some(Ok(Message::Close(f))) => {
                    break End::Closed(f.map(|f| u16::from(f.code).to_string()).unwrap_or_else(|| "close".into()));
                }
                Some(Ok(Message::Text(t))) => {
                    let now = now_ns();
                    match sio::parse(t.as_str(), nsp) {
                        sio::Packet::Open => {
                            let recover = match (herald && !first_session, slot.pid.get()) {
                                (true, Some(pid)) => Some((&**pid, slot.last_seq.load(Relaxed))),
                                _ => None,
                            };
                            let p = sio::connect_packet(nsp, token, recover);
                            if let Err(e) = ws.send(Message::Text(p.into())).await {
                                break End::Closed(classify(&e));
                            }
                        }
                        sio::Packet::Ping => {
                            if let Err(e) = ws.send(Message::Text("3".into())).await {
                                break End::Closed(classify(&e));
                            }
                        }
                        sio::Packet::Close => break End::Closed("sio disconnect".into()),
                        sio::Packet::ConnectError(_) => break End::Closed("sio connect_error".into()),
                        sio::Packet::Connected(body) => {
                            if herald && slot.pid.get().is_none() {
                                if let Some(pid) = sio::pid_of(body) {
                                    let _ = slot.pid.set(pid.into());
                                }
                            }
                        }
                        sio::Packet::Other => {}
                        sio::Packet::Event(arr) => {
                            let Some((name, payload)) = sio::event(arr) else { continue };
                            match name.as_str() {
                                "connected" if !ready => {
                                    if herald && slot.baseline.load(Relaxed) < 0 {
                                        let Some(latest) = payload.and_then(|p| p.latest_seq) else {
                                            break End::Closed("bad connected".into());
                                        };
                                        slot.baseline.store(latest, Relaxed);
                                        slot.last_seq.store(latest, Relaxed);
                                    }
                                    sh.handshakes.fetch_add(1, Relaxed);
                                    max_store(&sh.last_handshake_ns, now);
                                    rec(&mut sh.hists.lock().unwrap().handshake, t0.elapsed().as_micros() as u64);
                                    permit.take();
                                    ready = true;
                                    sh.ready.fetch_add(1, Relaxed);
                                    max_store(&sh.last_ready_ns, now);
                                }
                                "notification" => {
                                    let Some(n) = payload else { continue };
                                    if herald {
                                        let catchup = !first_session
                                            && n.data.as_ref().and_then(|d| d.t).is_some_and(|t| t < began);
                                        let lean = LeanNotification {
                                            seq: n.seq,
                                            data: n.data.map(|d| LeanData { t: d.t }),
                                        };
                                        on_notification(sh, slot, lean, now, catchup, first_session);
                                        continue;
                                    }
                                    if let Some(id) = n.id.as_deref() {
                                        if !seen.insert(sio::id_key(id)) {
                                            sh.duplicates.fetch_add(1, Relaxed);
                                            continue;
                                        }
                                    }
                                    slot.unique.fetch_add(1, Relaxed);
                                    sh.received.fetch_add(1, Relaxed);
                                    max_store(&sh.last_rx_ns, now);
                                    if let Some(t) = n.data.and_then(|d| d.t) {
                                        record_live(&mut sh.hists.lock().unwrap(), t, now);
                                    }
                                }
                                "global_notification" => {
                                    sh.globals.fetch_add(1, Relaxed);
                                    slot.globals.fetch_add(1, Relaxed);
                                    max_store(&sh.last_rx_ns, now);
                                    if let Some(t) = payload.and_then(|n| n.data).and_then(|d| d.t) {
                                        rec(&mut sh.hists.lock().unwrap().broadcast, now.saturating_sub(t) / 1000);
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                }
                Some(Ok(_)) => {}
            }
        }
    };
    (end, ready)
}

/// A live delivery of a notification whose publish call started at `t` (unix ns).
fn record_live(h: &mut Hists, t: u64, now: u64) {
    let us = now.saturating_sub(t) / 1000;
    rec(&mut h.live, us);
    let window = t / 1_000_000 / WINDOW_MS;
    h.live_windows.entry(window).or_default().record(us);
}

fn on_notification(
    sh: &Shared,
    slot: &Slot,
    n: LeanNotification,
    now: u64,
    catchup: bool,
    initial: bool,
) {
    let Some(seq) = n.seq else { return };
    let last = slot.last_seq.load(Relaxed);
    if seq <= last {
        // In the very first catch-up, older notifications (at or below the baseline) are
        // not this run's; anything else at or below the cursor is a duplicate or reorder.
        if !(initial && seq <= slot.baseline.load(Relaxed)) {
            sh.duplicates.fetch_add(1, Relaxed);
        }
        return;
    }
    if seq > last + 1 {
        sh.gaps.fetch_add(1, Relaxed);
    }
    slot.last_seq.store(seq, Relaxed);
    slot.unique.fetch_add(1, Relaxed);
    sh.received.fetch_add(1, Relaxed);
    max_store(&sh.last_rx_ns, now);
    if catchup {
        sh.catchup_received.fetch_add(1, Relaxed);
    }
    if let Some(t) = n.data.and_then(|d| d.t) {
        let mut h = sh.hists.lock().unwrap();
        if catchup {
            rec(&mut h.catchup, now.saturating_sub(t) / 1000);
        } else {
            record_live(&mut h, t, now);
        }
    }
}

/// `IP_BIND_ADDRESS_NO_PORT`: bind() only fixes the source address and the port is chosen at
/// connect() per 4-tuple. Without it, bind(ip, 0) searches the whole port range of that
/// source address for a free port — with tens of thousands of sockets (and TIME_WAITs after a
/// storm) that search dominated the harness's CPU, and each address held ~28k sockets at most.
fn no_port_at_bind(sock: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a pointer to a c_int of the given length.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
