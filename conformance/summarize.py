#!/usr/bin/env python3
"""Summarise a kosoku/Autobahn report directory (index.json) per case category.

    python3 conformance/summarize.py conformance/reports [--cases]
"""
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

VERDICTS = ["OK", "NON-STRICT", "INFORMATIONAL", "FAILED", "UNIMPLEMENTED", "ERROR"]


def key(case_id: str):
    return tuple(int(p) for p in case_id.split("."))


def main() -> None:
    outdir = Path(sys.argv[1] if len(sys.argv) > 1 else "conformance/reports")
    index = json.loads((outdir / "index.json").read_text())
    per_cat: dict[str, Counter] = defaultdict(Counter)
    total: Counter = Counter()
    bad = []
    for agent, cases in index.items():
        for case_id, r in cases.items():
            cat = case_id.split(".")[0]
            per_cat[cat][r["behavior"]] += 1
            total[r["behavior"]] += 1
            if r["behaviorClose"] not in ("OK", "INFORMATIONAL"):
                per_cat[cat]["close!"] += 1
                total["close!"] += 1
            if r["behavior"] not in ("OK", "NON-STRICT", "INFORMATIONAL") or (
                r["behaviorClose"] not in ("OK", "INFORMATIONAL")
            ):
                bad.append((case_id, r["behavior"], r["behaviorClose"], r["remoteCloseCode"]))
    print("| category | cases | " + " | ".join(VERDICTS) + " | close not OK |")
    print("|---|---|" + "---|" * (len(VERDICTS) + 1))
    for cat in sorted(per_cat, key=int):
        c = per_cat[cat]
        print(f"| {cat} | {sum(c[v] for v in VERDICTS)} | " + " | ".join(str(c[v]) for v in VERDICTS) + f" | {c['close!']} |")
    print(f"| all | {sum(total[v] for v in VERDICTS)} | " + " | ".join(str(total[v]) for v in VERDICTS) + f" | {total['close!']} |")
    if bad:
        print("\nnot passed (case, behavior, close behavior, server close code):")
        for row in sorted(bad, key=lambda r: key(r[0])):
            print("  ", *row)
    if "--cases" in sys.argv:
        for agent, cases in index.items():
            for case_id in sorted(cases, key=key):
                r = cases[case_id]
                print(case_id, r["behavior"], r["behaviorClose"], r["remoteCloseCode"])


if __name__ == "__main__":
    main()
