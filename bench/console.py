"""Console speed on a large report: time to first paint and to a drawn page
(headless chromium via Playwright), and each API call's latency.

  bench/console.sh           # analyzes the default week with --timeline --all, then runs this

Environment: URL (the console), CAMPAIGN, ACCOUNT; prints one JSON object.
"""
import json
import os
import statistics
import time
import urllib.request

from playwright.sync_api import sync_playwright

url = os.environ["URL"]


def api_ms(path, n=20):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        with urllib.request.urlopen(url + "api/" + path) as r:
            r.read()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 2)


out = {"api_median_ms": {}}
for p in ["overview", "accounts?limit=50", "accounts?limit=50&q=10.", "accounts?verdict=block&sort=flagged_at",
          "campaigns?limit=50", "campaigns/" + os.environ["CAMPAIGN"], "accounts/" + os.environ["ACCOUNT"],
          "search?q=pm_"]:
    out["api_median_ms"][p] = api_ms(p)

with sync_playwright() as pw:
    b = pw.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                           args=["--no-sandbox", "--disable-gpu"])
    for view, frag in [("overview", ""), ("campaign", "campaign/" + os.environ["CAMPAIGN"]),
                       ("account", "account/" + os.environ["ACCOUNT"]), ("accounts", "accounts")]:
        runs = []
        for _ in range(5):
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            t = time.perf_counter()
            page.goto(url + "#/" + frag)
            page.wait_for_selector(f'body[data-ready="{view}"]', timeout=60000)
            drawn = (time.perf_counter() - t) * 1000
            fcp = page.evaluate("(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || null")
            runs.append((drawn, fcp))
            page.close()
        out[view] = {"drawn_ms_median": round(statistics.median(r[0] for r in runs), 1),
                     "first_contentful_paint_ms_median": round(statistics.median(r[1] for r in runs if r[1]), 1)}
    b.close()
print(json.dumps(out, indent=1))
