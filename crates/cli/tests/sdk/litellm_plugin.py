"""The LiteLLM plugin (integrations/litellm/distillguard_callback.py) with
the real LiteLLM library: calls through `litellm.completion` to
upstream-mock are logged by the plugin's callback to distillguard's ingest
endpoint; then the plugin's pre-call hook, given LiteLLM's own
`UserAPIKeyAuth` as the proxy would pass it, rejects the harvesting
accounts with 403 and lets an honest one through.

Env: MOCK (upstream-mock's /v1 URL), DISTILLGUARD_URL, DISTILLGUARD_TOKEN,
PLUGIN_DIR. Prints "ok".
"""
import asyncio
import hashlib
import os
import sys
import time

sys.path.insert(0, os.environ["PLUGIN_DIR"])
import litellm  # noqa: E402
from fastapi import HTTPException  # noqa: E402
from litellm.proxy._types import UserAPIKeyAuth  # noqa: E402

import distillguard_callback  # noqa: E402

plugin = distillguard_callback.proxy_handler_instance
litellm.callbacks = [plugin]
mock = os.environ["MOCK"]
SYSTEM = "You are a meticulous tutor. Always reason step by step and show every intermediate step."
HONEST = ["What's a good name for a bakery?", "How do I center a div in CSS?", "Write a haiku about rain."]


def call(user, messages, **params):
    litellm.completion(
        model="openai/atlas-3",
        api_base=mock,
        api_key="sk-upstream",
        messages=messages,
        metadata={
            "user_api_key_hash": hashlib.sha256(user.encode()).hexdigest(),
            "user_api_key_user_id": user,
        },
        **params,
    )


total = 0
for i in range(20):
    for a in range(6):
        q = f"Problem {i}: a train covers {37 * i + a} km in {13 + a} minutes. Average speed in km/h? Explain step by step."
        call(f"harvest-{a}", [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}],
             temperature=0, max_tokens=512)
        total += 1
for q in HONEST:
    call("honest-1", [{"role": "user", "content": q}])
    total += 1

deadline = time.time() + 30
while plugin.sent + plugin.dropped < total and time.time() < deadline:
    time.sleep(0.1)
assert plugin.sent == total, (plugin.sent, plugin.dropped, total)


async def verdict(user):
    try:
        await plugin.async_pre_call_hook(UserAPIKeyAuth(user_id=user), None, {"model": "atlas-3"}, "completion")
        return 200
    except HTTPException as e:
        return e.status_code


async def main():
    deadline = time.time() + 30
    while time.time() < deadline:
        codes = [await verdict(f"harvest-{a}") for a in range(6)]
        if all(c == 403 for c in codes):
            break
        await asyncio.sleep(0.2)
    assert codes == [403] * 6, codes
    assert await verdict("honest-1") == 200
    # distillguard away: fail-open by default.
    plugin.url = "http://127.0.0.1:9"
    assert await verdict("harvest-0") == 200


asyncio.run(main())
print("ok")
