"""The official OpenAI and Anthropic Python SDKs against the distillguard gateway.

Run by crates/cli/tests/cli/ with:
  GATEWAY     the gateway's URL (normal verdicts)
  BLOCKING    a gateway whose detector blocks every account at once
  FAULTY      a gateway whose upstream resets every answer after 256 bytes
  KEY         a valid key (tier2); FREE a valid free-tier key; REVOKED a revoked key
  BATCHKEY    a valid key of an account used for nothing else
Exits non-zero with a message on the first failed expectation.
"""
import os
import sys

import urllib.request

import anthropic
import openai
from prometheus_client.parser import text_string_to_metric_families

gw, blocking, faulty = os.environ["GATEWAY"], os.environ["BLOCKING"], os.environ["FAULTY"]
key, free, revoked = os.environ["KEY"], os.environ["FREE"], os.environ["REVOKED"]
batchkey = os.environ["BATCHKEY"]


def expect(cond, what):
    if not cond:
        print("FAILED:", what, file=sys.stderr)
        sys.exit(1)


def oa(url, k):
    return openai.OpenAI(base_url=url + "/v1", api_key=k, max_retries=0)


def an(url, k):
    return anthropic.Anthropic(base_url=url, api_key=k, max_retries=0)


msgs = [{"role": "user", "content": "Explain TCP in one paragraph."}]

# Chat, JSON and streaming, both APIs.
r = oa(gw, key).chat.completions.create(model="atlas-3", messages=msgs, max_tokens=20)
expect(isinstance(r.choices[0].message.content, str) and len(r.choices[0].message.content) > 5, "openai chat")
parts = [c.choices[0].delta.content or "" for c in oa(gw, key).chat.completions.create(model="atlas-3", messages=msgs, max_tokens=20, stream=True) if c.choices]
expect(len("".join(parts)) > 5, "openai streaming")
m = an(gw, key).messages.create(model="atlas-3", max_tokens=20, messages=msgs)
expect(any(b.type == "text" and b.text for b in m.content), "anthropic messages")
with an(gw, key).messages.stream(model="atlas-3", max_tokens=20, messages=msgs) as s:
    text = "".join(s.text_stream)
expect(len(text) > 5, "anthropic streaming")

# The Responses API, JSON and streaming.
r = oa(gw, key).responses.create(model="atlas-3", input="Explain TCP in one paragraph.", max_output_tokens=200)
expect(isinstance(r.output_text, str) and len(r.output_text) > 5, "openai responses")
events = list(oa(gw, key).responses.create(model="atlas-3", input="Explain TCP.", max_output_tokens=200, stream=True))
text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
expect(len(text) > 5, "openai responses streaming")
expect(events[-1].type in ("response.completed", "response.incomplete"), "responses stream ends with its final event")

# 401: the SDKs raise their authentication errors.
try:
    oa(gw, revoked).chat.completions.create(model="atlas-3", messages=msgs, max_tokens=5)
    expect(False, "openai 401 not raised")
except openai.AuthenticationError:
    pass
try:
    oa(gw, revoked).responses.create(model="atlas-3", input="hi", max_output_tokens=5)
    expect(False, "openai responses 401 not raised")
except openai.AuthenticationError:
    pass
try:
    an(gw, "dg_000000000000_00").messages.create(model="atlas-3", max_tokens=5, messages=msgs)
    expect(False, "anthropic 401 not raised")
except anthropic.AuthenticationError:
    pass

# 413: a body over the cap.
big = [{"role": "user", "content": "x" * 300_000}]
try:
    oa(gw, key).chat.completions.create(model="atlas-3", messages=big, max_tokens=5)
    expect(False, "openai 413 not raised")
except openai.APIStatusError as e:
    expect(e.status_code == 413, f"openai 413, got {e.status_code}")
try:
    an(gw, key).messages.create(model="atlas-3", max_tokens=5, messages=big)
    expect(False, "anthropic 413 not raised")
except anthropic.APIStatusError as e:
    expect(e.status_code == 413, f"anthropic 413, got {e.status_code}")

# Batches: OpenAI files and batches, Anthropic message batches, through the
# gateway (each request scored), and read back by their owner only.
import io
import json
lines = "".join(json.dumps({"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions",
                            "body": {"model": "atlas-3", "max_tokens": 20,
                                     "messages": [{"role": "user", "content": f"Explain topic {i}."}]}}) + "\n"
                for i in range(5))
f = oa(gw, key).files.create(file=("batch.jsonl", io.BytesIO(lines.encode())), purpose="batch")
expect(f.id.startswith("file-"), "openai batch file upload")
b = oa(gw, key).batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
expect(b.id.startswith("batch_"), "openai batch create")
b = oa(gw, key).batches.retrieve(b.id)
expect(b.status == "completed" and b.output_file_id, "openai batch retrieve")
out = [json.loads(l) for l in oa(gw, key).files.content(b.output_file_id).text.splitlines() if l.strip()]
expect(len(out) == 5 and out[0]["response"]["status_code"] == 200, "openai batch results")
try:
    oa(gw, free).batches.retrieve(b.id)
    expect(False, "another account read a batch back")
except openai.NotFoundError:
    pass
mreqs = [{"custom_id": f"m{i}", "params": {"model": "atlas-3", "max_tokens": 20,
                                          "messages": [{"role": "user", "content": f"Explain topic {i}."}]}}
         for i in range(5)]
mb = an(gw, key).messages.batches.create(requests=mreqs)
expect(mb.id.startswith("msgbatch_"), "anthropic batch create")
expect(mb.results_url.startswith(gw), f"results_url on the gateway: {mb.results_url}")
res = list(an(gw, key).messages.batches.results(mb.id))
expect(len(res) == 5 and res[0].result.type == "succeeded", "anthropic batch results")

# 429: the free tier's burst is 20 requests a minute.
try:
    for _ in range(40):
        oa(gw, free).chat.completions.create(model="atlas-3", messages=msgs, max_tokens=2)
    expect(False, "openai 429 not raised")
except openai.RateLimitError as e:
    expect(e.response.headers.get("retry-after") is not None, "retry-after header")
try:
    an(gw, free).messages.create(model="atlas-3", max_tokens=2, messages=msgs)
    expect(False, "anthropic 429 not raised")
except anthropic.RateLimitError:
    pass

# 403: a blocked account.
c = oa(blocking, key)
c.chat.completions.create(model="atlas-3", messages=msgs, max_tokens=5)
blocked = False
import time
for _ in range(100):
    try:
        an(blocking, key).messages.create(model="atlas-3", max_tokens=5, messages=msgs)
        time.sleep(0.02)
    except anthropic.PermissionDeniedError:
        blocked = True
        break
expect(blocked, "anthropic 403 not raised for a blocked account")
try:
    c.chat.completions.create(model="atlas-3", messages=msgs, max_tokens=5)
    expect(False, "openai 403 not raised")
except openai.PermissionDeniedError:
    pass
# A batch that puts its account over block is refused before the upstream
# (the blocking gateway blocks at the first scored request), and a blocked
# key cannot submit one.
try:
    oa(blocking, batchkey).files.create(file=("b.jsonl", io.BytesIO(lines.encode())), purpose="batch")
    expect(False, "a batch over block was not refused")
except openai.PermissionDeniedError as e:
    expect("batch refused" in str(e), f"the refusal names the batch: {e}")
try:
    an(blocking, key).messages.batches.create(requests=mreqs)
    expect(False, "a blocked key submitted a batch")
except anthropic.PermissionDeniedError:
    pass
# A model server that fails mid-stream: the gateway ends the stream with
# the API's error event, which the SDKs raise (never a hang: 10 s timeout).
try:
    for _ in oa(faulty, key).with_options(timeout=10).chat.completions.create(model="atlas-3", messages=msgs, max_tokens=60, stream=True):
        pass
    expect(False, "openai mid-stream error not raised")
except openai.APIError as e:
    expect("mid-answer" in str(e), f"openai mid-stream error message: {e}")
try:
    with an(faulty, key).with_options(timeout=10).messages.stream(model="atlas-3", max_tokens=60, messages=msgs) as s:
        "".join(s.text_stream)
    expect(False, "anthropic mid-stream error not raised")
except anthropic.APIError as e:
    expect("mid-answer" in str(e), f"anthropic mid-stream error message: {e}")
# /metrics parses with Prometheus' own parser, and counts what happened.
text = urllib.request.urlopen(gw + "/metrics").read().decode()
samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
def value(name, **labels):
    return sum(s.value for s in samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))
expect(value("distillguard_requests_total", api="openai", code="200") >= 2, "requests counted")
expect(value("distillguard_requests_total", code="429") >= 1, "429 counted")
expect(value("distillguard_rate_limited_total", limit="requests") >= 1, "rate limits counted")
expect(value("distillguard_answers_total", outcome="complete") >= 4, "answers counted")
expect(value("distillguard_tokens_total", kind="output") > 0, "tokens counted")
expect(value("distillguard_detector_up") == 1, "detector up")
expect(value("distillguard_request_duration_seconds_count") >= 4, "latency histogram")
print("ok")
