#!/usr/bin/env python3
"""Scale-out benchmarks (docs/scale.md, BENCHMARKS.md).

  python3 bench/cluster.py [--scenario default] [--seed 1] [--only fold|propagation|accounts]

- fold: a simulated world is published into a private NATS JetStream
  (`distillguard bus replay`, ids added), then folded by one worker owning
  all 8 partitions, by two workers owning 0-3 and 4-7 at once, and by two
  workers with the cluster's linker (`detect --linker`, `link`). Each
  run is timed from the workers' start until their checkpoints cover every
  event; the peak RSS of each process is read from /proc. After the one
  worker is stopped (it saves its snapshot), a new one on 0-7 resumes from
  the snapshot: timed until its log says so, the snapshot's size read
  from the store.
- propagation: a gateway publishing to that NATS and one worker; fresh
  accounts (one per client address) each send one request that the
  worker's thresholds (all 0) flag at once; the time from the request's
  answer until the gateway's admin API shows the verdict is the verdict
  propagation (event -> bus -> worker -> board -> gateway).
- accounts: one worker's peak memory with 1M accounts (one event each).

Uses the release binary (cargo build --release first). Prints JSON.
"""
import argparse
import gzip
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from benchutil import free_port, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DG = os.path.join(ROOT, "target", "release", "distillguard")


def nats_server(port, store):
    exe = "/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else "nats-server"
    p = subprocess.Popen([exe, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", store],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p


def peak_rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def folded(store, stream):
    try:
        c = sqlite3.connect(store)
        n = c.execute("SELECT COALESCE(SUM(events), 0) FROM checkpoints WHERE stream = ?",
                      (stream,)).fetchone()[0]
        c.close()
        return n
    except sqlite3.Error:
        return 0


def fold(args, tmp, nats_url):
    world = os.path.join(tmp, "world")
    subprocess.run([DG, "simulate", "--scenario", args.scenario, "--seed", str(args.seed),
                    "--out", world, "--format", "json"], check=True, stdout=subprocess.DEVNULL)
    log = os.path.join(world, "events.jsonl.gz")
    spill = os.path.join(tmp, "events-with-ids.jsonl")
    accounts = set()
    n = 0
    with gzip.open(log, "rt") as f, open(spill, "w") as out:
        for i, line in enumerate(f):
            e = json.loads(line)
            e["id"] = f"ev_bench_{i}"
            accounts.add(e["account_id"])
            out.write(json.dumps(e, separators=(",", ":")) + "\n")
            n += 1
    t = time.time()
    r = subprocess.run([DG, "bus", "replay", spill, "--nats", nats_url], check=True,
                       capture_output=True, text=True)
    publish_s = time.time() - t
    published = json.loads(r.stdout)["published"]
    results = {"events": n, "accounts": len(accounts), "published": published,
               "publish_events_per_s": round(published / publish_s)}
    runs = {}
    for label, ranges, linker in (("1 worker", ["0-7"], False),
                                  ("2 workers", ["0-3", "4-7"], False),
                                  ("2 workers and the linker", ["0-3", "4-7"], True)):
        tag = f"{len(ranges)}{'-linker' if linker else ''}"
        store = os.path.join(tmp, f"ck-{tag}.db")
        procs = []
        t = time.time()
        outs = [os.path.join(tmp, f"verdicts-{tag}-{r_}.jsonl") for r_ in ranges]
        for r_, o in zip(ranges, outs):
            procs.append(subprocess.Popen(
                [DG, "detect", "--nats", nats_url, "--partitions", r_, "--store", store,
                 "--name", f"bench-{r_}", "--idle-flush-ms", "200", "--checkpoint-ms", "200",
                 "--verdicts-out", o] + (["--linker"] if linker else []),
                stdout=subprocess.DEVNULL, stderr=open(o + ".log", "w")))
        members_out = os.path.join(tmp, f"members-{tag}.jsonl")
        link = None
        if linker:
            link = subprocess.Popen(
                [DG, "link", "--nats", nats_url, "--name", "bench-linker", "--linker",
                 "--members-out", members_out],
                stdout=subprocess.PIPE, stderr=open(members_out + ".log", "w"), text=True)
        while folded(store, "DISTILLGUARD_EVENTS") < n:
            time.sleep(0.05)
            if time.time() - t > 600 or any(p.poll() is not None for p in procs):
                logs = "".join(open(o + ".log").read()[-2000:] for o in outs)
                for p in procs:
                    p.kill()
                sys.exit(f"{label}: {folded(store, 'DISTILLGUARD_EVENTS')} of {n} folded\n{logs}")
        secs = time.time() - t
        rss = [peak_rss_mb(p.pid) for p in procs]
        for p in procs:
            p.terminate()
            p.wait()
        verdicts = {}
        for o in outs:
            with open(o) as f:
                for line in f:
                    v = json.loads(line)
                    verdicts[v["account_id"]] = v["verdict"]
        results[label] = {"seconds": round(secs, 2), "events_per_s": round(n / secs),
                          "peak_rss_mb": [round(x or 0, 1) for x in rss]}
        if link is not None:
            link_rss = peak_rss_mb(link.pid)
            # Told to stop, the linker folds what the stream holds first.
            link.terminate()
            out, _ = link.communicate(timeout=600)
            link_secs = time.time() - t
            summary = json.loads(out)
            with open(members_out) as f:
                for line in f:
                    m = json.loads(line)
                    verdicts[m["account_id"]] = "block"
            results[label]["linker"] = {
                "seconds_until_linked": round(link_secs, 2),
                "peak_rss_mb": round(link_rss or 0, 1),
                "folded": summary["folded"], "late": summary["late"],
                "campaigns": len(summary["campaigns"]), "members": summary["members"]}
        results[label]["quality"] = quality(verdicts, world)
        runs[label] = verdicts
        if label == "1 worker":
            results["resume from the snapshot"] = resume(nats_url, store, tmp, n, verdicts)
    # The same events through one `analyze` (no account records either).
    r = subprocess.run([DG, "analyze", log, "--format", "json", "-q"], check=True,
                       capture_output=True, text=True)
    report = json.loads(r.stdout)
    analyzed = {a["account_id"]: a["verdict"] for a in report["accounts"]}
    results["analyze"] = {"quality": quality(analyzed, world)}
    for label, verdicts in runs.items():
        ids = set(analyzed) | set(verdicts)
        same = sum(analyzed.get(a, "allow") == verdicts.get(a, "allow") for a in ids)
        results[label]["same_verdict_as_analyze"] = f"{same} of {len(ids)}"
    return results


def resume(nats_url, store, tmp, n, verdicts):
    """The worker was stopped (SIGTERM: it saved its snapshot). A new one on
    the same partitions resumes from it: timed until its log says so, its
    snapshot's size read from the store, and its verdicts compared with
    the run it resumes."""
    c = sqlite3.connect(store)
    size = c.execute("SELECT length(data) FROM worker_snapshots").fetchone()[0]
    c.close()
    out = os.path.join(tmp, "verdicts-resumed.jsonl")
    log = out + ".log"
    t = time.time()
    p = subprocess.Popen(
        [DG, "detect", "--nats", nats_url, "--partitions", "0-7", "--store", store,
         "--name", "bench-resumed", "--idle-flush-ms", "200", "--checkpoint-ms", "200",
         "--verdicts-out", out], stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
    while "resumed from the snapshot" not in open(log).read():
        time.sleep(0.02)
        if time.time() - t > 600 or p.poll() is not None:
            p.kill()
            sys.exit("no resume:\n" + open(log).read()[-2000:])
    secs = time.time() - t
    rss = peak_rss_mb(p.pid)
    p.terminate()
    summary = json.loads(p.communicate(timeout=600)[0])
    again = {}
    with open(out) as f:
        for line in f:
            v = json.loads(line)
            again[v["account_id"]] = v["verdict"]
    same = sum(again.get(a) == verdicts.get(a) for a in set(again) | set(verdicts))
    return {"snapshot_bytes": size, "seconds_to_resume": round(secs, 2),
            "peak_rss_mb": round(rss or 0, 1), "resumed_from": summary["resumed_from"],
            "folded_again": summary["folded"], "events": n,
            "same_verdict": f"{same} of {len(set(again) | set(verdicts))}"}


FLAGGED = {"throttle", "block"}


def quality(verdicts, world):
    """Recall over attack accounts, honest accounts flagged."""
    attack = honest = caught = false = 0
    with open(os.path.join(world, "truth.jsonl")) as f:
        for line in f:
            t = json.loads(line)
            v = verdicts.get(t["account_id"], "allow")
            if t["label"] != "attack":
                honest += 1
                false += v in FLAGGED
            else:
                attack += 1
                caught += v in FLAGGED
    return {"attack_accounts": attack, "caught": caught,
            "recall": round(caught / max(attack, 1), 4),
            "honest_accounts": honest, "honest_flagged": false}


def many_accounts(args, tmp, nats_url):
    """One worker's peak memory with `args.accounts_n` accounts, one event
    each (timestamps over the last ten minutes, so that none is idle)."""
    n = args.accounts_n
    spill = os.path.join(tmp, "accounts.jsonl")
    start = time.time() - 600
    with open(spill, "w") as out:
        for i in range(n):
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start + i * 600 / n))
            ms = int((start + i * 600 / n) * 1000) % 1000
            out.write(json.dumps({
                "id": f"ev_acct_{i}", "ts": f"{ts}.{ms:03d}Z", "account_id": f"acct_{i}",
                "api_key_id": f"key_{i}", "endpoint": "/v1/chat/completions",
                "request": {"model": "atlas-3", "max_tokens": 200, "messages": [
                    {"role": "user", "content": f"Question {i % 977}: explain how a hash map works"}]},
                "status": 200, "client": {"ip": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"},
            }, separators=(",", ":")) + "\n")
    subprocess.run([DG, "bus", "replay", spill, "--nats", nats_url, "--stream", "DG_ACCTS",
                    "--subject-prefix", "dgaccts"], check=True, capture_output=True)
    store = os.path.join(tmp, "ck-accts.db")
    t = time.time()
    p = subprocess.Popen([DG, "detect", "--nats", nats_url, "--stream", "DG_ACCTS",
                          "--subject-prefix", "dgaccts", "--bucket", "dgaccts", "--store", store,
                          "--idle-flush-ms", "200", "--checkpoint-ms", "500"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while folded(store, "DG_ACCTS") < n:
        time.sleep(0.2)
        if time.time() - t > 1800:
            sys.exit("timed out")
    secs = time.time() - t
    rss = peak_rss_mb(p.pid)
    t = time.time()
    p.terminate()
    p.wait()
    stop_secs = time.time() - t
    # Stopped, it saved its snapshot.
    c = sqlite3.connect(store)
    row = c.execute("SELECT length(data) FROM worker_snapshots").fetchone()
    c.close()
    snap = row[0] if row else 0
    return {"accounts": n, "seconds": round(secs, 1), "peak_rss_mb": round(rss or 0, 1),
            "bytes_per_account": round((rss or 0) * 1048576 / n),
            "snapshot_bytes": snap, "snapshot_bytes_per_account": round(snap / n),
            "seconds_to_stop_and_save": round(stop_secs, 1)}


def get(url, headers):
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def propagation(args, tmp, nats_url):
    token = "dgadmin_bench"
    import hashlib
    sha = hashlib.sha256(token.encode()).hexdigest()
    mock = subprocess.Popen([DG, "upstream-mock", "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, text=True)
    up = mock.stdout.readline().strip().split()[-1]
    cfg = os.path.join(tmp, "gw.toml")
    with open(cfg, "w") as f:
        f.write(f"""listen = "127.0.0.1:0"
auth = "none"
trusted_proxies = ["127.0.0.1"]
[admin]
token_sha256 = "{sha}"
[detect]
enabled = false
[detect.thresholds]
monitor = 0.0
throttle = 0.0
block = 1.0
min_requests = 1
[cluster.nats]
url = "{nats_url}"
stream = "DG_PROP"
subject_prefix = "dgprop"
bucket = "dgprop"
spill = "{tmp}/prop-spill.jsonl"
[[upstreams]]
name = "m"
url = "{up}"
dialect = "openai"
models = ["atlas-3"]
""")
    gw = subprocess.Popen([DG, "serve", "--config", cfg], stdout=subprocess.PIPE, text=True,
                          stderr=subprocess.DEVNULL)
    url = gw.stdout.readline().strip().split()[-1]
    worker = subprocess.Popen([DG, "detect", "--config", cfg, "--store", f"{tmp}/prop.db",
                               "--idle-flush-ms", str(args.idle_flush_ms)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    stop_load = [False]

    def load():
        # Background traffic from 50 other accounts, about args.load req/s.
        b = json.dumps({"model": "atlas-3", "max_tokens": 5,
                        "messages": [{"role": "user", "content": "hello"}]}).encode()
        i = 0
        while not stop_load[0]:
            r = urllib.request.Request(url + "/v1/chat/completions", data=b, method="POST",
                                       headers={"Content-Type": "application/json",
                                                "X-Forwarded-For": f"172.16.0.{i % 50}"})
            try:
                urllib.request.urlopen(r, timeout=5).read()
            except OSError:
                pass
            i += 1
            time.sleep(1 / args.load)

    import threading
    loader = threading.Thread(target=load, daemon=True)
    if args.load > 0:
        loader.start()
        time.sleep(3)
    body = json.dumps({"model": "atlas-3", "max_tokens": 5,
                       "messages": [{"role": "user", "content": "Explain TCP step by step"}]}).encode()
    delays = []
    for i in range(args.accounts):
        ip = f"10.{i // 250}.{i % 250}.7"
        req = urllib.request.Request(url + "/v1/chat/completions", data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "X-Forwarded-For": ip})
        urllib.request.urlopen(req, timeout=5).read()
        t = time.time()
        while True:
            v = get(f"{url}/admin/accounts/ip:{ip}", {"Authorization": f"Bearer {token}"})
            if v["verdict"] != "allow":
                break
            if time.time() - t > 30:
                sys.exit(f"no verdict for {ip}")
            time.sleep(0.005)
        delays.append((time.time() - t) * 1000)
    stop_load[0] = True
    for p in (worker, gw, mock):
        p.terminate()
        p.wait()
    delays.sort()
    q = lambda x: round(delays[min(len(delays) - 1, int(x * len(delays)))], 1)
    return {"accounts": len(delays), "idle_flush_ms": args.idle_flush_ms,
            "background_req_per_s": args.load,
            "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": round(delays[-1], 1),
            "mean_ms": round(statistics.mean(delays), 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="default")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", choices=["fold", "propagation", "accounts"])
    ap.add_argument("--accounts-n", type=int, default=1_000_000)
    ap.add_argument("--accounts", type=int, default=100)
    ap.add_argument("--idle-flush-ms", type=int, default=200)
    ap.add_argument("--load", type=float, default=0,
                    help="propagation: background requests per second from other accounts")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        nats = nats_server(port, os.path.join(tmp, "nats"))
        url = f"nats://127.0.0.1:{port}"
        out = {}
        try:
            if args.only in (None, "fold"):
                out["fold"] = fold(args, tmp, url)
            if args.only in (None, "propagation"):
                out["propagation"] = propagation(args, tmp, url)
            if args.only in (None, "accounts"):
                out["accounts"] = many_accounts(args, tmp, url)
        finally:
            nats.terminate()
            nats.wait()
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
