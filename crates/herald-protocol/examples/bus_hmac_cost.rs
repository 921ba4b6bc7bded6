//! What sealing and opening a bus payload with `HERALD_BUS_HMAC_KEY` costs, per frame, next to
//! the envelope check every node runs anyway. A measurement to read, not a test:
//!
//! ```text
//! cargo run --release -p herald-protocol --example bus_hmac_cost
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test harness: a panic is a failed test

use std::hint::black_box;
use std::time::Instant;

use herald_protocol::bus::{BusKey, BusMessage, LiveFrame};
use herald_protocol::Notification;

fn frame(body_len: usize) -> BusMessage {
    let notification: Notification = serde_json::from_value(serde_json::json!({
        "id": "0190b7f2-7c1e-7a3b-9f2e-1c2d3e4f5a6b", "user_id": "user-123456", "seq": 4242,
        "type": "comment.created", "title": "New comment on your post",
        "body": "x".repeat(body_len), "link": "/posts/7#comment-991", "avatar_url": null,
        "data": {"post_id": 7}, "created_at": "2026-01-01T00:00:00Z",
        "delivered_at": null, "read_at": null
    }))
    .unwrap_or_else(|e| panic!("notification: {e}"));
    BusMessage::Live(LiveFrame::render(notification, 3, 57))
}

/// Nanoseconds per call of `f`, the best of 5 runs of `n` calls.
fn ns_per(n: u32, mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_nanos() as f64 / f64::from(n)
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let key =
        BusKey::new(b"an-example-node-key-of-32-bytes-or-more").unwrap_or_else(|e| panic!("{e}"));
    let channel = "herald:user:user-123456";
    let n = 200_000;
    println!("payload bytes | encode ns | encode+seal ns | open ns | envelope check ns");
    for body in [40, 300, 1_800] {
        let msg = frame(body);
        let plain = msg.encode();
        let sealed = msg.encode_for(channel, Some(&key));
        let BusMessage::Live(live) = &msg else {
            unreachable!()
        };
        let encode = ns_per(n, || {
            black_box(black_box(&msg).encode());
        });
        let seal = ns_per(n, || {
            black_box(black_box(&msg).encode_for(channel, Some(&key)));
        });
        let open = ns_per(n, || {
            let _ = black_box(key.open(channel, black_box(&sealed)));
        });
        let check = ns_per(n, || {
            let _ = black_box(black_box(live).check("user-123456"));
        });
        println!(
            "{:>13} | {encode:>9.0} | {seal:>14.0} | {open:>7.0} | {check:>17.0}",
            plain.len()
        );
    }
}
