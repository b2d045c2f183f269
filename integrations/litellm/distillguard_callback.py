"""distillguard for the LiteLLM proxy, with no change to LiteLLM itself.

- Every call's `standard_logging_object` goes to distillguard's ingest
  endpoint (`POST /v1/events?format=litellm`), in batches, from a thread of
  its own: a call never waits for it. A full queue drops and counts.
- Before each call, a pre-call hook asks distillguard's forward-auth
  endpoint (`/v1/auth`) for the account's verdict and rejects a blocked
  account (403) or a throttled one over its rate (429 with Retry-After).
  distillguard unreachable: the call goes ahead (fail-open), unless
  DISTILLGUARD_FAIL_CLOSED=1.

Configure with environment variables:
  DISTILLGUARD_URL          distillguard's internal listener, e.g. http://127.0.0.1:9090
  DISTILLGUARD_TOKEN        the [integrations] token (not its hash)
  DISTILLGUARD_ACCOUNT      "key" (the key's user, else team, else key: the default)
                            or "end-user" (the `user` a client sends, first:
                            a proxy without virtual keys)
  DISTILLGUARD_FAIL_CLOSED  "1" to reject calls while distillguard is unreachable
  DISTILLGUARD_TIMEOUT_MS   the verdict question's time budget (default 250)
  DISTILLGUARD_EXPORT       also append every call's payload, one JSON a line, to
                            this file: a log `distillguard analyze --input-format
                            litellm` reads (it holds prompts and answers: keep it
                            where your logs with prompt text may live)

And in the proxy's config.yaml, with this file beside it:
  litellm_settings:
    callbacks: distillguard_callback.proxy_handler_instance
"""
import json
import os
import queue
import threading
import time
import urllib.request

import httpx
from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger


class Distillguard(CustomLogger):
    def __init__(self, url=None, token=None, account=None, fail_closed=None, timeout_ms=None, export=None):
        super().__init__()
        self.url = (url or os.environ.get("DISTILLGUARD_URL", "http://127.0.0.1:9090")).rstrip("/")
        self.token = token or os.environ.get("DISTILLGUARD_TOKEN", "")
        self.account = account or os.environ.get("DISTILLGUARD_ACCOUNT", "key")
        if self.account not in ("key", "end-user"):
            raise ValueError(f"DISTILLGUARD_ACCOUNT={self.account!r}: expected key or end-user")
        if fail_closed is None:
            fail_closed = os.environ.get("DISTILLGUARD_FAIL_CLOSED", "0") == "1"
        self.fail_closed = fail_closed
        self.timeout = (timeout_ms or int(os.environ.get("DISTILLGUARD_TIMEOUT_MS", "250"))) / 1000
        self.export = export or os.environ.get("DISTILLGUARD_EXPORT") or None
        self.queue = queue.Queue(maxsize=100_000)
        self.dropped = 0
        self.sent = 0
        self.client = httpx.AsyncClient(timeout=self.timeout)
        threading.Thread(target=self._send_loop, name="distillguard", daemon=True).start()

    # --- every call, to the ingest endpoint ---------------------------------

    def _enqueue(self, kwargs):
        payload = kwargs.get("standard_logging_object")
        if payload is None:
            return
        try:
            self.queue.put_nowait(json.dumps(payload, default=str))
        except queue.Full:
            self.dropped += 1

    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._enqueue(kwargs)

    def log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._enqueue(kwargs)

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._enqueue(kwargs)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._enqueue(kwargs)

    def _send_loop(self):
        path = f"{self.url}/v1/events?format=litellm&account={self.account}"
        while True:
            lines = [self.queue.get()]
            deadline = time.monotonic() + 0.2
            while len(lines) < 500 and time.monotonic() < deadline:
                try:
                    lines.append(self.queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            body = ("\n".join(lines) + "\n").encode()
            if self.export:
                # Written before the send: the file keeps every call even
                # while distillguard is away.
                with open(self.export, "ab") as f:
                    f.write(body)
            for attempt in range(3):
                try:
                    req = urllib.request.Request(
                        path,
                        data=body,
                        method="POST",
                        headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/x-ndjson"},
                    )
                    with urllib.request.urlopen(req, timeout=10) as r:
                        r.read()
                    self.sent += len(lines)
                    break
                except Exception:  # noqa: BLE001 - distillguard away: retry, then drop
                    time.sleep(0.5 * (attempt + 1))
            else:
                self.dropped += len(lines)

    # --- before every call, the verdict --------------------------------------

    def account_of(self, key, data):
        """The account as distillguard's LiteLLM importer names it."""
        if self.account == "end-user":
            end_user = data.get("user") or (data.get("metadata") or {}).get("user_api_key_end_user_id")
            if end_user:
                return str(end_user)
        if key.user_id:
            return key.user_id
        if key.team_id:
            return key.team_id
        hashed = key.api_key or key.token
        return f"key:{hashed[:16]}" if hashed else None

    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        account = self.account_of(user_api_key_dict, data)
        if account is None:
            return data
        try:
            r = await self.client.get(
                f"{self.url}/v1/auth",
                headers={"X-Distillguard-Token": self.token, "X-Account-Id": account},
            )
        except httpx.HTTPError as e:
            if self.fail_closed:
                raise HTTPException(status_code=503, detail=f"distillguard unreachable: {e}")
            return data
        if r.status_code == 403:
            raise HTTPException(status_code=403, detail=_message(r))
        if r.status_code == 429:
            raise HTTPException(
                status_code=429,
                detail=_message(r),
                headers={"Retry-After": r.headers.get("retry-after", "1")},
            )
        if r.status_code >= 500 and self.fail_closed:
            raise HTTPException(status_code=503, detail="distillguard could not answer")
        return data


def _message(r):
    try:
        body = r.json()
        return body.get("error", {}).get("message") or body.get("error") or r.text
    except ValueError:
        return r.text


proxy_handler_instance = Distillguard()
