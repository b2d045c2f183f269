"""A client of the real LiteLLM proxy (with distillguard's plugin loaded from
its config), through the official OpenAI SDK.

Env:
  PROXY   the proxy's URL
  KEY     its master key
  CALLS   a JSON file: [[account, system prompt or null, question], ...],
          sent in order, each with `user` = account (a proxy without
          virtual keys: the plugin reads the account from `user`)
  PHASE   "send": send every call, print {"answered": N, "refused": {account: N}}
          as JSON (the plugin may refuse an account once it is flagged);
          "verdict": ask once as HARVEST and once as HONEST and print
          "HARVEST_CODE HONEST_CODE" (200 answered, 403/429 refused)
  HARVEST, HONEST  accounts for the verdict phase
"""
import json
import os
import sys

import openai

client = openai.OpenAI(base_url=os.environ["PROXY"] + "/v1", api_key=os.environ["KEY"], max_retries=0)


def call(account, system, question):
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": question})
    try:
        client.chat.completions.create(model="atlas-3", messages=messages, user=account, max_tokens=512)
        return 200
    except openai.APIStatusError as e:
        return e.status_code


phase = os.environ["PHASE"]
if phase == "send":
    answered, refused = 0, {}
    for account, system, question in json.load(open(os.environ["CALLS"])):
        code = call(account, system, question)
        if code == 200:
            answered += 1
        elif code in (403, 429):
            refused[account] = refused.get(account, 0) + 1
        else:
            sys.exit(f"{account}: unexpected status {code}")
    print(json.dumps({"answered": answered, "refused": refused}))
else:
    q = "Problem 99: a train covers 99 km in 60 minutes. Average speed in km/h? Explain step by step."
    harvest = call(os.environ["HARVEST"], None, q)
    honest = call(os.environ["HONEST"], None, "How do I center a div in CSS?")
    print(f"{harvest} {honest}")
