#!/usr/bin/env bash
# Console speed on the default week (1.03M events, 27k accounts) analysed
# with --timeline --all: every account in an 80 MB report. Needs chromium
# and the console venv (.ci/run makes both).
set -euo pipefail
cd "$(dirname "$0")/.."
dg=${DG:-target/release/distillguard}
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
/usr/bin/time -f "analyze: %e s, %M KiB max RSS" "$dg" analyze --scenario default --timeline --all \
  --format json --out "$tmp/report.json" -q >/dev/null
ls -l "$tmp/report.json" | awk '{print "report bytes:", $5}'
"$dg" console "$tmp/report.json" --listen 127.0.0.1:0 >"$tmp/url" &
pid=$!
started=$(date +%s.%N)
until [ -s "$tmp/url" ]; do sleep 0.05; done
echo "console ready in $(python3 -c "print(round($(date +%s.%N) - $started, 2))") s (reads and indexes the report)"
url=$(awk '{print $2}' "$tmp/url")
camp=$(curl -s "${url}api/campaigns?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["campaign_id"])')
acct=$(curl -s "${url}api/accounts?limit=1&verdict=block" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["account_id"])')
URL=$url CAMPAIGN=$camp ACCOUNT=$acct target/tmp/console-venv/bin/python bench/console.py
grep VmHWM "/proc/$pid/status" | awk '{print "console max RSS:", $2, $3}'
kill -INT $pid; wait $pid || true
