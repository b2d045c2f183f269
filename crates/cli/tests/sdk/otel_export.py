"""GenAI spans exported by the official OpenTelemetry Python SDK (OTLP/HTTP,
protobuf) to the gateway's trace receiver.

Run by crates/cli/tests/cli/ with:
  ENDPOINT   the gateway's /v1/traces URL (internal listener)
  TOKEN      the integrations token
  ACCOUNT    the user.id of the spans
  N          GenAI spans to export (plus one HTTP span and one without a user)
Prints "ok N" once the exporter reports success.
"""
import json
import os
import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

exporter = OTLPSpanExporter(endpoint=os.environ["ENDPOINT"],
                            headers={"Authorization": "Bearer " + os.environ["TOKEN"]})
provider = TracerProvider(resource=Resource.create({"service.name": "tutor-app"}))
tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
n = int(os.environ["N"])
spans = []
for i in range(n):
    with tracer.start_as_current_span("chat atlas-3") as s:
        s.set_attribute("gen_ai.operation.name", "chat")
        s.set_attribute("gen_ai.provider.name", "openai")
        s.set_attribute("gen_ai.request.model", "atlas-3")
        s.set_attribute("gen_ai.request.max_tokens", 2048)
        s.set_attribute("gen_ai.request.temperature", 0.0)
        s.set_attribute("user.id", os.environ["ACCOUNT"])
        s.set_attribute("gen_ai.usage.input_tokens", 40)
        s.set_attribute("gen_ai.usage.output_tokens", 900)
        s.set_attribute("gen_ai.input.messages", json.dumps([
            {"role": "user", "parts": [{"type": "text", "content": f"Think step by step and show all your reasoning: problem {i}"}]}]))
        spans.append(s)
with tracer.start_as_current_span("GET /health") as s:
    s.set_attribute("http.request.method", "GET")
    spans.append(s)
with tracer.start_as_current_span("chat atlas-3") as s:
    s.set_attribute("gen_ai.operation.name", "chat")
    s.set_attribute("gen_ai.request.model", "atlas-3")
    spans.append(s)
result = exporter.export(spans)
if result != SpanExportResult.SUCCESS:
    print(f"export failed: {result}", file=sys.stderr)
    sys.exit(1)
print(f"ok {n}")
