#!/usr/bin/env python3
"""Markdown summary of a directory of herald-loadtest result files (used by bench.sh)."""
import json, pathlib, sys

d = pathlib.Path(sys.argv[1])
runs = sorted(d.glob("*.json"), key=lambda p: p.stat().st_mtime)
if not runs:
    sys.exit(f"no results in {d}")
first = json.loads(runs[0].read_text())
env = first["environment"]
print(f"# Herald load test — {first['started_at'][:19]}Z\n")
print(f"Machine: {env['cores']} cores ({env['cpu_model']}), {env['mem_total_kib'] // 1048576} GiB, "
      f"kernel {env['kernel']}, open files {env['open_files_limit']}. Everything on one host "
      "(gateways, PostgreSQL, Redis and the harness share the cores).\n")
print("| run | sockets | key figures | lost | dup | checks |")
print("|---|---|---|---|---|---|")
f1 = lambda v: "?" if v is None else f"{v:,.1f}"
f0 = lambda v: "?" if v is None else f"{v:,.0f}"
for p in runs:
    r = json.loads(p.read_text())
    res, sc = r["results"], r["scenario"]
    socks = res["connect"]["sockets"]
    lost = dup = "-"
    if sc == "idle":
        key = (f"connect {f0(res['connect']['per_s'])}/s; gateway RSS {f1(res.get('gateway_kib_per_conn'))} KiB/conn; "
               f"kernel TCP {f1(res['kernel_tcp_mem_kib_per_conn'])} KiB/conn; harness {f1(res['hold']['worker_rss_kib_per_socket'])} KiB/socket")
    elif sc == "fanout":
        pb, dl, lat = res["publish"], res["delivery"], res["latency"]
        key = (f"rate {r['params']['rate']} x{r['params']['publish']['recipients_per_publish']} recipients: "
               f"accepted {f0(pb['accepted_per_s'])}/s, delivered {f0(dl['deliveries_per_s'])}/s; "
               f"latency p50 {lat['p50_ms']:.1f} p95 {lat['p95_ms']:.1f} p99 {lat['p99_ms']:.1f} "
               f"p99.9 {lat['p999_ms']:.1f} max {lat['max_ms']:.1f} ms")
        lost, dup = dl["lost"], dl["duplicates"]
    elif sc == "broadcast":
        b = res["broadcasts"]
        key = "; ".join(f"last socket after {x['time_to_last_ms']:.0f} ms ({f0(x['deliveries_per_s'])}/s)" for x in b)
        lost = sum(x["missing"] for x in b)
    elif sc == "storm":
        key = "; ".join(f"{f0(x['handshakes_per_s'])} handshakes/s, all caught up in {x['time_to_all_complete_s']:.2f} s"
                        for x in res["rounds"])
        lost = sum(x["lost"] for x in res["rounds"]); dup = sum(x["duplicates"] for x in res["rounds"])
    else:
        key = ""
    ok = "pass" if r["checks"]["passed"] else "FAIL: " + "; ".join(r["checks"]["failures"])
    print(f"| {p.stem} | {socks:,} | {key} | {lost} | {dup} | {ok} |")
print("\nCommands: see `command` in each JSON file.")
