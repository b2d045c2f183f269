#!/usr/bin/env python3
"""Hostile clients against the gateway (issue 13), measured.

    cargo build --release && python3 bench/hardening.py [--half-sent 10000]

Starts `distillguard upstream-mock` and `distillguard serve` (auth = "none",
the default deadlines and limits) and runs, one after the other:

1. slowloris: N connections that send half a request head, reopened as
   soon as the gateway cuts them, for --seconds; meanwhile a normal client
   sends a request every 0.25 s. Reports how many normal requests were
   answered and their latency, and how many half-sent connections the
   gateway cut.
2. stalled bodies: 500 uploads that declare 1 MiB and send all but the
   last bytes, then stall. Reports their statuses and the gateway's RSS
   before, while stalled, and after they are gone.
3. address flood: requests with random X-Forwarded-For values (some 16 KB
   long). Reports RSS before and after.
4. fresh addresses through a trusted proxy (each one a new account, as
   IPv6 clients or a botnet would be): --fresh requests from distinct
   addresses, against a gateway that trusts the proxy twice: with the
   default forgetting (a day idle, 1M accounts) and with `max_accounts =
   10000`. Reports accounts tracked and RSS for each.

`--only fresh` runs the fourth alone.

Prints one JSON object (the numbers in BENCHMARKS.md come from it).
"""
import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from benchutil import free_port

CHAT = json.dumps({"model": "atlas-3", "max_tokens": 5,
                   "messages": [{"role": "user", "content": "hi"}]})


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def start(args):
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    return p, line.strip().rsplit(" ", 1)[-1].removeprefix("http://")


async def request(addr, body=CHAT, extra=""):
    host, port = addr.split(":")
    r, w = await asyncio.open_connection(host, int(port))
    w.write((f"POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\n{extra}"
             f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
             f"Connection: close\r\n\r\n{body}").encode())
    await w.drain()
    data = await r.read()
    w.close()
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1") else 0


async def slowloris(addr, n, seconds):
    host, port = addr.split(":")
    stop = time.monotonic() + seconds
    cut = 0
    opened = 0

    async def hold():
        nonlocal cut, opened
        while time.monotonic() < stop:
            try:
                r, w = await asyncio.open_connection(host, int(port))
            except OSError:
                await asyncio.sleep(0.1)
                continue
            opened += 1
            w.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            try:
                await w.drain()
                left = stop - time.monotonic()
                await asyncio.wait_for(r.read(), timeout=max(left, 0.01))
                cut += 1
            except (asyncio.TimeoutError, OSError):
                pass
            w.close()

    holders = [asyncio.create_task(hold()) for _ in range(n)]
    await asyncio.sleep(3)  # let them fill the connections
    lat, ok, tried = [], 0, 0
    while time.monotonic() < stop - 1:
        tried += 1
        t = time.monotonic()
        try:
            st = await asyncio.wait_for(request(addr), timeout=30)
        except (asyncio.TimeoutError, OSError):
            st = 0
        if st == 200:
            ok += 1
            lat.append(time.monotonic() - t)
        await asyncio.sleep(0.25)
    await asyncio.gather(*holders, return_exceptions=True)
    lat.sort()
    return {
        "half_sent_connections": n,
        "half_sent_opened": opened,
        "half_sent_cut_by_gateway": cut,
        "normal_requests": tried,
        "normal_answered_200": ok,
        "latency_p50_s": round(statistics.median(lat), 3) if lat else None,
        "latency_max_s": round(lat[-1], 3) if lat else None,
    }


async def stalled_bodies(addr, pid, n=500, size=1 << 20):
    host, port = addr.split(":")
    before = rss_mb(pid)
    conns, statuses = [], {}
    payload = b"x" * (size - 16)
    for _ in range(n):
        r, w = await asyncio.open_connection(host, int(port))
        w.write((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {size}\r\n\r\n").encode())
        w.write(payload)
        conns.append((r, w))
    await asyncio.gather(*(w.drain() for _, w in conns), return_exceptions=True)
    await asyncio.sleep(3)
    stalled = rss_mb(pid)

    async def status(r):
        try:
            data = await asyncio.wait_for(r.read(), timeout=120)
            return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1") else 0
        except (asyncio.TimeoutError, OSError, ValueError):
            return 0

    for s in await asyncio.gather(*(status(r) for r, _ in conns)):
        statuses[str(s)] = statuses.get(str(s), 0) + 1
    for _, w in conns:
        w.close()
    await asyncio.sleep(5)
    return {"uploads": n, "declared_bytes": size, "statuses": statuses,
            "rss_before_mb": round(before, 1), "rss_stalled_mb": round(stalled, 1),
            "rss_after_mb": round(rss_mb(pid), 1)}


async def address_flood(addr, pid, n, long_n):
    before = rss_mb(pid)
    sem = asyncio.Semaphore(64)
    codes = {}

    async def one(xff):
        async with sem:
            try:
                st = await request(addr, extra=f"X-Forwarded-For: {xff}\r\n")
            except OSError:
                st = 0
            codes[str(st)] = codes.get(str(st), 0) + 1

    rnd = random.Random(7)
    xffs = [".".join(str(rnd.randrange(256)) for _ in range(4)) for _ in range(n)]
    xffs += ["9" * 16_000 + str(i) for i in range(long_n)]
    t = time.monotonic()
    await asyncio.gather(*(one(x) for x in xffs))
    return {"requests": n + long_n, "long_values": long_n, "statuses": codes,
            "seconds": round(time.monotonic() - t, 1),
            "rss_before_mb": round(before, 1), "rss_after_mb": round(rss_mb(pid), 1)}


def metric(internal, name):
    import urllib.request
    page = urllib.request.urlopen(f"http://{internal}/metrics").read().decode()
    for line in page.splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    return None


async def fresh_addresses(bin, up, n, detect):
    tmp = tempfile.mkdtemp()
    cfg = os.path.join(tmp, "gw.toml")
    internal = f"127.0.0.1:{free_port()}"
    with open(cfg, "w") as f:
        f.write(f'listen = "127.0.0.1:0"\nauth = "none"\ninternal_listen = "{internal}"\n'
                f'trusted_proxies = ["127.0.0.1/32"]\n[detect]\n{detect}\n'
                f'[[upstreams]]\nname = "m"\nurl = "http://{up}"\ndialect = "openai"\nmodels = ["atlas-3"]\n')
    gw, addr = start([bin, "serve", "--config", cfg, "--log-level", "warn"])
    try:
        before = rss_mb(gw.pid)
        sem = asyncio.Semaphore(64)
        codes = {}

        async def one(i):
            async with sem:
                xff = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
                try:
                    st = await request(addr, extra=f"X-Forwarded-For: {xff}\r\n")
                except OSError:
                    st = 0
                codes[str(st)] = codes.get(str(st), 0) + 1

        t = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(n)))
        secs = time.monotonic() - t
        await asyncio.sleep(3)
        return {"detect": detect, "requests": n, "statuses": codes, "seconds": round(secs, 1),
                "rss_before_mb": round(before, 1), "rss_after_mb": round(rss_mb(gw.pid), 1),
                "accounts_tracked": metric(internal, "distillguard_detector_accounts"),
                "accounts_forgotten": metric(internal, "distillguard_detector_accounts_forgotten_total")}
    finally:
        gw.terminate()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/distillguard")
    ap.add_argument("--half-sent", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--flood", type=int, default=50_000)
    ap.add_argument("--fresh", type=int, default=100_000)
    ap.add_argument("--only", choices=["fresh"])
    args = ap.parse_args()
    mock, up = start([args.bin, "upstream-mock", "--listen", "127.0.0.1:0"])
    if args.only == "fresh":
        try:
            out = {"fresh_addresses": [
                await fresh_addresses(args.bin, up, args.fresh, ""),
                await fresh_addresses(args.bin, up, args.fresh, "max_accounts = 10000"),
            ]}
            print(json.dumps(out, indent=1))
        finally:
            mock.terminate()
        return
    tmp = tempfile.mkdtemp()
    cfg = os.path.join(tmp, "gw.toml")
    with open(cfg, "w") as f:
        f.write(f'listen = "127.0.0.1:0"\nauth = "none"\n'
                f'[[upstreams]]\nname = "m"\nurl = "http://{up}"\ndialect = "openai"\nmodels = ["atlas-3"]\n')
    gw, addr = start([args.bin, "serve", "--config", cfg, "--log-level", "warn"])
    try:
        out = {"idle_rss_mb": round(rss_mb(gw.pid), 1)}
        out["slowloris"] = await slowloris(addr, args.half_sent, args.seconds)
        out["stalled_bodies"] = await stalled_bodies(addr, gw.pid)
        out["address_flood"] = await address_flood(addr, gw.pid, args.flood, 2_000)
        out["fresh_addresses"] = [
            await fresh_addresses(args.bin, up, args.fresh, ""),
            await fresh_addresses(args.bin, up, args.fresh, "max_accounts = 10000"),
        ]
        print(json.dumps(out, indent=1))
    finally:
        gw.terminate()
        mock.terminate()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
