#!/usr/bin/env python3
"""Forward-auth latency (issue 15): `GET /v1/auth` answered by `distillguard
serve`, sequentially over one keep-alive connection, p50/p99/p99.9.

Cases: an account named by header (allowed), a distillguard key on the
request (the key cache), a blocked account (403 in the API's format), and
`/healthz` as the floor of this client and HTTP on this machine. The
client is Python's http.client, whose own cost is in every number (the
/healthz row shows it).

    bench/forward_auth.py [--n 20000] [--bin target/release/distillguard]
"""
import argparse
import hashlib
import http.client
import os
import statistics
import subprocess
import tempfile
import time
from benchutil import free_port, wait_port


def run(bin_, args):
    return subprocess.run([bin_] + args, check=True, capture_output=True, text=True).stdout.strip()


def measure(port, path, headers, n):
    c = http.client.HTTPConnection("127.0.0.1", port)
    times = []
    status = None
    for i in range(n + 1000):
        t = time.perf_counter()
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        r.read()
        dt = time.perf_counter() - t
        status = r.status
        if i >= 1000:  # warm-up
            times.append(dt * 1e6)
    times.sort()
    q = lambda p: times[min(len(times) - 1, int(p * len(times)))]
    return status, q(0.5), q(0.99), q(0.999)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--bin", default="target/release/distillguard")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="dg-fa-")
    db = os.path.join(tmp, "keys.db")
    key = run(a.bin, ["keys", "create", "--account", "acct_key", "--tier", "tier4", "--db", db])
    admin = run(a.bin, ["keys", "admin-token"])
    token = run(a.bin, ["keys", "admin-token"])
    pub, internal = free_port(), free_port()
    cfg = os.path.join(tmp, "gw.toml")
    with open(cfg, "w") as f:
        f.write(
            f'listen = "127.0.0.1:{pub}"\ninternal_listen = "127.0.0.1:{internal}"\nkeys_db = "{db}"\n'
            f'[admin]\ntoken_sha256 = "{hashlib.sha256(admin.encode()).hexdigest()}"\n'
            f'[integrations]\ntoken_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n'
            '[[upstreams]]\nname = "none"\nurl = "http://127.0.0.1:9"\ndialect = "openai"\nmodels = ["atlas-3"]\n'
        )
    gw = subprocess.Popen([a.bin, "serve", "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(internal)
        c = http.client.HTTPConnection("127.0.0.1", internal)
        c.request("PUT", "/admin/accounts/acct_bad/override", body='{"verdict":"block","reason":"bench"}',
                  headers={"Authorization": f"Bearer {admin}"})
        assert c.getresponse().status == 200
        t = {"X-Distillguard-Token": token}
        rows = [
            ("/healthz (floor)", "/healthz", {}),
            ("account by header, allowed", "/v1/auth", dict(t, **{"X-Account-Id": "acct_ok"})),
            ("distillguard key, allowed", "/v1/auth", dict(t, Authorization=f"Bearer {key}")),
            ("account by header, blocked (403)", "/v1/auth", dict(t, **{"X-Account-Id": "acct_bad"})),
        ]
        print(f"| case | status | p50 µs | p99 µs | p99.9 µs |  ({a.n} sequential requests each)")
        print("|---|---|---|---|---|")
        for name, path, h in rows:
            st, p50, p99, p999 = measure(internal, path, h, a.n)
            print(f"| {name} | {st} | {p50:.0f} | {p99:.0f} | {p999:.0f} |")
    finally:
        gw.terminate()
        gw.wait()


if __name__ == "__main__":
    main()
