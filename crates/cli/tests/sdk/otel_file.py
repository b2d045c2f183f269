"""GenAI spans made by the official OpenTelemetry Python SDK and written as
the Collector's file exporter writes them with `format: proto`: each
ExportTraceServiceRequest after its length, 4 bytes big-endian.

Run by crates/cli/tests/cli/ with:
  CALLS  a JSON file: a list of rounds, each a list of
         {"user", "system" (or null), "question", "start" (ns)}
  OUT    the file to write (one message per round)
Prints "ok N" with the number of spans written.
"""
import json
import os
import struct

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

provider = TracerProvider(resource=Resource.create({"service.name": "tutor-app"}))
tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
rounds = json.load(open(os.environ["CALLS"]))
n = 0
with open(os.environ["OUT"], "wb") as out:
    for calls in rounds:
        spans = []
        for c in calls:
            s = tracer.start_span("chat atlas-3", start_time=c["start"])
            s.set_attribute("gen_ai.operation.name", "chat")
            s.set_attribute("gen_ai.provider.name", "openai")
            s.set_attribute("gen_ai.request.model", "atlas-3")
            s.set_attribute("gen_ai.request.max_tokens", 1024)
            s.set_attribute("user.id", c["user"])
            s.set_attribute("gen_ai.input.messages", json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": c["question"]}]}]))
            s.set_attribute("gen_ai.usage.input_tokens", 40)
            s.set_attribute("gen_ai.usage.output_tokens", 300)
            if c["system"] is not None:
                s.set_attribute("gen_ai.system_instructions", json.dumps(
                    [{"type": "text", "content": c["system"]}]))
            s.end(end_time=c["start"] + 900_000_000)
            spans.append(s)
            n += 1
        data = encode_spans(spans).SerializeToString()
        out.write(struct.pack(">I", len(data)))
        out.write(data)
print(f"ok {n}")
