"""An application instrumented with the OpenTelemetry instrumentation of the
official OpenAI SDK (opentelemetry-instrumentation-openai-v2), exporting its
spans over OTLP/HTTP (protobuf) to distillguard's trace receiver. The
application names its user in OpenTelemetry baggage (`user.id`), which the
baggage span processor copies onto every span, the GenAI ones included.
The instrumentation runs with its defaults: it records no message content
(2.3b0 sends content, when asked to, as log records, not on spans).

Env:
  MOCK      upstream-mock's URL (the model the SDK calls)
  ENDPOINT  the gateway's /v1/traces URL (internal listener)
  TOKEN     the integrations token
  ACCOUNT   the application's user
  N         calls to make
Prints, as JSON, what the SDK got back for each call: model, input and
output tokens.
"""
import json
import os

from openai import OpenAI
from opentelemetry import baggage, context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.processor.baggage import ALLOW_ALL_BAGGAGE_KEYS, BaggageSpanProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

provider = TracerProvider(resource=Resource.create({"service.name": "tutor-app"}))
provider.add_span_processor(BaggageSpanProcessor(ALLOW_ALL_BAGGAGE_KEYS))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
    endpoint=os.environ["ENDPOINT"], headers={"Authorization": "Bearer " + os.environ["TOKEN"]})))
OpenAIInstrumentor().instrument(tracer_provider=provider)

client = OpenAI(base_url=os.environ["MOCK"] + "/v1", api_key="sk-upstream", max_retries=0)
seen = []
for i in range(int(os.environ["N"])):
    question = f"Problem {i}: how many primes lie below {100 + 7 * i}? Think step by step."
    token = context.attach(baggage.set_baggage("user.id", os.environ["ACCOUNT"]))
    try:
        r = client.chat.completions.create(
            model="atlas-3",
            messages=[{"role": "user", "content": question}],
            max_tokens=1024,
            temperature=0,
        )
    finally:
        context.detach(token)
    seen.append({
        "model": r.model,
        "input_tokens": r.usage.prompt_tokens,
        "output_tokens": r.usage.completion_tokens,
    })
if not provider.force_flush(30_000):
    raise SystemExit("the exporter did not flush")
provider.shutdown()
print(json.dumps(seen))
