"""The official OpenAI SDK through another gateway (nginx with auth_request,
Caddy with forward_auth), which asks distillguard's forward-auth endpoint
before each request.

Run by crates/cli/tests/cli/ with PROXY (the gateway's URL) and three keys:
ALLOWED (served), BLOCKED (an operator blocked its account: 403),
THROTTLED (throttled to 2 a minute: the third request gets 429 with
Retry-After). Prints "ok".
"""
import os

import openai

base = os.environ["PROXY"] + "/v1"


def client(key):
    return openai.OpenAI(base_url=base, api_key=key, max_retries=0)


def ask(c):
    return c.chat.completions.create(
        model="atlas-3", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )


r = ask(client(os.environ["ALLOWED"]))
assert r.choices[0].message.content, r

try:
    ask(client(os.environ["BLOCKED"]))
    raise SystemExit("a blocked account was served")
except openai.PermissionDeniedError as e:
    assert e.status_code == 403
    assert "blocked" in str(e), e
    assert e.response.headers.get("x-distillguard-verdict") == "block", e.response.headers

slow = client(os.environ["THROTTLED"])
ask(slow)
ask(slow)
try:
    ask(slow)
    raise SystemExit("a throttled account was served a third time within the minute")
except openai.RateLimitError as e:
    assert e.status_code == 429
    assert int(e.response.headers["retry-after"]) >= 1, e.response.headers

print("ok")
