#!/usr/bin/env python3
"""Markdown report of a bench directory (used by bench.sh).

    report.py <bench-dir> [--plot <path-without-extension>]
    report.py --half-max <system-dir>     # half the best max rate there (bench.sh's half max)

<bench-dir> holds one sub-directory per system (`herald/`, `herald-sio/`, `socketio/`, `nestjs/`) of herald-loadtest
JSON results (named idle, fanout-rate, fanout-max, fanout-half-max, fanout-max-batch100,
broadcast, storm; fanout-rate-<r> and fanout-max-c<n> for sweeps over rates and publishes in
flight), or — older layout — the JSON files directly (Herald only). Prints the
Markdown to stdout: a side-by-side table with ratios for Herald against each baseline (and for
Herald's Socket.IO endpoint, `herald-sio`, against the Socket.IO baseline), then
every run's key figures. With
--plot, writes a latency-percentile plot: <path>.png with matplotlib, else <path>.svg drawn by
hand (no dependencies).
"""
import json, math, pathlib, sys

NAMES = {"herald": "Herald", "herald-sio": "Herald (Socket.IO endpoint)", "socketio": "Socket.IO baseline", "nestjs": "NestJS baseline",
         "nestjs-prisma": "NestJS + Prisma baseline"}
BASELINES = ("socketio", "nestjs", "nestjs-prisma")
PCTS = [("p50", "p50_ms"), ("p90", "p90_ms"), ("p95", "p95_ms"), ("p99", "p99_ms"), ("p99.9", "p999_ms"), ("max", "max_ms")]


def load(d):
    subs = [s for s in ("herald", "herald-sio") + BASELINES if (d / s).is_dir()]
    out = {}
    if subs:
        for s in subs:
            out[s] = {p.stem: json.loads(p.read_text()) for p in sorted((d / s).glob("*.json"), key=lambda p: p.stat().st_mtime)}
    else:
        out["herald"] = {p.stem: json.loads(p.read_text()) for p in sorted(d.glob("*.json"), key=lambda p: p.stat().st_mtime)}
    return {k: v for k, v in out.items() if v}


def get(r, *path):
    for k in path:
        if r is None:
            return None
        r = r.get(k) if isinstance(r, dict) else (r[k] if isinstance(r, list) and isinstance(k, int) and k < len(r) else None)
    return r


def f0(v):
    return "–" if v is None else f"{v:,.0f}"


def f1(v):
    return "–" if v is None else f"{v:,.1f}"


def f2(v):
    return "–" if v is None else f"{v:,.2f}"


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else None


def rate_runs(runs):
    """The fixed-rate fanout runs (`fanout-rate`, or `fanout-rate-<r>` for LT_RATES), by rate."""
    names = [n for n in runs if n == "fanout-rate" or n.startswith("fanout-rate-")]
    def rate(n):
        try:
            return float(runs[n]["params"].get("rate"))
        except (TypeError, ValueError):
            return math.inf
    return sorted(names, key=rate)


def max_runs(runs):
    """The max-rate fanout runs (`fanout-max`, or `fanout-max-c<n>` for LT_MAX_CONCS), by
    publishes in flight."""
    names = [n for n in runs if n == "fanout-max" or (n.startswith("fanout-max-c") and n[12:].isdigit())]
    return sorted(names, key=lambda n: concurrency(runs[n]))


def concurrency(run):
    return get(run, "params", "publish", "publish_concurrency") or 0


def best_max(runs):
    """The max-rate run with the highest accepted rate: a system's max is its best over the
    publishes-in-flight sweep."""
    names = max_runs(runs)
    return max(names, key=lambda n: get(runs[n], "results", "publish", "accepted_per_s") or 0) if names else None


def metrics(runs):
    """Key figures of one system: {metric key: value}."""
    m = {}
    idle = runs.get("idle")
    if idle:
        res = idle["results"]
        m["rss_kib_per_conn"] = res.get("gateway_kib_per_conn")
        m["connect_per_s"] = get(res, "connect", "per_s")
        m["handshake_p99"] = get(res, "hold", "handshake_latency", "p99_ms")
        m["idle_sockets"] = get(res, "connect", "sockets")
    best = best_max(runs)
    for name in rate_runs(runs) + max_runs(runs) + ["fanout-half-max", "fanout-max-batch100"]:
        r = runs.get(name)
        if not r:
            continue
        res = r["results"]
        m[name] = {
            "rate": r["params"]["rate"],
            "conc": concurrency(r),
            "accepted_per_s": get(res, "publish", "accepted_per_s"),
            "deliveries_per_s": get(res, "delivery", "deliveries_per_s"),
            "lat": res.get("latency") or {},
            "http_p99": get(res, "publish", "http_latency", "p99_ms"),
            "lost": get(res, "delivery", "lost"),
            "dup": get(res, "delivery", "duplicates"),
            "failed": get(res, "publish", "failed_calls"),
        }
    if best:
        m["fanout-max"] = m[best]
        m["max_sweep"] = {m[n]["conc"]: m[n] for n in max_runs(runs)}
    b = runs.get("broadcast")
    if b:
        rounds = b["results"].get("broadcasts", [])
        m["bcast_ms"] = median([x.get("time_to_last_ms") for x in rounds])
        m["bcast_per_s"] = median([x.get("deliveries_per_s") for x in rounds])
        m["bcast_missing"] = sum(x.get("missing", 0) for x in rounds)
    s = runs.get("storm")
    if s:
        rounds = s["results"].get("rounds", [])
        m["storm_hs_per_s"] = mean([x.get("handshakes_per_s") for x in rounds])
        m["storm_all_s"] = mean([x.get("time_to_all_complete_s") for x in rounds])
        m["storm_down"] = s["params"].get("publish_while_down")
        m["storm_lost"] = sum(x.get("lost", 0) for x in rounds)
        m["storm_dup"] = sum(x.get("duplicates", 0) for x in rounds)
    return m


def ratio(h, b, higher_is_better):
    if h is None or b is None or h == 0 or b == 0:
        return "–"
    r = h / b if higher_is_better else b / h
    if r >= 1.05:
        return f"**{r:,.1f}×**"
    return "≈1× (same)" if r >= 0.95 else f"{r:,.2f}× (worse)"


def half_max(d):
    """Half of the best max-rate run's accepted rate among one system's results in `d`."""
    runs = {p.stem: json.loads(p.read_text()) for p in d.glob("fanout-max*.json")}
    best = best_max(runs)
    if not best:
        sys.exit(f"no max-rate run in {d}")
    print(max(1, round(runs[best]["results"]["publish"]["accepted_per_s"] / 2)))


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    if args[0] == "--half-max" and len(args) == 2:
        return half_max(pathlib.Path(args[1]))
    d = pathlib.Path(args[0])
    plot = args[args.index("--plot") + 1] if "--plot" in args else None
    data = load(d)
    if not data:
        sys.exit(f"no results in {d}")
    first = next(iter(next(iter(data.values())).values()))
    env = first["environment"]
    systems = list(data)
    ms = {s: metrics(data[s]) for s in systems}
    fr = next((data[s][rate_runs(data[s])[0]] for s in systems if rate_runs(data[s])), None)
    rates = ", ".join(str(data[s][n]["params"]["rate"]) for s in systems[:1] for n in rate_runs(data[s]))
    users = first["params"]["common"]["users"]

    print(f"# Herald load test — {first['started_at'][:19]}Z\n")
    print(f"Machine: {env['cores']} cores ({env['cpu_model']}), {env['mem_total_kib'] // 1048576} GiB, "
          f"kernel {env['kernel']}, open files {env['open_files_limit']}. Everything on one host "
          "(gateways, PostgreSQL, Redis and the harness share the cores). "
          f"Systems: {', '.join(NAMES[s] for s in systems)}, two nodes each, one Postgres and one Redis. "
          f"{users:,} users (one socket each) connected in every run"
          + (f"; fixed rate {rates}/s for {fr['params']['duration_s']:g} s" if fr else "") + ".\n")

    # Herald against each baseline; Herald's Socket.IO endpoint against the Socket.IO one.
    pairs = [("herald", b) for b in BASELINES] + [("herald-sio", "socketio")]
    for hs_name, base in [(h, b) for h, b in pairs if h in systems and b in systems]:
        H, B = (ms[hs_name], ms[base])
        bn, hn = NAMES[base], NAMES[hs_name]
        print(f"## Side by side: {hn} vs the {bn}\n")
        print(f"| metric | {hn} | {bn} | Herald advantage |")
        print("|---|---|---|---|")

        def row(label, hv, bv, fmt, higher):
            if hv is None and bv is None:  # a scenario this bench did not run
                return
            print(f"| {label} | {fmt(hv)} | {fmt(bv)} | {ratio(hv, bv, higher)} |")

        row("idle: server RSS per connection, KiB", H.get("rss_kib_per_conn"), B.get("rss_kib_per_conn"), f1, False)
        row("idle: connects/s (all sockets, from empty)", H.get("connect_per_s"), B.get("connect_per_s"), f0, True)
        fixed = [(n, "fanout at fixed rate") for n in rate_runs(data[hs_name])]
        for name, label in fixed + [("fanout-half-max", "fanout at half own max"), ("fanout-max", "fanout at max rate")]:
            h, b = H.get(name), B.get(name)
            if not h or not b:
                continue
            if name == "fanout-half-max":
                label = f"{label} ({h['rate']}/s vs {b['rate']}/s)"
            elif name == "fanout-max" and (len(H.get("max_sweep", {})) > 1 or len(B.get("max_sweep", {})) > 1):
                label = f"{label} (best of the sweep: {h['conc']} vs {b['conc']} in flight)"
            elif name.startswith("fanout-rate"):
                label = f"{label} ({h['rate']}/s)"
            if name == "fanout-max":
                row(f"{label}: accepted (durable) notifications/s", h["accepted_per_s"], b["accepted_per_s"], f0, True)
            if name == "fanout-half-max":
                print(f"| {label}: deliveries/s | {f0(h['deliveries_per_s'])} | {f0(b['deliveries_per_s'])} | (different rates) |")
            else:
                row(f"{label}: deliveries/s", h["deliveries_per_s"], b["deliveries_per_s"], f0, True)
            # Different rates, or different publishes in flight: no ratio.
            apart = ("different rates" if name == "fanout-half-max" else
                     "different in flight" if name == "fanout-max" and h["conc"] != b["conc"] else None)
            for p, k in PCTS[:1] + PCTS[3:5]:
                if apart:
                    print(f"| {label}: latency {p}, ms | {f1(h['lat'].get(k))} | {f1(b['lat'].get(k))} | ({apart}) |")
                else:
                    row(f"{label}: latency {p}, ms", h["lat"].get(k), b["lat"].get(k), f1, False)
            print(f"| {label}: lost / duplicates | {h['lost']} / {h['dup']} | {b['lost']} / {b['dup']} | |")
        hs, bs = H.get("max_sweep", {}), B.get("max_sweep", {})
        if len(hs) > 1 or len(bs) > 1:
            for c in sorted(set(hs) | set(bs)):
                h, b = hs.get(c, {}), bs.get(c, {})
                row(f"max rate with {c} publishes in flight: accepted/s", h.get("accepted_per_s"), b.get("accepted_per_s"), f0, True)
                row(f"max rate with {c} publishes in flight: latency p99, ms", h.get("lat", {}).get("p99_ms"), b.get("lat", {}).get("p99_ms"), f1, False)
        if "fanout-max-batch100" in H:
            h = H["fanout-max-batch100"]
            print(f"| Herald only: max rate, 100 recipients per call: notifications/s | {f0(h['accepted_per_s'])} | n/a (one recipient per call) | |")
        row("broadcast: ms until the last socket has it (median of 3)", H.get("bcast_ms"), B.get("bcast_ms"), f0, False)
        row("broadcast: deliveries/s", H.get("bcast_per_s"), B.get("bcast_per_s"), f0, True)
        row("storm: reconnect handshakes/s (all sockets at once)", H.get("storm_hs_per_s"), B.get("storm_hs_per_s"), f0, True)
        row("storm: s until every socket is back (Herald: and caught up)", H.get("storm_all_s"), B.get("storm_all_s"), f2, False)
        if "storm_down" in H:
            print(f"| storm: notifications published while down → lost / duplicated | "
                  f"{H.get('storm_down')} → {H.get('storm_lost')} / {H.get('storm_dup')} | "
                  f"{B.get('storm_down')} (no resume in the seed design) | |")
        print()
        print("Ratios are Herald's advantage (baseline ÷ Herald for memory, time and latency; Herald ÷ baseline "
              "for rates); below 1× means the baseline did better.\n")

    print("## Every run\n")
    print("| system | run | sockets | key figures | lost | dup | checks |")
    print("|---|---|---|---|---|---|---|")
    for s in systems:
        for name, r in data[s].items():
            res, sc = r["results"], r["scenario"]
            socks = res["connect"]["sockets"]
            lost = dup = "-"
            if sc == "idle":
                key = (f"connect {f0(res['connect']['per_s'])}/s; server RSS {f1(res.get('gateway_kib_per_conn'))} KiB/conn; "
                       f"harness {f1(res['hold']['worker_rss_kib_per_socket'])} KiB/socket")
            elif sc == "fanout":
                pb, dl, lat = res["publish"], res["delivery"], res["latency"]
                key = (f"rate {r['params']['rate']} x{r['params']['publish']['recipients_per_publish']}"
                       + (f", {concurrency(r)} in flight" if r['params']['rate'] == "max" else "") + ": "
                       f"accepted {f0(pb['accepted_per_s'])}/s, delivered {f0(dl['deliveries_per_s'])}/s; "
                       f"latency p50 {lat['p50_ms']:.1f} p95 {lat['p95_ms']:.1f} p99 {lat['p99_ms']:.1f} "
                       f"p99.9 {lat['p999_ms']:.1f} max {lat['max_ms']:.1f} ms; publish HTTP p99 {pb['http_latency']['p99_ms']:.1f} ms")
                lost, dup = dl["lost"], dl["duplicates"]
            elif sc == "broadcast":
                b = res["broadcasts"]
                key = "; ".join(f"last socket after {x['time_to_last_ms']:.0f} ms ({f0(x['deliveries_per_s'])}/s)" for x in b)
                lost = sum(x["missing"] for x in b)
            elif sc == "storm":
                key = (f"{r['params']['publish_while_down']} published while down; "
                       + "; ".join(f"{f0(x['handshakes_per_s'])} handshakes/s, all back in {x['time_to_all_complete_s']:.2f} s" for x in res["rounds"]))
                lost = sum(x["lost"] for x in res["rounds"]); dup = sum(x["duplicates"] for x in res["rounds"])
            else:
                key = ""
            ok = "pass" if r["checks"]["passed"] else "FAIL: " + "; ".join(r["checks"]["failures"])
            print(f"| {NAMES[s]} | {name} | {socks:,} | {key} | {lost} | {dup} | {ok} |")
    print("\nCommands: see `command` in each JSON file (bench directory `" + d.name + "`).")

    if plot:
        series = []
        for s in systems:
            styles = ["solid", "dashdot", "dashed", "dotted"]  # one per fixed rate (LT_RATES)
            fixed = [(n, styles[i % len(styles)]) for i, n in enumerate(rate_runs(data[s]))]
            for name, style in fixed + [("fanout-half-max", "dashed"), (best_max(data[s]), "dotted")]:
                r = data[s].get(name) if name else None
                if r and r["results"].get("latency", {}).get("count"):
                    lat = r["results"]["latency"]
                    series.append((f"{NAMES[s]} {name} ({r['params']['rate']}/s)", s, style, [lat[k] for _, k in PCTS]))
        if series:
            path = write_plot(plot, series)
            print(f"\n![End-to-end latency percentiles]({pathlib.Path(path).name})\n")
            print("End-to-end latency (publish call start → event parsed by the receiving socket) by percentile, log scale.")


COLORS = {"herald": "#1f77b4", "herald-sio": "#17becf", "socketio": "#d62728", "nestjs": "#2ca02c", "nestjs-prisma": "#9467bd"}


def write_plot(base, series):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return write_svg(base, series)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    xs = list(range(len(PCTS)))
    for label, s, style, ys in series:
        ax.plot(xs, [max(y, 0.01) for y in ys], linestyle=style, marker="o", color=COLORS[s], label=label)
    ax.set_xticks(xs, [p for p, _ in PCTS])
    ax.set_yscale("log")
    ax.set_ylabel("latency, ms (log)")
    ax.set_xlabel("percentile")
    ax.set_title("End-to-end notification latency")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(base + ".png")
    return base + ".png"


def write_svg(base, series):
    W, H, L, R, T, B = 760, 420, 70, 250, 40, 50
    pw, ph = W - L - R, H - T - B
    vals = [max(y, 0.01) for _, _, _, ys in series for y in ys]
    lo = 10 ** math.floor(math.log10(min(vals)))
    hi = 10 ** math.ceil(math.log10(max(vals)))
    if hi <= lo:
        hi = lo * 10
    def X(i): return L + pw * i / (len(PCTS) - 1)
    def Y(v): return T + ph * (1 - (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{L + pw / 2}" y="20" text-anchor="middle" font-size="14">End-to-end notification latency</text>']
    d = lo
    while d <= hi * 1.0001:
        y = Y(d)
        out.append(f'<line x1="{L}" y1="{y:.1f}" x2="{L + pw}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{d:g} ms</text>')
        d *= 10
    for i, (p, _) in enumerate(PCTS):
        out.append(f'<line x1="{X(i):.1f}" y1="{T}" x2="{X(i):.1f}" y2="{T + ph}" stroke="#eee"/>')
        out.append(f'<text x="{X(i):.1f}" y="{T + ph + 18}" text-anchor="middle">{p}</text>')
    out.append(f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    dash = {"solid": "", "dashed": ' stroke-dasharray="6,4"', "dotted": ' stroke-dasharray="2,3"',
            "dashdot": ' stroke-dasharray="8,3,2,3"'}
    for j, (label, s, style, ys) in enumerate(series):
        pts = " ".join(f"{X(i):.1f},{Y(y):.1f}" for i, y in enumerate(ys))
        out.append(f'<polyline points="{pts}" fill="none" stroke="{COLORS[s]}" stroke-width="2"{dash[style]}/>')
        for i, y in enumerate(ys):
            out.append(f'<circle cx="{X(i):.1f}" cy="{Y(y):.1f}" r="3" fill="{COLORS[s]}"/>')
        ly = T + 10 + j * 18
        out.append(f'<line x1="{L + pw + 12}" y1="{ly}" x2="{L + pw + 36}" y2="{ly}" stroke="{COLORS[s]}" stroke-width="2"{dash[style]}/>')
        out.append(f'<text x="{L + pw + 40}" y="{ly + 4}">{label}</text>')
    out.append("</svg>")
    pathlib.Path(base + ".svg").write_text("\n".join(out) + "\n")
    return base + ".svg"


if __name__ == "__main__":
    main()
