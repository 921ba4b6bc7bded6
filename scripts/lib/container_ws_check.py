"""End-to-end check through a load balancer: publish over HTTP, receive on WebSockets.

Used by scripts/container-test.sh (in the tools venv, which has `websockets`):

    python container_ws_check.py --url http://127.0.0.1:PORT --service-key KEY \
        --token JWT --user USER [--nodes 2] [--timeout 30]

1. Opens WebSockets to URL/v1/ws (Authorization: Bearer JWT) until sockets are held by
   --nodes distinct gateway nodes (the `connected` frame names the node; the balancer
   spreads connections round-robin), at most 4 x --nodes sockets. Each socket must finish
   its catch-up (`notifications:batch` with complete: true).
2. Publishes one notification to USER with POST URL/v1/notifications (service key) and
   expects 201 with the notification's id.
3. Every socket, on every node, must receive it live (`notification` with that id): the
   node that took the publish delivers to its own sockets, the others through Redis.

Exit status 0 on success; 1 with a message naming what failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.error
import urllib.request
import uuid

from websockets.asyncio.client import connect


def fail(msg: str) -> None:
    print(f"[container-test] FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def info(msg: str) -> None:
    print(f"[container-test] {msg}", file=sys.stderr)


async def recv_json(ws, deadline: float) -> dict:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    raw = await asyncio.wait_for(ws.recv(), timeout=remaining)
    return json.loads(raw)


async def open_socket(ws_url: str, token: str, deadline: float):
    ws = await asyncio.wait_for(
        connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10),
        timeout=max(0.1, deadline - time.monotonic()),
    )
    first = await recv_json(ws, deadline)
    if first.get("type") != "connected":
        raise RuntimeError(f"first frame is not `connected`: {first}")
    # Catch-up ends with a batch marked complete (sent even when empty).
    while True:
        frame = await recv_json(ws, deadline)
        if frame.get("type") == "notifications:batch" and frame.get("complete"):
            break
    return ws, first["node_id"]


def publish(url: str, key: str, user: str, marker: str) -> str:
    body = json.dumps(
        {
            "recipient": user,
            "type": "container.test",
            "title": "container test",
            "body": f"published through the load balancer ({marker})",
            "idempotency_key": marker,
        }
    ).encode()
    req = urllib.request.Request(
        f"{url}/v1/notifications",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, payload = resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        fail(f"publish answered {e.code}: {e.read()[:500]!r}")
    if status != 201:
        fail(f"publish answered {status}, expected 201: {payload}")
    items = payload.get("notifications") or []
    if len(items) != 1 or items[0].get("user_id") != user:
        fail(f"unexpected publish answer: {payload}")
    return items[0]["id"]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--service-key", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()

    deadline = time.monotonic() + args.timeout
    ws_url = args.url.replace("http://", "ws://", 1).rstrip("/") + "/v1/ws"
    sockets = []  # (ws, node_id)
    try:
        while len({n for _, n in sockets}) < args.nodes:
            if len(sockets) >= 4 * args.nodes:
                fail(
                    f"{len(sockets)} sockets through the balancer all landed on "
                    f"{sorted({n for _, n in sockets})}; expected {args.nodes} nodes"
                )
            try:
                sockets.append(await open_socket(ws_url, args.token, deadline))
            except (TimeoutError, asyncio.TimeoutError):
                fail(f"timed out opening a WebSocket to {ws_url}")
            except Exception as e:  # noqa: BLE001 - report any handshake failure plainly
                fail(f"WebSocket to {ws_url} failed: {type(e).__name__}: {e}")
        nodes = [n for _, n in sockets]
        info(f"{len(sockets)} WebSocket(s) for {args.user} through the balancer, on {nodes}")

        marker = f"container-test-{uuid.uuid4()}"
        nid = publish(args.url, args.service_key, args.user, marker)
        info(f"published {nid} through the balancer (201)")

        async def expect(ws, node: str) -> None:
            while True:
                try:
                    frame = await recv_json(ws, deadline)
                except (TimeoutError, asyncio.TimeoutError):
                    fail(f"the socket on {node} did not receive notification {nid}")
                if frame.get("type") in ("notification", "notifications:batch"):
                    got = [frame["notification"]] if frame["type"] == "notification" else frame["notifications"]
                    if any(n.get("id") == nid for n in got):
                        info(f"received {nid} on the socket held by {node}")
                        return

        await asyncio.gather(*(expect(ws, node) for ws, node in sockets))
    finally:
        for ws, _ in sockets:
            await ws.close()
    info(f"ok: published through the balancer, received on {len(sockets)} socket(s) on {sorted(set(nodes))}")


if __name__ == "__main__":
    asyncio.run(main())
