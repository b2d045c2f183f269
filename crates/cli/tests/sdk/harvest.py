"""One key harvesting through the gateway with the official OpenAI Python SDK.

Run by crates/cli/tests/cli/ with:
  GATEWAY   the gateway's URL (its detector on, default weights)
  KEY       a valid key of its own account
  SHAPE     "system":  every request under a system prompt that demands
                       step-by-step reasoning, fixed max_tokens and temperature;
            "scraper": temperature 0, log-probabilities, n = 4, 32k
                       max_completion_tokens, no request for reasoning.
  LIMIT     requests to send at most.
Prints the number of the first request the gateway refused with 403, or
"never" (and exits 1) when every request was served.
"""
import os
import sys

import openai

gw, key, shape = os.environ["GATEWAY"], os.environ["KEY"], os.environ["SHAPE"]
limit = int(os.environ.get("LIMIT", "400"))
client = openai.OpenAI(base_url=gw + "/v1", api_key=key, max_retries=0)

# Diverse questions, as a dataset of prompts would hold.
QUESTIONS = [
    "Why does ice float on water?",
    "How many prime numbers are there between 100 and 200?",
    "What causes the seasons on Earth?",
    "A train travels 180 km in 2.5 hours. What is its average speed?",
    "Is 2^31 - 1 a prime number?",
    "How does a hash table handle collisions?",
    "What is the difference between TCP and UDP?",
    "Why did the Roman Empire fall?",
    "How would you reverse a singly linked list in place?",
    "What is the probability of rolling two sixes with two dice?",
    "How do vaccines train the immune system?",
    "Explain why the sum of the angles of a triangle is 180 degrees.",
    "What is the time complexity of quicksort in the worst case?",
    "How does compound interest work over 10 years at 5%?",
    "Why is the sky blue?",
    "How do you find the derivative of x^x?",
    "What makes a sorting algorithm stable?",
    "How does public-key cryptography let strangers share a secret?",
    "If a shirt costs $40 after a 20% discount, what was the original price?",
    "What is the halting problem?",
    "Why do heavier objects not fall faster in a vacuum?",
    "How does garbage collection work in Java?",
    "What is Bayes' theorem used for?",
    "How many ways can 5 people sit around a round table?",
    "What are the causes of inflation?",
    "How does a transformer model attend to earlier tokens?",
    "What is the integral of 1/x?",
    "How can a deadlock occur between two threads?",
    "Why do we have leap years?",
    "Solve for x: 3x + 7 = 22.",
]

SYSTEM = (
    "You are a meticulous assistant. Before every answer, reason through the "
    "problem one step at a time and write out all of your intermediate steps; "
    "only then give the final answer."
)

for i in range(limit):
    q = QUESTIONS[i % len(QUESTIONS)]
    if i >= len(QUESTIONS):
        q = f"{q} (variant {i // len(QUESTIONS)})"
    try:
        if shape == "system":
            client.chat.completions.create(
                model="atlas-3",
                messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}],
                max_tokens=2048,
                temperature=0.7,
            )
        else:
            client.chat.completions.create(
                model="atlas-3",
                messages=[{"role": "user", "content": q}],
                temperature=0,
                logprobs=True,
                top_logprobs=5,
                n=4,
                max_completion_tokens=32000,
            )
    except openai.PermissionDeniedError:
        print(i + 1)
        sys.exit(0)
print("never")
sys.exit(1)
