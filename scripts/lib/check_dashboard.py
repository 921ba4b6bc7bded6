"""Check the sample Grafana dashboard against the metrics the gateway really exports.

Used by scripts/validate-deploy.sh; Python 3.11, standard library only.

    python3 scripts/lib/check_dashboard.py [--root REPO_ROOT] [--dashboard FILE]
                                           [--metrics-rs FILE] [--no-self-test]

The registered metrics are read from crates/herald-gateway/src/metrics.rs: every string
literal that is a whole metric name starting with "herald_" (the tests module excluded), typed
by the constructor it is passed to (counter/counter_vec, gauge, HistogramOpts), plus the four
process-collector metrics the dashboard may use (only while metrics.rs registers the
ProcessCollector). Then, for every PromQL expression in deploy/grafana/herald-dashboard.json
(panel targets, collapsed rows included, and the template variables' queries):
  names   - every herald_* / process_* identifier is a registered metric; a histogram is only
            referenced through its _bucket, _count or _sum series (a bare histogram name
            selects nothing).
  rate    - rate(), irate() and increase() are applied only to counters (names ending in
            _total) and histogram series (_bucket/_count/_sum), never to a gauge.
  panels  - every panel has a description and at least one query; every query uses the
            ${datasource} template variable; the datasource, job and instance variables exist.
Naming is also checked on the metrics.rs side: counters end in _total, nothing else does
(the rate rule relies on it).
Then a self-test: deliberately broken in-memory copies (a misspelt metric, rate() on a gauge,
...) must each fail, so the checks above cannot pass vacuously.
Exit status 1 with the problems listed, 0 when all is well.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys

DASHBOARD = "deploy/grafana/herald-dashboard.json"
METRICS_RS = "crates/herald-gateway/src/metrics.rs"

# From the prometheus crate's process collector (registered in Metrics::new on Linux). It
# exports a few more (virtual memory, start time, threads); these are the ones we vouch for.
PROCESS_METRICS = {
    "process_resident_memory_bytes": "gauge",
    "process_cpu_seconds_total": "counter",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
RATE_FUNCS = ("rate", "irate", "increase")

NAME_RE = re.compile(r"(?<![A-Za-z0-9_:$])((?:herald|process)_[a-z0-9_]+)")
RATE_CALL_RE = re.compile(r"\b(" + "|".join(RATE_FUNCS) + r")\s*\(")
# A string literal that is exactly a metric name.
LITERAL_RE = re.compile(r'"(herald_[a-z0-9_]+)"')
# Constructors and types that decide a metric's kind: counter(...), counter_vec(...),
# gauge(...), IntCounter::new(...), HistogramOpts::new(...), HistogramVec::new(...), ...
CTOR_RE = re.compile(r"\b(\w*(?:[Cc]ounter|[Gg]auge|[Hh]istogram)\w*)\s*(?:\(|::|<)")
TESTS_RE = re.compile(r"#\[cfg\(test\)\]\s*mod\s+\w+")


def kind_of_ctor(ident: str) -> str:
    low = ident.lower()
    if "histogram" in low:
        return "histogram"
    if "counter" in low:
        return "counter"
    return "gauge"


def registered_metrics(source: str) -> tuple[dict[str, str], list[str]]:
    """Metric name -> kind ("counter", "gauge", "histogram") from metrics.rs, and problems."""
    errors: list[str] = []
    m = TESTS_RE.search(source)
    if m:
        source = source[: m.start()]
    # Drop whole-line comments (doc comments mention metric names in backticks, but be safe).
    source = re.sub(r"(?m)^\s*//.*$", "", source)
    metrics: dict[str, str] = {}
    for lit in LITERAL_RE.finditer(source):
        name = lit.group(1)
        ctors = list(CTOR_RE.finditer(source, 0, lit.start()))
        if not ctors:
            errors.append(f"{METRICS_RS}: cannot tell the type of {name} (no constructor before it)")
            continue
        kind = kind_of_ctor(ctors[-1].group(1))
        if name in metrics and metrics[name] != kind:
            errors.append(f"{METRICS_RS}: {name} registered as both {metrics[name]} and {kind}")
        metrics[name] = kind
    if len(metrics) < 10:
        errors.append(f"{METRICS_RS}: found only {len(metrics)} metric names; has the file's layout changed?")
    if "ProcessCollector" in source:
        metrics.update(PROCESS_METRICS)
    for name, kind in sorted(metrics.items()):
        if kind == "counter" and not name.endswith("_total"):
            errors.append(f"{METRICS_RS}: counter {name} does not end in _total")
        if kind != "counter" and name.endswith("_total"):
            errors.append(f"{METRICS_RS}: {kind} {name} ends in _total (reserved for counters)")
    return metrics, errors


def walk_panels(panels: list) -> list[dict]:
    out = []
    for p in panels or []:
        out.append(p)
        out.extend(walk_panels(p.get("panels", [])))  # collapsed rows keep their panels here
    return out


def panel_where(p: dict) -> str:
    return f"panel {p.get('id')} \"{p.get('title', '')}\""


def expressions(dash: dict) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    out = []
    for p in walk_panels(dash.get("panels", [])):
        for t in p.get("targets", []) or []:
            if t.get("expr"):
                out.append((f"{panel_where(p)} target {t.get('refId', '?')}", t["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if q:
            out.append((f"variable ${v.get('name')}", q))
    return out


def resolve(name: str, metrics: dict[str, str]) -> tuple[str, str] | str:
    """(registered base name, kind of this series) or an error message."""
    kind = metrics.get(name)
    if kind == "histogram":
        return f"{name} is a histogram: it has no series of that name (use _bucket, _count or _sum)"
    if kind:
        return name, kind
    for suffix in HISTOGRAM_SUFFIXES:
        base = name[: -len(suffix)]
        if name.endswith(suffix) and metrics.get(base) == "histogram":
            return base, "histogram"
    return f"{name} is not a metric the gateway exports (not in {METRICS_RS})"


def call_argument(expr: str, open_paren: int) -> str:
    """The text between the parenthesis at open_paren and its match (quotes respected)."""
    depth, i, quote = 0, open_paren, None
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'`":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return expr[open_paren + 1 : i]
        i += 1
    return expr[open_paren + 1 :]


def check(dash: dict, metrics: dict[str, str]) -> tuple[list[str], dict]:
    errors: list[str] = []
    stats = {"exprs": 0, "names": set(), "rate_calls": 0}

    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        errors.append("templating: no Prometheus datasource variable named 'datasource'")
    for name in ("job", "instance"):
        if name not in variables:
            errors.append(f"templating: no '{name}' variable")

    for p in walk_panels(dash.get("panels", [])):
        if p.get("type") == "row":
            continue
        where = panel_where(p)
        if not str(p.get("description", "")).strip():
            errors.append(f"{where}: no description")
        targets = [t for t in p.get("targets", []) or [] if t.get("expr")]
        if not targets:
            errors.append(f"{where}: no query")
        for t in [p] + targets:
            uid = (t.get("datasource") or {}).get("uid")
            if uid != "${datasource}":
                errors.append(f"{where}: datasource {uid!r}, not the ${{datasource}} variable")

    exprs = expressions(dash)
    if not exprs:
        errors.append("the dashboard has no queries at all")
    for where, expr in exprs:
        stats["exprs"] += 1
        for name in sorted(set(NAME_RE.findall(expr))):
            r = resolve(name, metrics)
            if isinstance(r, str):
                errors.append(f"{where}: {r}\n      {expr}")
            else:
                stats["names"].add(r[0])
        for call in RATE_CALL_RE.finditer(expr):
            stats["rate_calls"] += 1
            func = call.group(1)
            arg = call_argument(expr, call.end() - 1)
            names = NAME_RE.findall(arg)
            for name in names:
                r = resolve(name, metrics)
                if isinstance(r, str):
                    continue  # already reported above
                _, kind = r
                is_counter = kind == "counter" and name.endswith("_total")
                is_hist_series = kind == "histogram" and name.endswith(HISTOGRAM_SUFFIXES)
                if not (is_counter or is_hist_series):
                    errors.append(
                        f"{where}: {func}() on {name}, a {kind}: only counters (_total) and "
                        f"histogram series (_bucket/_count/_sum) may be rated\n      {expr}"
                    )
    return errors, stats


# --- self-test: each breakage must add an error mentioning `expect` -------------------------


def _add_panel(d: dict, expr: str, **extra) -> None:
    p = {
        "type": "timeseries",
        "id": 9999,
        "title": "broken",
        "description": "deliberately broken",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "targets": [
            {"refId": "A", "expr": expr, "datasource": {"type": "prometheus", "uid": "${datasource}"}}
        ],
    }
    p.update(extra)
    d["panels"].append(p)


def _replace_in_exprs(d: dict, old: str, new: str) -> None:
    for p in walk_panels(d["panels"]):
        for t in p.get("targets", []) or []:
            if old in t.get("expr", ""):
                t["expr"] = t["expr"].replace(old, new)
                return
    raise AssertionError(f"self-test: no expression contains {old!r}")


def _first_panel(d: dict) -> dict:
    return next(p for p in walk_panels(d["panels"]) if p.get("type") != "row")


def _collapsed_row(d: dict) -> None:
    d["panels"].append(
        {"type": "row", "id": 9998, "title": "collapsed", "collapsed": True, "panels": []}
    )
    _add_panel(d["panels"][-1], "herald_nonexistent_gauge")


def _drop_var(d: dict, name: str) -> None:
    d["templating"]["list"] = [v for v in d["templating"]["list"] if v.get("name") != name]


def _bad_ds(d: dict) -> None:
    _first_panel(d)["targets"][0]["datasource"] = {"type": "prometheus", "uid": "P1234"}


def _no_desc(d: dict) -> None:
    _first_panel(d)["description"] = ""


def _add_var(d: dict, query: str) -> None:
    d["templating"]["list"].append({"name": "x", "type": "query", "query": query})


def _drop_process_metrics(m: dict) -> None:
    for k in PROCESS_METRICS:
        m.pop(k)


# (what, breaks the dashboard, breaks the metric set, text a new error must contain)
BREAKAGES = [
    ("misspelt metric",
     lambda d: _replace_in_exprs(d, "herald_connections{", "herald_conections{"), None,
     "herald_conections"),
    ("rate() on the gauge herald_connections",
     lambda d: _add_panel(d, 'sum(rate(herald_connections{job=~"$job"}[5m]))'), None,
     "rate() on herald_connections"),
    ("irate() on process_open_fds",
     lambda d: _add_panel(d, "irate(process_open_fds[1m])"), None,
     "irate() on process_open_fds"),
    ("increase() on a gauge inside a subquery",
     lambda d: _add_panel(d, "increase(max(herald_bus_subscribed_users)[1h:1m])"), None,
     "increase() on herald_bus_subscribed_users"),
    ("bare histogram name",
     lambda d: _add_panel(d, "rate(herald_publish_duration_seconds[5m])"), None,
     "herald_publish_duration_seconds is a histogram"),
    ("_bucket of a counter",
     lambda d: _add_panel(d, "rate(herald_limited_total_bucket[5m])"), None,
     "herald_limited_total_bucket is not a metric"),
    ("metric inside a collapsed row", _collapsed_row, None, "herald_nonexistent_gauge"),
    ("unknown name in a variable query",
     lambda d: _add_var(d, "label_values(herald_connection, instance)"), None,
     "variable $x: herald_connection is not"),
    ("panel without a description", _no_desc, None, "no description"),
    ("target with a fixed datasource", _bad_ds, None, "P1234"),
    ("no instance variable", lambda d: _drop_var(d, "instance"), None, "no 'instance' variable"),
    ("metric renamed in metrics.rs",
     None, lambda m: m.pop("herald_fanout_late_total"),
     "herald_fanout_late_total is not"),
    ("process collector gone from metrics.rs", None, _drop_process_metrics,
     "process_resident_memory_bytes is not"),
]


def self_test(dash: dict, metrics: dict[str, str]) -> list[str]:
    baseline = set(check(dash, metrics)[0])
    failures = []
    for what, break_dash, break_metrics, expect in BREAKAGES:
        d, m = copy.deepcopy(dash), dict(metrics)
        if break_dash:
            break_dash(d)
        if break_metrics:
            break_metrics(m)
        new = [e for e in check(d, m)[0] if e not in baseline]
        if not any(expect in e for e in new):
            failures.append(f"self-test: {what} was not caught (expected an error mentioning {expect!r})")
    # And the metrics.rs side: a counter without _total, a gauge with it, a missing registration.
    for what, src, expect in [
        ("counter without _total", 'counter(&r, "herald_things", "x")' + _FILLER,
         "counter herald_things does not end in _total"),
        ("gauge ending in _total", 'gauge(&r, "herald_things_total", "x")' + _FILLER,
         "gauge herald_things_total ends in _total"),
        ("no metrics found", "fn main() {}", "found only 0 metric names"),
    ]:
        if not any(expect in e for e in registered_metrics(src)[1]):
            failures.append(f"self-test: {what} in metrics.rs was not caught")
    return failures


_FILLER = "".join(f'\ngauge(&r, "herald_filler_{c}", "x")' for c in "abcdefghijk")


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=os.path.normpath(os.path.join(here, "..", "..")))
    ap.add_argument("--dashboard", help=f"default: ROOT/{DASHBOARD}")
    ap.add_argument("--metrics-rs", help=f"default: ROOT/{METRICS_RS}")
    ap.add_argument("--no-self-test", action="store_true")
    args = ap.parse_args()
    dash_path = args.dashboard or os.path.join(args.root, DASHBOARD)
    rs_path = args.metrics_rs or os.path.join(args.root, METRICS_RS)

    try:
        with open(dash_path, encoding="utf-8") as f:
            dash = json.load(f)
        with open(rs_path, encoding="utf-8") as f:
            metrics, errors = registered_metrics(f.read())
    except (OSError, json.JSONDecodeError) as e:
        print(f"check_dashboard: {e}", file=sys.stderr)
        return 1

    dash_errors, stats = check(dash, metrics)
    errors += dash_errors
    if not args.no_self_test:
        errors += self_test(dash, metrics)
    if errors:
        print(f"check_dashboard: {dash_path}: {len(errors)} problem(s):", file=sys.stderr)
        for e in errors:
            print(f"  - {e}", file=sys.stderr)
        return 1
    unused = sorted(set(metrics) - stats["names"])
    print(
        f"check_dashboard: ok {os.path.relpath(dash_path, args.root)}: {stats['exprs']} queries, "
        f"{len(stats['names'])} of {len(metrics)} metrics used, {stats['rate_calls']} rate/irate/increase "
        f"calls on counters or histogram series"
        + ("" if args.no_self_test else f", self-test caught all {len(BREAKAGES) + 3} breakages")
    )
    if unused:
        print(f"check_dashboard: not on the dashboard: {', '.join(unused)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
