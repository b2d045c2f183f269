#!/usr/bin/env python3
"""The exfiltration table of docs/exfiltration.md over many seeds of the
simulated organisation: per incident kind, how many seeds flagged it, how
many before 10% of its bytes left, and the share out by the flag; false
alerts per 1,000 principal-days, with the roles that raised them.

    python3 bench/exfil_seeds.py --seeds 3-12 [--bin target/release/distillguard]
        [--set detect.egress_factor=1e9] [--no-teams] [--json out.json]

`--set` appends a `[detect]` setting to each seed's asset map, and
`--no-teams` drops its `[[team]]` tables: the same worlds with a signal
turned off, to see what it adds."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict


def seeds(text):
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def strip_teams(toml):
    """The asset map without its [[team]] tables (and their comment)."""
    out, skip = [], False
    for line in toml.splitlines():
        if line.startswith("[[") or line.startswith("["):
            skip = line.strip() == "[[team]]"
        if line.startswith("# Peer groups"):
            continue
        if not skip:
            out.append(line)
    return "\n".join(out) + "\n"


def run_seed(binary, seed, settings, no_teams, work):
    d = os.path.join(work, f"org-{seed}")
    subprocess.run([binary, "exfil", "simulate", "--seed", str(seed), "--out", d],
                   check=True, capture_output=True)
    assets = os.path.join(d, "assets.toml")
    toml = open(assets).read()
    if no_teams:
        toml = strip_teams(toml)
    if settings:
        head, sep, tail = toml.partition("\n[[departure]]")
        toml = head + "\n[detect]\n" + "".join(f"{k} = {v}\n" for k, v in settings) + sep + tail
    variant = os.path.join(d, "variant.toml")
    open(variant, "w").write(toml)
    report = os.path.join(d, "report.json")
    subprocess.run([binary, "exfil", "analyze", os.path.join(d, "cloudtrail.jsonl.gz"),
                    "--assets", variant, "--format", "json", "--out", report],
                   check=True, capture_output=True)
    out = subprocess.run([binary, "exfil", "eval", "--report", report, "--truth",
                          os.path.join(d, "truth.jsonl"), "--format", "json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="3-12", type=seeds)
    ap.add_argument("--bin", default="target/release/distillguard")
    ap.add_argument("--set", action="append", default=[],
                    help="a [detect] setting for every seed, NAME=VALUE")
    ap.add_argument("--no-teams", action="store_true")
    ap.add_argument("--json", help="write every seed's summary here")
    a = ap.parse_args()
    settings = []
    for kv in a.set:
        k, _, v = kv.partition("=")
        settings.append((k.removeprefix("detect."), v))
    by_kind = defaultdict(list)
    days = alerts = 0
    roles = defaultdict(int)
    summaries = {}
    with tempfile.TemporaryDirectory() as work:
        for seed in a.seeds:
            s = run_seed(a.bin, seed, settings, a.no_teams, work)
            summaries[seed] = s
            for i in s["incidents"]:
                by_kind[i["incident"]].append((seed, i))
            days += s["principal_days"]
            alerts += s["false_alerts"]
            for f in s["false_alert_principals"]:
                roles[f["role"]] += f["alerts"]
            print(f"seed {seed}: " + ", ".join(
                f"{i['incident']} {'%.1f%%' % (100 * i['share_before_flag']) if i['flagged'] else 'missed'}"
                for i in s["incidents"]) + f"; {s['false_alerts']} false alerts", file=sys.stderr)
    print(f"| incident (seeds {a.seeds[0]}–{a.seeds[-1]}) | seeds | flagged | flagged before 10% of its bytes left | share out by the flag: median, max |")
    print("|---|---|---|---|---|")
    for kind in sorted(by_kind):
        rows = [i for _, i in by_kind[kind]]
        flagged = [i for i in rows if i["flagged"]]
        shares = [100 * i["share_before_flag"] for i in rows]
        print(f"| `{kind}` | {len(rows)} | {len(flagged)} | "
              f"{sum(1 for i in flagged if i['share_before_flag'] <= 0.10)} | "
              f"{statistics.median(shares):.1f}%, {max(shares):.1f}% |")
    per = 1000 * alerts / days if days else 0
    print(f"\nfalse alerts: {alerts} in {days} principal-days ({per:.2f} per 1,000)"
          + (" by role: " + ", ".join(f"{r} {n}" for r, n in sorted(roles.items())) if roles else ""))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summaries, f, indent=1)


if __name__ == "__main__":
    main()
