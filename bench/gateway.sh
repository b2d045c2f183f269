#!/usr/bin/env bash
# Gateway latency benchmark (issue 5).
#
# Added latency of the distillguard gateway over calling upstream-mock
# directly, p50 and p99, at fixed request rates (oha with latency
# correction, so that a slow server cannot hide its queueing), detection
# and campaign linking on; the LiteLLM proxy (PyPI) against the same mock
# in the same run, as the reference point; the gateway's memory under load.
#
#   bench/gateway.sh                  # rates 50 (LiteLLM keeps up), 1000 and 5000 req/s, 20 s each
#   RATES="1000" DURATION=10 bench/gateway.sh
#   STREAM=1 RATES=1000 LITELLM=0 bench/gateway.sh   # streamed (SSE) answers
#   API=responses RATES=1000 LITELLM=0 bench/gateway.sh  # the OpenAI Responses API (/v1/responses)
#   CLUSTER=redis://127.0.0.1:6379 RATES=1000 LITELLM=0 bench/gateway.sh  # limits shared in Redis
#
# Installs its tools on first use: oha (crates.io) into target/tools, and
# LiteLLM (PyPI) into target/tmp/litellm-venv. Writes raw oha JSON and a
# summary table under target/bench-gateway/.
set -euo pipefail
cd "$(dirname "$0")/.."
RATES="${RATES:-50 1000 5000}"
DURATION="${DURATION:-20}"
CONNS="${CONNS:-64}"
LITELLM="${LITELLM:-1}"
# Direct and gateway runs alternate this many times per rate (the median and
# range of the added latency are reported: two cores shared by the load
# generator, the mock and the gateway make single runs noisy).
REPEAT="${REPEAT:-3}"
STREAM="${STREAM:-0}"
API="${API:-chat}"
case "$API" in
  chat) API_PATH=/v1/chat/completions ;;
  responses) API_PATH=/v1/responses ;;
  *) echo "API must be chat or responses" >&2; exit 2 ;;
esac
OUT=target/bench-gateway
mkdir -p "$OUT"
OHA=target/tools/bin/oha
if [ ! -x "$OHA" ]; then
  cargo install --locked --root target/tools oha@1.16.0
fi
VENV=target/tmp/litellm-venv
if [ "$LITELLM" = 1 ] && [ ! -x "$VENV/bin/litellm" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'litellm[proxy]==1.106.2'
fi
cargo build --release -q -p distillguard
BIN=target/release/distillguard

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  return 1
}

# Request bodies: real prompts from ShareGPT (the full file beside the
# checkout when it is there, else the in-repo sample), one chat request per
# line, so that detection sees varied traffic.
SRC=../shared/data/sharegpt-dev.jsonl.gz
[ -f "$SRC" ] || SRC=crates/simulator/data/sharegpt-sample.jsonl.gz
python3 - "$OUT/bodies.jsonl" "$SRC" "$STREAM" "$API" <<'PY'
import gzip, json, sys
out = open(sys.argv[1], "w")
stream = sys.argv[3] == "1"
responses = sys.argv[4] == "responses"
n = 0
for line in gzip.open(sys.argv[2], "rt"):
    conv = json.loads(line)
    for t in conv["turns"]:
        if t["role"] == "user" and 20 < len(t["content"]) < 2000:
            if responses:
                body = {"model": "atlas-3", "max_output_tokens": 64, "input": t["content"]}
            else:
                body = {"model": "atlas-3", "max_tokens": 64,
                        "messages": [{"role": "user", "content": t["content"]}]}
            if stream:
                body["stream"] = True
            out.write(json.dumps(body) + "\n")
            n += 1
            break
    if n >= 2000:
        break
print(f"{n} request bodies", file=sys.stderr)
PY

$BIN upstream-mock --listen 127.0.0.1:18081 >/dev/null &
pids+=($!)
rm -f "$OUT/keys.db"
KEY=$($BIN keys create --account bench --tier bench --db "$OUT/keys.db" 2>/dev/null)
ADMIN=$($BIN keys admin-token 2>"$OUT/admin.txt")
HASH=$(grep token_sha256 "$OUT/admin.txt" | cut -d'"' -f2)
cat > "$OUT/gateway.toml" <<TOML
listen = "127.0.0.1:18080"
keys_db = "$OUT/keys.db"

[admin]
token_sha256 = "$HASH"

[limits.tiers.bench]
rpm = 1000000000
tpm = 1000000000000

[[upstreams]]
name = "mock"
url = "http://127.0.0.1:18081"
dialect = "openai"
models = ["atlas-3"]
TOML
if [ -n "${CLUSTER:-}" ]; then
  printf '\n[cluster]\nredis_url = "%s"\n' "$CLUSTER" >> "$OUT/gateway.toml"
fi
# Access lines off (warn): the figures are the proxy's own cost.
$BIN serve --config "$OUT/gateway.toml" --log-level warn >/dev/null &
GW=$!
pids+=($GW)
wait_port 18081
wait_port 18080
# One account sends everything: it is allowlisted so that the detector,
# which still scores every request, does not block the benchmark itself.
curl -sf -X PUT -H "Authorization: Bearer $ADMIN" -d '{"reason":"benchmark"}' \
  http://127.0.0.1:18080/admin/allowlist/bench >/dev/null

if [ "$LITELLM" = 1 ]; then
  cat > "$OUT/litellm.yaml" <<YAML
model_list:
  - model_name: atlas-3
    litellm_params:
      model: openai/atlas-3
      api_base: http://127.0.0.1:18081/v1
      api_key: none
YAML
  # LiteLLM authenticates with a master key, as the gateway does with its keys.
  LITELLM_KEY="sk-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  LITELLM_MASTER_KEY="$LITELLM_KEY" "$VENV/bin/litellm" --config "$OUT/litellm.yaml" \
    --host 127.0.0.1 --port 18082 >"$OUT/litellm.log" 2>&1 &
  pids+=($!)
  wait_port 18082
  "$OHA" --no-tui -n 200 -c 8 -m POST -T application/json -H "Authorization: Bearer $LITELLM_KEY" \
    -Z "$OUT/bodies.jsonl" http://127.0.0.1:18082/v1/chat/completions >/dev/null
fi

run() { # name url rate [key]
  "$OHA" --no-tui --output-format json -z "${DURATION}s" -q "$3" -c "$CONNS" --latency-correction \
    -m POST -T application/json -H "Authorization: Bearer ${4:-$KEY}" -Z "$OUT/bodies.jsonl" \
    "$2$API_PATH" >"$OUT/$1-$3.json"
}

rss() { awk '/VmRSS|VmHWM/ {printf "%s %d MiB  ", $1, $2/1024}' "/proc/$GW/status"; }

# Warm up every path once.
for t in "direct http://127.0.0.1:18081" "gateway http://127.0.0.1:18080"; do
  set -- $t
  "$OHA" --no-tui -n 2000 -c 8 -m POST -T application/json -H "Authorization: Bearer $KEY" \
    -Z "$OUT/bodies.jsonl" "$2$API_PATH" >/dev/null
done
echo "gateway memory after warm-up: $(rss)" | tee "$OUT/memory.txt"
CPU0=$(awk '{print $14+$15}' "/proc/$GW/stat")
for rate in $RATES; do
  for i in $(seq 1 "$REPEAT"); do
    run "direct-$i" http://127.0.0.1:18081 "$rate"
    run "gateway-$i" http://127.0.0.1:18080 "$rate"
  done
  echo "gateway memory after ${rate} req/s: $(rss)" | tee -a "$OUT/memory.txt"
  if [ "$LITELLM" = 1 ]; then run litellm http://127.0.0.1:18082 "$rate" "$LITELLM_KEY"; fi
done
CPU1=$(awk '{print $14+$15}' "/proc/$GW/stat")
curl -s http://127.0.0.1:18080/metrics | grep -E '^distillguard_(detector_(enqueued|dropped|processed)_total|answers_total)' | tee "$OUT/detector.txt"
SERVED=$(awk '/^distillguard_detector_enqueued_total/ {print $2}' "$OUT/detector.txt")
echo "gateway CPU: $(( (CPU1 - CPU0) * 10 )) ms for the measured runs, $(awk -v c=$((CPU1 - CPU0)) -v n="$SERVED" 'BEGIN {printf "%.0f", c * 10000 / n}') µs per request (all requests served)" | tee -a "$OUT/memory.txt"

python3 - "$OUT" "$REPEAT" $RATES <<'PY'
import json, sys, os, statistics
out, repeat, rates = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def load(name, rate):
    p = f"{out}/{name}-{rate}.json"
    if not os.path.exists(p):
        return None
    j = json.load(open(p))
    lp = j["latencyPercentiles"]
    codes = j.get("statusCodeDistribution", {})
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    total = sum(codes.values()) + sum(j.get("errorDistribution", {}).values())
    return {"rps": j["summary"]["requestsPerSec"], "p50": lp["p50"] * 1e3, "p99": lp["p99"] * 1e3,
            "ok": ok, "total": total}
lines = ["| rate (req/s) | target | achieved req/s | ok / sent | p50 ms | p99 ms | added p50 ms | added p99 ms |",
         "|---|---|---|---|---|---|---|---|"]
for r in rates:
    adds50, adds99 = [], []
    for i in range(1, repeat + 1):
        d, g = load(f"direct-{i}", r), load(f"gateway-{i}", r)
        lines.append(f"| {r} | direct (run {i}) | {d['rps']:.0f} | {d['ok']} / {d['total']} | {d['p50']:.3f} | {d['p99']:.3f} | – | – |")
        a50, a99 = g["p50"] - d["p50"], g["p99"] - d["p99"]
        adds50.append(a50); adds99.append(a99)
        lines.append(f"| {r} | gateway (run {i}) | {g['rps']:.0f} | {g['ok']} / {g['total']} | {g['p50']:.3f} | {g['p99']:.3f} | {a50:+.3f} | {a99:+.3f} |")
    lines.append(f"| {r} | **gateway, median of {repeat}** | | | | | **{statistics.median(adds50):+.3f}** ({min(adds50):+.3f} to {max(adds50):+.3f}) | **{statistics.median(adds99):+.3f}** ({min(adds99):+.3f} to {max(adds99):+.3f}) |")
    x = load("litellm", r)
    if x is not None:
        d = load("direct-1", r)
        lines.append(f"| {r} | LiteLLM proxy | {x['rps']:.0f} | {x['ok']} / {x['total']} | {x['p50']:.3f} | {x['p99']:.3f} | {x['p50'] - d['p50']:+.3f} | {x['p99'] - d['p99']:+.3f} |")
table = "\n".join(lines)
open(f"{out}/summary.md", "w").write(table + "\n")
print(table)
PY
