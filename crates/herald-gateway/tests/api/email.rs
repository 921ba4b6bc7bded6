//! The email fallback channel against a real SMTP server (aiosmtpd, `scripts/smtp-sink.sh`)
//! that parses every message it receives: one email per unseen notification with text and
//! HTML parts, the escaped title, the stable `Message-ID` and the RFC 8058 headers; nothing
//! for a read one; the digest (one email per window covering what gathered); one-click
//! unsubscribe over real HTTP; a 550 bounce suppressing the address without retries; a 451
//! retried until sent; the suppression API and its refusals.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use herald_core::fallback::template::Templates;
use herald_core::fallback::{RetryPolicy, Rules};
use herald_gateway::fallback::email::EmailConfig;
use herald_gateway::fallback::FallbackConfig;
use serde_json::{json, Value};

use crate::helpers::*;
use herald_testkit::{eventually, free_port};

const KIND: &str = "comment.created";
const UNSUB_SECRET: &str = "unsubscribe-secret-0123456789abcdef-0123";
/// The first run installs aiosmtpd into a venv.
const SINK_START: Duration = Duration::from_secs(180);

/// The SMTP server, killed on drop.
struct Sink {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Sink {
    /// `reject`: answered 550; `tempfail`: (address, times) answered 451 that many times.
    async fn start(reject: &[&str], tempfail: &[(&str, u32)]) -> Sink {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("herald-smtp-sink-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut cmd = Command::new("bash");
        cmd.arg(root.join("scripts/smtp-sink.sh"))
            .arg("run")
            .arg("--port")
            .arg(port.to_string())
            .arg("--dir")
            .arg(&dir);
        for r in reject {
            cmd.arg("--reject").arg(r);
        }
        for (a, n) in tempfail {
            cmd.arg("--tempfail").arg(format!("{a}:{n}"));
        }
        // stdin stays open while the test holds it: the server exits when it closes.
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start scripts/smtp-sink.sh");
        let sink = Sink { port, dir, child };
        let up = eventually(SINK_START, || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        assert!(up, "the SMTP sink did not start on port {port}");
        sink
    }

    fn messages(&self) -> Vec<Value> {
        let Ok(f) = std::fs::File::open(self.dir.join("messages.jsonl")) else {
            return Vec::new();
        };
        std::io::BufReader::new(f)
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect()
    }
}

fn email_config(sink: &Sink, window: Duration) -> EmailConfig {
    EmailConfig {
        smtp_url: format!("smtp://127.0.0.1:{}", sink.port).into(),
        timeout: Duration::from_secs(5),
        from: "Herald <no-reply@herald.test>".parse().unwrap(),
        message_id_host: "herald.test".into(),
        public_url: "http://herald.test".into(),
        link_base: "https://app.test".into(),
        unsubscribe_key: Arc::new(UNSUB_SECRET.as_bytes().to_vec().into()),
        digest_window: window,
        templates: Arc::new(Templates::builtin()),
    }
}

fn fallback(rules: &str, sink: &Sink, window: Duration) -> FallbackConfig {
    let entries: Vec<String> = rules.split(',').map(str::to_owned).collect();
    FallbackConfig {
        rules: Rules::parse(&entries).unwrap(),
        poll: Duration::from_millis(50),
        lease: Duration::from_secs(30),
        batch: 64,
        max_age: Duration::from_secs(3600),
        retry: RetryPolicy {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(200),
            max_attempts: 5,
        },
        webhook: None,
        email: Some(email_config(sink, window)),
        ..FallbackConfig::default()
    }
}

async fn set_contact(node: &TestNode, user: &str, email: &str) {
    let r = node
        .http
        .put(format!("{}/v1/users/{user}/contact", node.base))
        .bearer_auth(SERVICE_KEY)
        .json(&json!({ "email": email }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn publish(node: &TestNode, user: &str, title: &str) -> String {
    let r = node
        .publish(&json!({ "recipient": user, "type": KIND, "title": title, "body": "b & c", "link": "https://app.test/x?a=1&b=2" }))
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["notifications"][0]["id"].as_str().unwrap().to_owned()
}

fn key_of(id: &str) -> String {
    format!("nf_{}_email", id.replace('-', ""))
}

async fn job(env: &TestEnv, id: &str) -> Option<(String, i32, Option<String>)> {
    env.sql()
        .await
        .query_opt(
            "SELECT state, attempts, last_error FROM fallback_jobs \
             WHERE notification_id = $1::text::uuid AND channel = 'email'",
            &[&id],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
}

async fn job_state_is(env: &TestEnv, id: &str, state: &str) -> bool {
    eventually(WAIT, || async {
        job(env, id).await.is_some_and(|j| j.0 == state)
    })
    .await
}

async fn prefs(node: &TestNode, user: &str) -> Value {
    let r = node.get("/v1/me/preferences", &token(user, 60)).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unseen_notification_is_one_email_with_both_parts_and_a_read_one_is_none() {
    let env = TestEnv::new().await;
    let sink = Sink::start(&[], &[]).await;
    let cfg = fallback(
        &format!("{KIND}:email:1500ms"),
        &sink,
        Duration::from_secs(1),
    );
    let node = env.node_with(|c| c.fallback = cfg).await;
    set_contact(&node, "ema", "Ema@Example.com").await;
    let read = publish(&node, "ema", "read in time").await;
    let id = publish(&node, "ema", "<script>alert('x')</script> & more").await;
    let r = node
        .post(
            &format!("/v1/notifications/{read}/read"),
            &token("ema", 60),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        job_state_is(&env, &id, "sent").await,
        "{:?}",
        job(&env, &id).await
    );
    let msgs = sink.messages();
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    let m = &msgs[0];
    assert_eq!(m["rcpt_tos"], json!(["Ema@Example.com"]));
    assert_eq!(m["content_type"], "multipart/alternative");
    let h = &m["headers"];
    assert_eq!(h["message-id"], format!("<{}@herald.test>", key_of(&id)));
    assert_eq!(h["x-herald-keys"], key_of(&id));
    assert_eq!(h["list-unsubscribe-post"], "List-Unsubscribe=One-Click");
    let unsub = h["list-unsubscribe"].as_str().unwrap();
    assert!(
        unsub.starts_with("<http://herald.test/v1/email/unsubscribe?t=v1.") && unsub.ends_with('>'),
        "{unsub}"
    );
    assert_eq!(h["subject"], "<script>alert('x')</script> & more");
    let html = m["html"].as_str().unwrap();
    assert!(
        html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("href=\"https://app.test/x?a=1&amp;b=2\""),
        "{html}"
    );
    let text = m["text"].as_str().unwrap();
    assert!(
        text.contains("<script>alert('x')</script> & more"),
        "{text}"
    );
    assert!(!text.contains("read in time") && !html.contains("read in time"));
    // The read one never became a job (read before its fallback_after).
    assert!(job(&env, &read).await.is_none());
    assert_eq!(
        node.metric("herald_email_messages_total{outcome=\"sent\"}")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_covers_what_gathers_within_the_window() {
    let env = TestEnv::new().await;
    let sink = Sink::start(&[], &[]).await;
    let window = Duration::from_secs(3);
    let cfg = fallback(&format!("{KIND}:email:100ms"), &sink, window);
    let node = env.node_with(|c| c.fallback = cfg).await;
    set_contact(&node, "dina", "dina@example.com").await;
    let first = publish(&node, "dina", "first").await;
    assert!(job_state_is(&env, &first, "sent").await);
    // Within the window: four more, one of them read before the digest goes out.
    let mut more = Vec::new();
    for i in 0..4 {
        more.push(publish(&node, "dina", &format!("more {i}")).await);
    }
    // Each falls due (100 ms) and is deferred to the window's end, not sent.
    assert!(
        eventually(WAIT, || async {
            let c = env.sql().await;
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM fallback_jobs WHERE user_id = 'dina' AND state = 'pending'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            n == 4
        })
        .await
    );
    let r = node
        .post(
            &format!("/v1/notifications/{}/read", more[1]),
            &token("dina", 60),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(sink.messages().len(), 1, "nothing more within the window");
    for id in [&more[0], &more[2], &more[3]] {
        assert!(
            job_state_is(&env, id, "sent").await,
            "{:?}",
            job(&env, id).await
        );
    }
    assert!(job_state_is(&env, &more[1], "cancelled").await);
    assert_eq!(
        job(&env, &more[1]).await.unwrap().2.as_deref(),
        Some("seen")
    );
    let msgs = sink.messages();
    assert_eq!(
        msgs.len(),
        2,
        "one email for the first, one digest: {msgs:#?}"
    );
    let d = &msgs[1];
    let mut want = [key_of(&more[0]), key_of(&more[2]), key_of(&more[3])];
    want.sort();
    assert_eq!(d["headers"]["x-herald-keys"], want.join(", "));
    assert_eq!(
        d["headers"]["message-id"],
        format!("<{}@herald.test>", want[0])
    );
    assert_eq!(d["headers"]["subject"], "3 unread notifications");
    let text = d["text"].as_str().unwrap();
    for t in ["more 0", "more 2", "more 3"] {
        assert!(text.contains(t), "{text}");
    }
    assert!(!text.contains("more 1"));
    let gap = d["received_at"].as_f64().unwrap() - msgs[0]["received_at"].as_f64().unwrap();
    assert!(
        gap >= window.as_secs_f64() - 0.05,
        "the digest came {gap}s after the first email"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_click_unsubscribe_turns_email_off_and_forged_links_change_nothing() {
    let env = TestEnv::new().await;
    let sink = Sink::start(&[], &[]).await;
    let cfg = fallback(
        &format!("{KIND}:email:100ms"),
        &sink,
        Duration::from_secs(1),
    );
    let node = env.node_with(|c| c.fallback = cfg).await;
    set_contact(&node, "uma", "uma@example.com").await;
    let id = publish(&node, "uma", "hello").await;
    assert!(job_state_is(&env, &id, "sent").await);
    let link = sink.messages()[0]["headers"]["list-unsubscribe"]
        .as_str()
        .unwrap()
        .trim_matches(['<', '>'])
        .replace("http://herald.test", &node.base);
    // The user saved a settings form that names the type explicitly (as the React view
    // does): the unsubscribe must turn that off too, not only the `*` default.
    let r = node
        .http
        .put(format!("{}/v1/me/preferences", node.base))
        .bearer_auth(token("uma", 60))
        .json(&json!({ "channels": { KIND: { "email": true }, "other": { "email": true, "webhook": true } } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let before = prefs(&node, "uma").await;
    assert_eq!(before["channels"][KIND]["email"], true, "{before}");

    // GET is the confirmation page only (mail scanners prefetch links).
    let page = node.http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<form method=\"post\""));
    assert_eq!(prefs(&node, "uma").await, before);

    // Refusals: each with its JSON code, and the stored preferences unchanged.
    let post = |url: String, body: &'static str| {
        let http = node.http.clone();
        async move {
            let r = http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            (status, v["code"].as_str().unwrap_or_default().to_owned())
        }
    };
    let base = format!("{}/v1/email/unsubscribe", node.base);
    let forged = herald_gateway::fallback::unsubscribe::token(
        b"not the server's secret at all!!",
        "uma",
        "*",
    );
    // The link's own signature on another user's name.
    let t = link.split("t=").nth(1).unwrap().to_owned();
    let p: Vec<&str> = t.split('.').collect();
    let other_user = format!("v1.Ym9i.{}.{}", p[2], p[3]);
    for (url, body, want) in [
        (
            base.clone(),
            "List-Unsubscribe=One-Click",
            (400, "invalid_parameter"),
        ),
        (
            format!("{base}?t=garbage"),
            "List-Unsubscribe=One-Click",
            (400, "invalid_parameter"),
        ),
        (
            format!("{base}?t={forged}"),
            "List-Unsubscribe=One-Click",
            (403, "forbidden"),
        ),
        (
            format!("{base}?t={other_user}"),
            "List-Unsubscribe=One-Click",
            (403, "forbidden"),
        ),
        (link.clone(), "", (400, "invalid_parameter")),
        (
            link.clone(),
            "List-Unsubscribe=Maybe",
            (400, "invalid_parameter"),
        ),
    ] {
        let got = post(url.clone(), body).await;
        assert_eq!((got.0, got.1.as_str()), want, "{url} {body}");
    }
    assert_eq!(prefs(&node, "uma").await, before);
    let got = node
        .http
        .get(format!("{base}?t={forged}"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 403);

    // The real one-click POST.
    let (status, _) = post(link.clone(), "List-Unsubscribe=One-Click").await;
    assert_eq!(status, 200);
    let after = prefs(&node, "uma").await;
    assert_eq!(after["channels"]["*"]["email"], false, "{after}");
    assert_eq!(after["channels"][KIND]["email"], false, "{after}");
    assert_eq!(after["channels"]["other"]["email"], false, "{after}");
    assert_eq!(
        after["channels"]["other"]["webhook"], true,
        "other channels kept: {after}"
    );
    // Later notifications send no email.
    let later = publish(&node, "uma", "after unsubscribing").await;
    assert!(job_state_is(&env, &later, "cancelled").await);
    assert_eq!(job(&env, &later).await.unwrap().2.as_deref(), Some("muted"));
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_550_bounce_suppresses_the_address_without_retries() {
    let env = TestEnv::new().await;
    let sink = Sink::start(&["gone@example.com"], &[]).await;
    let cfg = fallback(
        &format!("{KIND}:email:100ms"),
        &sink,
        Duration::from_secs(1),
    );
    let node = env.node_with(|c| c.fallback = cfg).await;
    set_contact(&node, "bo", "Gone@Example.com").await;
    let id = publish(&node, "bo", "bounce me").await;
    assert!(
        job_state_is(&env, &id, "dead").await,
        "{:?}",
        job(&env, &id).await
    );
    let (_, attempts, error) = job(&env, &id).await.unwrap();
    assert_eq!(attempts, 1, "no retry after a permanent failure");
    assert!(error.unwrap().contains("550"));
    let r = node
        .http
        .get(format!("{}/v1/email/suppressions", node.base))
        .bearer_auth(SERVICE_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["suppressions"][0]["email"], "gone@example.com");
    assert_eq!(v["suppressions"][0]["source"], "bounce");
    // The next one is cancelled without an SMTP attempt.
    let next = publish(&node, "bo", "again").await;
    assert!(job_state_is(&env, &next, "cancelled").await);
    assert_eq!(
        job(&env, &next).await.unwrap().2.as_deref(),
        Some("suppressed")
    );
    assert!(sink.messages().is_empty());
    // No address on file: cancelled too.
    let none = publish(&node, "nobody", "no address").await;
    assert!(job_state_is(&env, &none, "cancelled").await);
    assert_eq!(
        job(&env, &none).await.unwrap().2.as_deref(),
        Some("no address")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_451_is_retried_with_backoff_then_sent_once() {
    let env = TestEnv::new().await;
    let sink = Sink::start(&[], &[("later@example.com", 2)]).await;
    let cfg = fallback(
        &format!("{KIND}:email:100ms"),
        &sink,
        Duration::from_secs(1),
    );
    let node = env.node_with(|c| c.fallback = cfg).await;
    set_contact(&node, "lu", "later@example.com").await;
    let id = publish(&node, "lu", "eventually").await;
    assert!(
        job_state_is(&env, &id, "sent").await,
        "{:?}",
        job(&env, &id).await
    );
    assert_eq!(job(&env, &id).await.unwrap().1, 3, "two 451s, then sent");
    let msgs = sink.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        msgs[0]["headers"]["message-id"],
        format!("<{}@herald.test>", key_of(&id))
    );
    assert_eq!(
        node.metric("herald_email_messages_total{outcome=\"failed\"}")
            .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suppression_api_refuses_bad_calls_and_changes_nothing() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let url = format!("{}/v1/email/suppressions", node.base);
    let list = || async {
        let r = node
            .http
            .get(&url)
            .bearer_auth(SERVICE_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["suppressions"].clone()
    };
    let call =
        |m: reqwest::Method, u: String, key: Option<&'static str>, body: Option<&'static str>| {
            let http = node.http.clone();
            async move {
                let mut req = http.request(m, u);
                if let Some(k) = key {
                    req = req.bearer_auth(k);
                }
                if let Some(b) = body {
                    req = req.header("content-type", "application/json").body(b);
                }
                let r = req.send().await.unwrap();
                let s = r.status().as_u16();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                (s, v["code"].as_str().unwrap_or_default().to_owned())
            }
        };
    use reqwest::Method;
    for (m, u, key, body, want) in [
        (Method::GET, url.clone(), None, None, (401, "unauthorized")),
        (
            Method::POST,
            url.clone(),
            Some("wrong-key-0123456789abcdef"),
            Some(r#"{"email":"a@b.co"}"#),
            (401, "unauthorized"),
        ),
        (
            Method::POST,
            url.clone(),
            Some(SERVICE_KEY),
            Some(r#"{"email":"not an address"}"#),
            (400, "validation_failed"),
        ),
        (
            Method::POST,
            url.clone(),
            Some(SERVICE_KEY),
            Some(r#"{"email":"a@b.co","extra":1}"#),
            (400, "validation_failed"),
        ),
        (
            Method::POST,
            url.clone(),
            Some(SERVICE_KEY),
            Some(r#"{"email":"a@b.co","reason":""}"#),
            (400, "validation_failed"),
        ),
        (
            Method::POST,
            url.clone(),
            Some(SERVICE_KEY),
            Some("{"),
            (400, "invalid_json"),
        ),
        (
            Method::GET,
            format!("{url}?limit=0"),
            Some(SERVICE_KEY),
            None,
            (400, "invalid_parameter"),
        ),
        (
            Method::DELETE,
            format!("{url}/nope"),
            Some(SERVICE_KEY),
            None,
            (400, "invalid_parameter"),
        ),
        (
            Method::DELETE,
            format!("{url}/a@b.co"),
            Some(SERVICE_KEY),
            None,
            (404, "not_found"),
        ),
        (
            Method::PUT,
            url.clone(),
            Some(SERVICE_KEY),
            None,
            (405, "method_not_allowed"),
        ),
    ] {
        let got = call(m.clone(), u.clone(), key, body).await;
        assert_eq!((got.0, got.1.as_str()), want, "{m} {u} {body:?}");
    }
    assert_eq!(list().await, json!([]));
    // Add (201), add again (200, first reason kept), list, remove (204).
    let add = call(
        Method::POST,
        url.clone(),
        Some(SERVICE_KEY),
        Some(r#"{"email":"Ann@B.co","reason":"provider bounce"}"#),
    )
    .await;
    assert_eq!(add.0, 201);
    let again = call(
        Method::POST,
        url.clone(),
        Some(SERVICE_KEY),
        Some(r#"{"email":"ann@b.co"}"#),
    )
    .await;
    assert_eq!(again.0, 200);
    let l = list().await;
    assert_eq!(l.as_array().unwrap().len(), 1);
    assert_eq!(l[0]["email"], "ann@b.co");
    assert_eq!(l[0]["reason"], "provider bounce");
    assert_eq!(l[0]["source"], "api");
    let del = call(
        Method::DELETE,
        format!("{url}/ANN@b.co"),
        Some(SERVICE_KEY),
        None,
    )
    .await;
    assert_eq!(del.0, 204);
    assert_eq!(list().await, json!([]));
    // Without the email channel the unsubscribe endpoint does not exist.
    let r = node
        .http
        .post(format!("{}/v1/email/unsubscribe?t=x", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
