"""A local SMTP server for the email tests (aiosmtpd): every accepted message is parsed and
appended as one JSON line to <dir>/messages.jsonl (raw text, headers, text and HTML parts).

  smtp_sink.py --port 2525 --dir /tmp/sink [--reject a@x.y]... [--tempfail b@x.y:2]...

--reject ADDR answers RCPT TO:<ADDR> with 550 (a permanent bounce); --tempfail ADDR:N answers
it with 451 the first N times, then accepts. Prints "listening <port>" when ready.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import signal
import sys
import threading
import time

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out_dir, reject, tempfail):
        self.path = os.path.join(out_dir, "messages.jsonl")
        self.reject = {a.lower() for a in reject}
        self.tempfail = {}
        for spec in tempfail:
            addr, _, n = spec.rpartition(":")
            self.tempfail[addr.lower()] = int(n)
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        a = address.lower()
        if a in self.reject:
            return "550 5.1.1 mailbox unavailable"
        left = self.tempfail.get(a, 0)
        if left > 0:
            self.tempfail[a] = left - 1
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.content.decode("utf-8", errors="replace")
        msg = email.message_from_string(raw, policy=email.policy.default)
        parts = {}
        for part in msg.walk():
            ctype = part.get_content_type()
            if ctype in ("text/plain", "text/html") and ctype not in parts:
                parts[ctype] = part.get_content()
        record = {
            "received_at": time.time(),
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": {k.lower(): str(v) for k, v in msg.items()},
            "content_type": msg.get_content_type(),
            "text": parts.get("text/plain"),
            "html": parts.get("text/html"),
            "raw": raw,
        }
        with self.lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return "250 Message accepted"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--reject", action="append", default=[])
    p.add_argument("--tempfail", action="append", default=[])
    args = p.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    controller = Controller(
        Sink(args.dir, args.reject, args.tempfail), hostname="127.0.0.1", port=args.port
    )
    controller.start()
    print(f"listening {args.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # Exit when the parent (the test) goes away: stdin closes.
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
