"""Writes a LiteLLM log sample with the real LiteLLM library.

Every call goes through `litellm.completion` to `distillguard upstream-mock`,
and a LiteLLM logging callback writes the `standard_logging_object` LiteLLM
builds for it, one JSON object per line: exactly what a LiteLLM callback
(or its s3/gcs loggers) receives. The key metadata (`user_api_key_hash`,
`user_api_key_user_id`) is what LiteLLM's proxy puts there after checking a
virtual key; here it is passed in `metadata`, as the proxy does internally.

Traffic: 40 honest users asking varied questions a few times each, and a
planted harvest: 8 accounts on one system prompt demanding step-by-step
reasoning, each sending 30 templated problems at fixed settings.

    python make_sample.py --base http://127.0.0.1:8081/v1 --out sample.jsonl
"""
import argparse
import hashlib
import json
import random

import litellm
from litellm.integrations.custom_logger import CustomLogger

QUESTIONS = [
    "What's a good name for a bakery that sells sourdough?",
    "Can you explain the difference between TCP and UDP?",
    "Write a short birthday message for my grandmother.",
    "How do I center a div in CSS?",
    "What are the main causes of the French Revolution?",
    "Give me three ideas for a vegetarian dinner.",
    "Why does my Python script say 'list index out of range'?",
    "Summarise the plot of Hamlet in two sentences.",
    "How many cups are in a litre?",
    "Translate 'good morning' into Spanish and German.",
    "What should I pack for a weekend hike in October?",
    "Is it safe to eat raw cookie dough?",
    "How do vaccines train the immune system?",
    "Write a haiku about autumn rain.",
    "What is the capital of Australia?",
    "Suggest a polite way to decline a meeting invitation.",
]


class Dump(CustomLogger):
    def __init__(self, out):
        self.out = out

    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        self.write(kwargs)

    def log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self.write(kwargs)

    def write(self, kwargs):
        payload = kwargs.get("standard_logging_object")
        if payload is not None:
            self.out.write(json.dumps(payload, default=str) + "\n")
            self.out.flush()


def call(base, user, messages, **params):
    key_hash = hashlib.sha256(("sk-" + user).encode()).hexdigest()
    litellm.completion(
        model="openai/atlas-3",
        api_base=base,
        api_key="sk-test",
        messages=messages,
        metadata={"user_api_key_hash": key_hash, "user_api_key_user_id": user},
        **params,
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    with open(a.out, "w") as out:
        litellm.callbacks = [Dump(out)]
        calls = []
        for u in range(40):
            for _ in range(rng.randint(1, 4)):
                q = rng.choice(QUESTIONS)
                params = {"temperature": rng.choice([0.7, 1.0, 0.3])} if rng.random() < 0.3 else {}
                calls.append((f"user-{u:02d}", [{"role": "user", "content": q}], params))
        system = "You are a meticulous tutor. Always reason step by step and show every intermediate step before the final answer."
        for acct in range(8):
            for i in range(30):
                x, y = rng.randint(10, 999), rng.randint(10, 999)
                q = f"Problem {i + 1}: A train travels {x} km in {y} minutes. What is its average speed in km/h? Explain your reasoning step by step."
                calls.append(
                    (
                        f"harvest-{acct}",
                        [{"role": "system", "content": system}, {"role": "user", "content": q}],
                        {"temperature": 0, "max_tokens": 1024},
                    )
                )
        rng.shuffle(calls)
        for user, messages, params in calls:
            call(a.base, user, messages, **params)


if __name__ == "__main__":
    main()
