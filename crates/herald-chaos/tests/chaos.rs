//! Process-level fault scenarios (see crates/herald-chaos/src/lib.rs for the harness).
//!
//! Default: small "smoke" sizes (the three together well under a minute).
//! `HERALD_CHAOS_FULL=1`: thousands of sockets and publishes (scripts/chaos.sh --full).
//! Figures are printed and appended to target/chaos-results.jsonl.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use herald_chaos::*;
use serde_json::json;
use tokio::sync::watch;

fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("u{i:05}")).collect()
}

/// `per_user` sockets for each of `n` users, interleaved so HAProxy's round robin spreads
/// each user's sockets over the nodes.
fn sockets(users: &[String], per_user: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..per_user {
        out.extend(users.iter().cloned());
    }
    out
}

fn reconnect_figures(clients: &[ClientReport], since: f64) -> (Vec<f64>, Vec<f64>) {
    let mut took = Vec::new();
    let mut at = Vec::new();
    for c in clients {
        for r in &c.reconnects {
            if r.closed_at >= since {
                took.push(r.took_ms());
                at.push(r.connected_at);
            }
        }
    }
    (took, at)
}

fn close_codes(clients: &[ClientReport]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for c in clients {
        for r in &c.reconnects {
            *m.entry(r.close_code.to_string()).or_default() += 1;
        }
    }
    m
}

fn connect_errors(clients: &[ClientReport]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for c in clients {
        for (k, v) in &c.connect_errors {
            *m.entry(k.clone()).or_default() += v;
        }
    }
    m
}

/// Scenario 1: Redis killed for a while during steady publishing through the LB.
/// Publishes must keep succeeding (PostgreSQL is the source of truth), the nodes re-subscribe
/// when Redis returns (PUBSUB NUMSUB shows every active user channel again), clients catch up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_publishes_succeed_and_clients_catch_up() {
    let _lock = SuiteLock::acquire();
    let (n_users, per_user, total, rate, outage) = if full() {
        (500, 2, 3000u64, 200u32, Duration::from_secs(10))
    } else {
        (50, 2, 500u64, 100u32, Duration::from_secs(3))
    };
    let mut c = Cluster::start("redis-outage", 2).await;
    let t0 = Instant::now();
    let us = users(n_users);
    let fleet = Fleet::spawn(
        &c.lb.ws_url(),
        sockets(&us, per_user),
        Duration::from_millis(1000),
        t0,
    );
    fleet
        .wait_connected(Duration::from_secs(60))
        .await
        .expect("clients connect");
    let spread = fleet.per_node();
    eprintln!("[chaos] sockets per node: {spread:?}");

    let (stop_tx, stop_rx) = watch::channel(false);
    let publisher = tokio::spawn(publish_load(
        PublishPlan {
            base: c.lb.base(),
            users: us.clone(),
            rate,
            total: Some(total),
            attempts: 3,
            concurrency: 64,
        },
        stop_rx,
    ));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let t_kill = Instant::now();
    c.redis.kill();
    eprintln!("[chaos] redis killed at {:.2}s", secs_since(t0, t_kill));
    // Halfway through: what HAProxy thinks of the nodes, and whether a node itself accepts a
    // publish (bypassing the LB).
    tokio::time::sleep(outage / 2).await;
    let lb_during = c.lb.server_status(&c.http).await;
    let direct = c
        .http
        .post(format!("{}/v1/notifications", c.nodes[0].base()))
        .bearer_auth(SERVICE_KEY)
        .json(&json!({ "recipient": us[0], "type": "chaos.direct", "title": "direct" }))
        .send()
        .await;
    let direct_status = direct.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
    let mut direct_acked = Vec::new();
    if let Ok(r) = direct {
        if r.status() == 201 {
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            direct_acked.push(Acked {
                user: us[0].clone(),
                id: v["notifications"][0]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                seq: v["notifications"][0]["seq"].as_i64().unwrap_or(-1),
            });
        }
    }
    let ready_during = c
        .http
        .get(format!("{}/readyz", c.nodes[0].base()))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    eprintln!(
        "[chaos] during the outage: haproxy {lb_during:?}, direct publish to n1 -> {direct_status}, n1 /readyz -> {ready_during}"
    );
    tokio::time::sleep(outage - outage / 2).await;
    c.redis.restart().await;
    let t_back = Instant::now();
    eprintln!("[chaos] redis back at {:.2}s", secs_since(t0, t_back));
    // Every user channel with a socket is subscribed again (the restarted Redis starts
    // empty), once per node holding one: how long after Redis returned.
    let mut want_subs: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (i, l) in fleet.live.iter().enumerate() {
        if l.connected.load(std::sync::atomic::Ordering::SeqCst) {
            want_subs
                .entry(format!("{}user:{}", c.prefix, fleet.users[i]))
                .or_default()
                .insert(l.node.lock().unwrap().clone());
        }
    }
    let channels: Vec<String> = want_subs.keys().cloned().collect();
    let numsub_deadline = Instant::now() + Duration::from_secs(15);
    let mut numsub_wrong;
    loop {
        let got = c.redis.numsub(&channels).await.unwrap_or_default();
        numsub_wrong = channels
            .iter()
            .filter(|ch| got.get(*ch).copied().unwrap_or(0) != want_subs[*ch].len() as i64)
            .count();
        if numsub_wrong == 0 || Instant::now() > numsub_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let numsub_ms = t_back.elapsed().as_millis();
    eprintln!("[chaos] NUMSUB complete {numsub_ms} ms after Redis returned ({numsub_wrong} wrong)");
    let pubrep = tokio::time::timeout(Duration::from_secs(120), publisher)
        .await
        .expect("publisher finished in time")
        .expect("publisher task");
    drop(stop_tx);
    let t_pub_done = Instant::now();

    let pg = c.db.notifications().await;
    let expected = max_seqs(&pg);
    let caught = fleet
        .wait_caught_up(&expected, Duration::from_secs(60))
        .await;
    let t_caught = Instant::now();

    let clients = fleet.stop().await;
    let mut acked = pubrep.acked.clone();
    acked.extend(direct_acked);
    let verdict = verify(&acked, &pg, &clients);
    record(
        "redis_outage",
        json!({
            "nodes": 2,
            "sockets": clients.len(),
            "users": n_users,
            "sockets_per_node": spread,
            "redis_down_s": secs_since(t_kill, t_back),
            "publish": pubrep.json(),
            "verdict": verdict.json(),
            "catch_up_ms_after_publishing_ended": caught.as_ref().ok().map(|_| t_caught.duration_since(t_pub_done).as_millis()),
            "catch_up_ms_after_redis_back": caught.as_ref().ok().map(|_| t_caught.duration_since(t_back).as_millis()),
            "numsub_channels": channels.len(),
            "numsub_wrong": numsub_wrong,
            "numsub_all_resubscribed_ms_after_redis_back": numsub_ms,
            "reconnects": clients.iter().map(|c| c.reconnects.len()).sum::<usize>(),
            "close_codes": close_codes(&clients),
            "haproxy_servers_during_outage": lb_during,
            "direct_publish_status_during_outage": direct_status,
            "node_readyz_during_outage": ready_during,
        }),
    );
    caught.expect("clients caught up");
    assert!(verdict.ok(), "invariant violated: {:?}", verdict.problems);
    assert_eq!(
        direct_status, 201,
        "a node refused a publish while Redis was down"
    );
    assert_eq!(
        numsub_wrong, 0,
        "PUBSUB NUMSUB does not show every active user channel once per node"
    );
    // Redis is only the fast path: with it down, publishes must still be acknowledged, and
    // /readyz (crates/herald-gateway/src/routes/ops.rs) stays 200 ("degraded") so the load
    // balancer keeps every node in.
    assert_eq!(
        pubrep.failed, 0,
        "publishes failed while Redis was down (attempt errors {:?})",
        pubrep.attempt_errors
    );
}

/// A release node's socket task stays within its budget (herald_gateway::ws::RELEASE_TASK_BUDGET,
/// exported as `herald_socket_task_budget_bytes`): the idle-memory figure's largest part.
async fn check_socket_task_budget(c: &Cluster) {
    let text = c
        .http
        .get(format!("{}/metrics", c.nodes[0].admin()))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    let gauge = |name: &str| -> i64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    };
    let (bytes, budget) = (
        gauge("herald_socket_task_bytes"),
        gauge("herald_socket_task_budget_bytes"),
    );
    eprintln!("[chaos] socket task: {bytes} bytes (budget {budget})");
    assert!(
        bytes > 0 && bytes <= budget,
        "socket task of {bytes} bytes, budget {budget}"
    );
}

/// Scenario 2: the node holding a third of the sockets is SIGKILLed under publishing load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sigkill_clients_fail_over_and_resume() {
    let _lock = SuiteLock::acquire();
    let (n_users, per_user, total, rate) = if full() {
        (1000, 3, 2000u64, 200u32)
    } else {
        (100, 3, 300u64, 100u32)
    };
    let mut c = Cluster::start("node-sigkill", 3).await;
    let t0 = Instant::now();
    let us = users(n_users);
    let fleet = Fleet::spawn(
        &c.lb.ws_url(),
        sockets(&us, per_user),
        Duration::from_millis(if full() { 3000 } else { 500 }),
        t0,
    );
    fleet
        .wait_connected(Duration::from_secs(90))
        .await
        .expect("clients connect");
    let spread = fleet.per_node();
    eprintln!("[chaos] sockets per node: {spread:?}");
    check_socket_task_budget(&c).await;
    let (victim, held) = spread
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(k, v)| (k.clone(), *v))
        .expect("a node");

    let (stop_tx, stop_rx) = watch::channel(false);
    let publisher = tokio::spawn(publish_load(
        PublishPlan {
            base: c.lb.base(),
            users: us.clone(),
            rate,
            total: Some(total),
            attempts: 5,
            concurrency: 64,
        },
        stop_rx,
    ));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let t_kill = Instant::now();
    c.node_mut(&victim).sigkill();
    let kill_at = secs_since(t0, t_kill);
    eprintln!("[chaos] SIGKILL {victim} ({held} sockets) at {kill_at:.2}s");
    let reconnected = fleet.wait_connected(Duration::from_secs(60)).await;
    let t_all_back = Instant::now();
    let pubrep = tokio::time::timeout(Duration::from_secs(120), publisher)
        .await
        .expect("publisher finished in time")
        .expect("publisher task");
    drop(stop_tx);
    let t_pub_done = Instant::now();
    let pg = c.db.notifications().await;
    let caught = fleet
        .wait_caught_up(&max_seqs(&pg), Duration::from_secs(60))
        .await;
    let t_caught = Instant::now();
    let after = fleet.per_node();
    let clients = fleet.stop().await;
    let verdict = verify(&pubrep.acked, &pg, &clients);
    let (took, at) = reconnect_figures(&clients, kill_at);
    let hist = histogram(&at, kill_at, 0.25);
    print_histogram(
        &format!("reconnects after SIGKILL {victim}, per 250 ms"),
        &hist,
        0.25,
    );
    let moved_to_victim = clients
        .iter()
        .flat_map(|c| &c.reconnects)
        .filter(|r| r.closed_at >= kill_at && r.to_node == victim)
        .count();
    record(
        "node_sigkill",
        json!({
            "nodes": 3,
            "sockets": clients.len(),
            "users": n_users,
            "sockets_per_node_before": spread,
            "sockets_per_node_after": after,
            "killed": victim,
            "killed_node_sockets": held,
            "publish": pubrep.json(),
            "verdict": verdict.json(),
            "reconnect_ms": percentiles(&took),
            "reconnects_per_250ms": hist,
            "all_reconnected_ms_after_kill": reconnected.as_ref().ok().map(|_| t_all_back.duration_since(t_kill).as_millis()),
            "catch_up_ms_after_publishing_ended": caught.as_ref().ok().map(|_| t_caught.duration_since(t_pub_done).as_millis()),
            "failed_connect_attempts": connect_errors(&clients),
            "close_codes": close_codes(&clients),
        }),
    );
    reconnected.expect("every client reconnected");
    caught.expect("clients caught up");
    assert_eq!(moved_to_victim, 0, "a client reconnected to the dead node");
    assert!(
        took.len() >= held,
        "expected at least {held} reconnects, saw {}",
        took.len()
    );
    assert!(verdict.ok(), "invariant violated: {:?}", verdict.problems);
    assert_eq!(
        pubrep.failed, 0,
        "publishes failed: {:?}",
        pubrep.attempt_errors
    );
}

/// Scenario 3: rolling restart (SIGTERM drain, restart on the same port, wait ready, next)
/// under steady publishing: nothing lost or repeated, and each reconnect wave is spread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_load_is_lossless_and_spread() {
    let _lock = SuiteLock::acquire();
    let (n_nodes, n_users, per_user, rate) = if full() {
        (3, 750, 2, 200u32)
    } else {
        (2, 100, 2, 100u32)
    };
    let mut c = Cluster::start("rolling-restart", n_nodes).await;
    let t0 = Instant::now();
    let us = users(n_users);
    let fleet = Fleet::spawn(
        &c.lb.ws_url(),
        sockets(&us, per_user),
        Duration::from_millis(if full() { 2000 } else { 500 }),
        t0,
    );
    fleet
        .wait_connected(Duration::from_secs(90))
        .await
        .expect("clients connect");
    let spread = fleet.per_node();
    eprintln!("[chaos] sockets per node: {spread:?}");

    let (stop_tx, stop_rx) = watch::channel(false);
    let publisher = tokio::spawn(publish_load(
        PublishPlan {
            base: c.lb.base(),
            users: us.clone(),
            rate,
            total: None,
            attempts: 5,
            concurrency: 64,
        },
        stop_rx,
    ));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let ids: Vec<String> = c.nodes.iter().map(|n| n.id.clone()).collect();
    let mut waves = Vec::new();
    for id in &ids {
        let before = fleet.per_node().get(id).copied().unwrap_or(0);
        let started = secs_since(t0, Instant::now());
        eprintln!("[chaos] SIGTERM {id} ({before} sockets) at {started:.2}s");
        let (drain, restart) = c.rolling_restart_one(id).await;
        waves.push((id.clone(), started, before, drain, restart));
        // Let the other nodes settle before the next one goes.
        fleet
            .wait_connected(Duration::from_secs(30))
            .await
            .expect("all clients reconnected after a restart");
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop_tx.send(true).expect("stop publisher");
    let pubrep = tokio::time::timeout(Duration::from_secs(120), publisher)
        .await
        .expect("publisher finished in time")
        .expect("publisher task");
    let t_pub_done = Instant::now();
    let pg = c.db.notifications().await;
    let caught = fleet
        .wait_caught_up(&max_seqs(&pg), Duration::from_secs(60))
        .await;
    let t_caught = Instant::now();
    let after = fleet.per_node();
    let clients = fleet.stop().await;
    let verdict = verify(&pubrep.acked, &pg, &clients);

    let mut wave_figs = Vec::new();
    let mut worst_share: f64 = 0.0;
    for (i, (id, started, before, drain, restart)) in waves.iter().enumerate() {
        let end = waves.get(i + 1).map(|w| w.1).unwrap_or(f64::MAX);
        let mut took = Vec::new();
        let mut at = Vec::new();
        let mut closed = Vec::new();
        for c in &clients {
            for r in &c.reconnects {
                if r.closed_at >= *started && r.closed_at < end && r.from_node == *id {
                    took.push(r.took_ms());
                    at.push(r.connected_at);
                    closed.push(r.closed_at);
                }
            }
        }
        let per_s = histogram(&at, *started, 1.0);
        let per_250 = histogram(&closed, *started, 0.25);
        print_histogram(
            &format!("{id}: reconnects per second after SIGTERM"),
            &per_s,
            1.0,
        );
        print_histogram(
            &format!("{id}: socket closes per 250 ms after SIGTERM"),
            &per_250,
            0.25,
        );
        let peak = per_250.iter().copied().max().unwrap_or(0);
        let share = if at.is_empty() {
            0.0
        } else {
            peak as f64 / at.len() as f64
        };
        worst_share = worst_share.max(share);
        wave_figs.push(json!({
            "node": id,
            "sockets_before": before,
            "reconnects": at.len(),
            "drain_ms": drain.as_millis(),
            "restart_to_up_ms": restart.as_millis(),
            "reconnect_ms": percentiles(&took),
            "reconnects_per_s": per_s,
            "closes_per_250ms": per_250,
            "peak_250ms_share": (share * 1000.0).round() / 1000.0,
        }));
    }
    let drain_notices: u64 = clients.iter().map(|c| c.drain_notices).sum();
    record(
        "rolling_restart",
        json!({
            "nodes": n_nodes,
            "sockets": clients.len(),
            "users": n_users,
            "sockets_per_node_before": spread,
            "sockets_per_node_after": after,
            "publish_rate": rate,
            "publish": pubrep.json(),
            "verdict": verdict.json(),
            "waves": wave_figs,
            "drain_notices": drain_notices,
            "catch_up_ms_after_publishing_ended": caught.as_ref().ok().map(|_| t_caught.duration_since(t_pub_done).as_millis()),
            "failed_connect_attempts": connect_errors(&clients),
            "close_codes": close_codes(&clients),
        }),
    );
    caught.expect("clients caught up");
    assert!(verdict.ok(), "invariant violated: {:?}", verdict.problems);
    assert_eq!(
        pubrep.failed, 0,
        "publishes failed: {:?}",
        pubrep.attempt_errors
    );
    // A spike would put (nearly) every close of a wave into one 250 ms bucket; the drain
    // spread (2 s) should put about an eighth into each.
    assert!(
        worst_share < 0.5,
        "a reconnect wave was not spread: {:.0}% of its closes in one 250 ms bucket",
        worst_share * 100.0
    );
}

/// Scenario 4: PostgreSQL unreachable from every node (a proxy cuts all connections) during
/// publishing: each publish is either acknowledged (and then durable) or answered with an
/// error; sockets stay open; after recovery every client holds exactly what was committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_publishes_fail_loudly_and_clients_converge() {
    let _lock = SuiteLock::acquire();
    let (n_users, per_user, total, rate, outage) = if full() {
        (500, 2, 2000u64, 200u32, Duration::from_secs(5))
    } else {
        (100, 2, 500u64, 100u32, Duration::from_secs(2))
    };
    let proxy = FaultProxy::start(pg_port()).await;
    let c = Cluster::start_opts("postgres-outage", 2, Some(proxy.port)).await;
    let t0 = Instant::now();
    let us = users(n_users);
    let fleet = Fleet::spawn(
        &c.lb.ws_url(),
        sockets(&us, per_user),
        Duration::from_millis(500),
        t0,
    );
    fleet
        .wait_connected(Duration::from_secs(60))
        .await
        .expect("clients connect");
    let spread = fleet.per_node();
    let (stop_tx, stop_rx) = watch::channel(false);
    let publisher = tokio::spawn(publish_load(
        PublishPlan {
            base: c.lb.base(),
            users: us.clone(),
            rate,
            total: Some(total),
            attempts: 1,
            concurrency: 64,
        },
        stop_rx,
    ));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let t_cut = Instant::now();
    proxy.set_cut(true);
    eprintln!("[chaos] PostgreSQL cut at {:.2}s", secs_since(t0, t_cut));
    tokio::time::sleep(outage).await;
    proxy.set_cut(false);
    let t_back = Instant::now();
    let names: Vec<String> = c.nodes.iter().map(|n| n.id.clone()).collect();
    c.lb.wait_up(&c.http, &names, Duration::from_secs(30)).await;
    let lb_up_ms = t_back.elapsed().as_millis();
    let pubrep = tokio::time::timeout(Duration::from_secs(120), publisher)
        .await
        .expect("publisher finished in time")
        .expect("publisher task");
    drop(stop_tx);
    let t_pub_done = Instant::now();
    let pg = c.db.notifications().await;
    let caught = fleet
        .wait_caught_up(&max_seqs(&pg), Duration::from_secs(60))
        .await;
    let t_caught = Instant::now();
    let clients = fleet.stop().await;
    let verdict = verify(&pubrep.acked, &pg, &clients);
    let acked_ids: std::collections::HashSet<&str> =
        pubrep.acked.iter().map(|a| a.id.as_str()).collect();
    let committed_unacked = pg
        .values()
        .flatten()
        .filter(|(_, id)| !acked_ids.contains(id.as_str()))
        .count();
    let reconnects: usize = clients.iter().map(|c| c.reconnects.len()).sum();
    record(
        "postgres_outage",
        json!({
            "nodes": 2,
            "sockets": clients.len(),
            "users": n_users,
            "sockets_per_node": spread,
            "postgres_down_s": secs_since(t_cut, t_back),
            "publish": pubrep.json(),
            "committed_but_unacked": committed_unacked,
            "verdict": verdict.json(),
            "lb_all_up_ms_after_pg_back": lb_up_ms,
            "catch_up_ms_after_publishing_ended": caught.as_ref().ok().map(|_| t_caught.duration_since(t_pub_done).as_millis()),
            "reconnects": reconnects,
            "close_codes": close_codes(&clients),
        }),
    );
    caught.expect("clients caught up");
    assert!(verdict.ok(), "invariant violated: {:?}", verdict.problems);
    assert_eq!(
        pubrep.calls,
        pubrep.acked.len() as u64 + pubrep.failed,
        "a publish call neither acknowledged nor failed"
    );
    assert!(
        pubrep.failed > 0,
        "the outage refused no publish: was it real?"
    );
    assert_eq!(
        reconnects, 0,
        "sockets were closed during the PostgreSQL outage"
    );
}
