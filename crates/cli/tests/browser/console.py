"""The console in a real browser (Debian's chromium, driven by Playwright).

Run by crates/cli/tests/console.rs with:
  MODE        "offline" or "live"
  URL         the console's address (ending in /)
  SHOTS       a folder for screenshots
offline:
  CAMPAIGN    a campaign id; NODES its graph's node count (from the API);
              WINDOWS its ten-minute windows (the console reads the log)
  ACCOUNT     an account with a timeline; ESCALATIONS its escalation count
  FLAGGED     flagged principals of the exfiltration report; PRINCIPAL one
              of them; ALERTS its alert count
live:
  TOKEN       the admin token
  ACCOUNT     the account to block and lift
  GATEWAY     the gateway's public URL; KEY a key of ACCOUNT
Prints "ok" when every check passed; exits 1 with the failed check.
"""
import json
import os
import sys
import urllib.error
import urllib.request
from urllib.parse import quote

from playwright.sync_api import sync_playwright

url = os.environ["URL"]
shots = os.environ["SHOTS"]
mode = os.environ["MODE"]


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def ready(page, view):
    page.wait_for_selector(f'body[data-ready="{view}"]', timeout=20000)


def chat_status():
    """The status of one chat request of ACCOUNT's key through the gateway."""
    body = json.dumps({"model": "atlas-3", "max_tokens": 16,
                       "messages": [{"role": "user", "content": "hello"}]}).encode()
    req = urllib.request.Request(os.environ["GATEWAY"] + "/v1/chat/completions", data=body,
                                 headers={"content-type": "application/json",
                                          "authorization": "Bearer " + os.environ["KEY"]})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def unnamed_controls(page):
    """Controls a screen reader could not name."""
    return page.evaluate("""() => [...document.querySelectorAll('input, select, button, a[href]')]
        .filter(e => !e.closest('[hidden]') && e.offsetParent !== null)
        .filter(e => !((e.getAttribute('aria-label') || '').trim()
            || (e.labels && e.labels.length)
            || (e.textContent || '').trim()
            || (e.getAttribute('title') || '').trim()))
        .map(e => e.outerHTML.slice(0, 120))""")


def offline(page):
    page.goto(url)
    ready(page, "overview")
    bars = page.locator("#c-hist svg rect").count()
    check(bars > 0, f"the risk histogram has bars ({bars})")
    check(page.locator("#c-hist svg [data-threshold]").count() == 3, "the three thresholds are drawn")
    check(page.locator("#c-time svg rect").count() > 0, "escalations over time are drawn")
    check(page.locator("#c-reasons svg rect").count() > 0, "top reasons are drawn")
    check(page.locator("#c-camps svg rect").count() > 0, "campaigns are drawn")
    check(unnamed_controls(page) == [], f"every control has a name: {unnamed_controls(page)}")
    # Keyboard: the first Tab reaches the skip link, and Enter on it moves
    # focus to the content; Tab then walks the navigation in order.
    page.keyboard.press("Tab")
    check(page.evaluate("document.activeElement.className") == "skip", "Tab reaches the skip link first")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    check(page.evaluate("document.activeElement.textContent") == "Overview", "then the navigation")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    ready(page, "campaigns")
    check("#/campaigns" in page.url, f"Enter on a link navigates ({page.url})")
    page.goto(url + "#/")
    ready(page, "overview")
    page.screenshot(path=f"{shots}/overview.png", full_page=True)

    page.goto(url + "#/campaign/" + os.environ["CAMPAIGN"])
    ready(page, "campaign")
    nodes = page.locator("#campaign-graph [data-node]").count()
    check(nodes == int(os.environ["NODES"]), f"the graph has {os.environ['NODES']} nodes, not {nodes}")
    check(page.locator("#campaign-graph line").count() > 0, "the graph has links")
    bars = page.locator("#sync-timeline [data-window]").count()
    check(bars == int(os.environ["WINDOWS"]), f"the synchrony timeline has {os.environ['WINDOWS']} windows, not {bars}")
    check(page.locator("#c-tokens svg rect").count() > 0, "tokens over time are drawn")
    page.screenshot(path=f"{shots}/campaign.png", full_page=True, clip={"x": 0, "y": 0, "width": 1400, "height": 2000})

    page.goto(url + "#/account/" + os.environ["ACCOUNT"])
    ready(page, "account")
    check(page.locator("#risk-timeline path").count() == 1, "the risk timeline is drawn")
    rows = page.locator(".escalation-row").count()
    check(rows == int(os.environ["ESCALATIONS"]), f"{os.environ['ESCALATIONS']} escalations, not {rows}")
    check(page.locator("#risk-timeline .escalation").count() == rows, "each escalation is marked")
    page.screenshot(path=f"{shots}/account.png", full_page=True)

    # Filters are in the URL: a shared link opens the same list.
    page.goto(url + "#/accounts?verdict=block&limit=5")
    ready(page, "accounts")
    verdicts = page.locator("tbody .v").all_text_contents()
    check(verdicts and all(v == "block" for v in verdicts), f"the verdict filter holds ({verdicts})")
    check(page.locator("select[name=verdict]").input_value() == "block", "the filter shows in the form")
    check(unnamed_controls(page) == [], f"every list control has a name: {unnamed_controls(page)}")

    # Exfiltration beside the campaigns: the overview counts it, the list
    # holds the flagged principals, a principal's page its alerts.
    page.goto(url + "#/")
    ready(page, "overview")
    check(page.locator("#nav-exfil").is_visible(), "the Exfiltration link shows")
    check(page.locator("#c-exfil svg rect").count() > 0, "the signals of flagged principals are drawn")
    page.goto(url + "#/exfil?flagged=yes&limit=500")
    ready(page, "exfil")
    rows = page.locator("tbody tr").count()
    check(rows == int(os.environ["FLAGGED"]), f"{os.environ['FLAGGED']} flagged principals, not {rows}")
    check(unnamed_controls(page) == [], f"every exfiltration control has a name: {unnamed_controls(page)}")
    page.screenshot(path=f"{shots}/exfil.png", full_page=True)
    page.locator(f'a[href="#/principal/{quote(os.environ["PRINCIPAL"], safe="")}"]').first.click()
    ready(page, "principal")
    alerts = page.locator('table[aria-label="alerts"] tbody tr').count()
    check(alerts == int(os.environ["ALERTS"]), f"{os.environ['ALERTS']} alerts, not {alerts}")
    page.screenshot(path=f"{shots}/principal.png", full_page=True)


def act(page, account, decision, reason):
    """Takes a decision on an account's page, as an analyst does."""
    page.goto(url + "#/account/" + account)
    ready(page, "account")
    page.select_option("select[name=decision]", decision)
    page.fill("input[name=reason]", reason)
    page.click("#act-submit")
    page.wait_for_selector("#act-result .notice")


def live(page):
    page.goto(url)
    page.wait_for_selector("#token")
    page.fill("#token", "not the token")
    page.click("#login button[type=submit]")
    page.wait_for_selector("#login-error .error")
    page.fill("#token", os.environ["TOKEN"])
    page.click("#login button[type=submit]")
    ready(page, "overview")
    check(page.locator("#health").inner_text().lower().find("detector") >= 0, "detector health shows")
    check(chat_status() == 200, "the account is served before")
    account = os.environ["ACCOUNT"]
    act(page, account, "block", "console test: harvesting")
    status = chat_status()
    check(status == 403, f"blocked in the UI: the next request is refused ({status})")
    page.goto(url + "#/audit")
    ready(page, "audit")
    audit = page.locator(".audit-row").all_inner_texts()
    check(any("override.set" in r and account in r and "console test" in r for r in audit),
          f"the block is in the audit log ({audit[:3]})")
    page.screenshot(path=f"{shots}/audit.png", full_page=False)
    act(page, account, "clear", "console test: lifted")
    status = chat_status()
    check(status == 200, f"lifted in the UI: served again ({status})")
    # An action without the page's CSRF token is refused.
    r = page.evaluate("""async () => (await fetch('api/actions', {method: 'POST',
        headers: {'content-type': 'application/json'}, credentials: 'same-origin',
        body: JSON.stringify({target: 'account', id: 'x', decision: 'block', reason: 'r'})})).status""")
    check(r == 403, f"an action without the CSRF token is refused ({r})")


with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                args=["--no-sandbox", "--disable-gpu"])
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    if mode == "offline":
        offline(page)
    else:
        live(page)
    # A refused action answers 4xx, which the browser logs as an error;
    # anything else is a defect of the page.
    errors = [e for e in errors if "status of 4" not in e]
    check(errors == [], f"no script errors: {errors}")
    browser.close()
print("ok")
