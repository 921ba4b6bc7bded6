#!/usr/bin/env bash
# Fan-out throughput of Herald on the local Redis Cluster (sharded pub/sub, 3 masters) vs a
# single Redis, in the same run: interleaved rounds (single, cluster, single, cluster, ...) of
# loadtest/bench.sh's max-rate fanout scenarios, 1 and 100 recipients per publish, two Herald
# nodes each time. Prints a table of the medians over the rounds (also written to
# loadtest/results/cluster-vs-single-<stamp>/report.md, with every run's JSON beside it).
#
#   loadtest/cluster-vs-single.sh
#   LT_ROUNDS=3 LT_USERS=5000 LT_SECS=20 loadtest/cluster-vs-single.sh
#
# On 2 cores the cluster's six redis-server processes share the CPU with everything else:
# the figures say what the cluster bus costs here, not what a cluster of machines gives.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
log() { printf '[cluster-vs-single %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

ROUNDS="${LT_ROUNDS:-2}"
export LT_USERS="${LT_USERS:-2000}" LT_SECS="${LT_SECS:-15}" LT_MAX_CONCS="${LT_MAX_CONCS:-256}"
export LT_SYSTEMS=herald LT_SCENARIOS="fanout-max fanout-max-batch100" LT_NO_MPL=1

bash scripts/services.sh
bash scripts/redis-cluster.sh up
SEEDS="$(bash scripts/redis-cluster.sh seeds)"
if [[ -z "${LT_SKIP_BUILD:-}" ]]; then
    cargo build --release -p herald-gateway -p herald-loadtest --features lab
fi
export LT_SKIP_BUILD=1

OUT="$ROOT/loadtest/results/cluster-vs-single-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
latest() { find "$ROOT/loadtest/results" -maxdepth 1 -name 'bench-*' -type d | sort | tail -n1; }
for r in $(seq 1 "$ROUNDS"); do
    for bus in single cluster; do
        before="$(latest)"
        log "round $r/$ROUNDS: $bus"
        if [[ "$bus" == cluster ]]; then
            LT_REDIS_CLUSTER="$SEEDS" bash loadtest/bench.sh >"$OUT/$bus-$r.log" 2>&1 || log "bench exited $? (see $OUT/$bus-$r.log)"
        else
            LT_REDIS_CLUSTER="" bash loadtest/bench.sh >"$OUT/$bus-$r.log" 2>&1 || log "bench exited $? (see $OUT/$bus-$r.log)"
        fi
        dir="$(latest)"
        if [[ -z "$dir" || "$dir" == "$before" ]]; then
            log "no results for $bus round $r (see $OUT/$bus-$r.log)"
            continue
        fi
        mv "$dir" "$OUT/$bus-$r"
    done
done

python3 - "$OUT" <<'PY' | tee "$OUT/report.md"
import glob, json, os, statistics, sys

out = sys.argv[1]
rows = {}
for path in sorted(glob.glob(os.path.join(out, "*-*", "herald", "*.json"))):
    bus = os.path.basename(os.path.dirname(os.path.dirname(path))).split("-")[0]
    name = os.path.basename(path)[:-5]
    try:
        r = json.load(open(path))
    except (OSError, ValueError):
        continue
    res = r.get("results", {})
    d, p, lat = res.get("delivery", {}), res.get("publish", {}), res.get("latency", {})
    rows.setdefault(name, {}).setdefault(bus, []).append({
        "deliveries": d.get("deliveries_per_s") or 0,
        "accepted": p.get("accepted_per_s") or 0,
        "p99": lat.get("p99_ms") or 0,
        "lost": d.get("lost") or 0,
        "dup": d.get("duplicates") or 0,
    })

def med(xs, k):
    return statistics.median([x[k] for x in xs]) if xs else float("nan")

labels = {"fanout-max": "fanout, 1 recipient per publish", "fanout-max-batch100": "fanout, 100 recipients per publish"}
print("| scenario (max rate) | bus | rounds | notifications accepted/s | deliveries/s | p99 latency ms | lost / duplicated |")
print("|---|---|---|---|---|---|---|")
for name in ("fanout-max", "fanout-max-batch100"):
    for bus in ("single", "cluster"):
        xs = rows.get(name, {}).get(bus, [])
        lost = sum(x["lost"] for x in xs)
        dup = sum(x["dup"] for x in xs)
        print(f"| {labels[name]} | {'single Redis' if bus == 'single' else 'Redis Cluster (3 masters + 3 replicas)'} | {len(xs)} | "
              f"{med(xs, 'accepted'):,.0f} | {med(xs, 'deliveries'):,.0f} | {med(xs, 'p99'):,.1f} | {lost} / {dup} |")
    s, c = rows.get(name, {}).get("single", []), rows.get(name, {}).get("cluster", [])
    if s and c and med(s, "deliveries"):
        print(f"| {labels[name]} | cluster / single | | {med(c, 'accepted') / med(s, 'accepted'):.2f} | {med(c, 'deliveries') / med(s, 'deliveries'):.2f} | | |")
PY
log "wrote $OUT/report.md"
