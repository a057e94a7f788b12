"""The reliability and security battery for ``corral serve`` (issue 12): fuzz, faults, swap storm,
soak and canary scan, each bounded in time and count, on loopback only.

    python benchmarks/reliability/run.py [fuzz|faults|storm|soak|canary|all] [--minutes N] [--json [PATH]]

It talks to the gateway only over HTTP, as ``python -m corral serve --config F --port P`` child
processes (gateway.py), so it measures what an operator runs and survives changes inside
``corral.gateway``. Short forms of each part run in the test suite (tests/stress).

  backend.py     the fault backend: a fake OpenAI/llama.cpp/Anthropic upstream that misbehaves on request
  gateway.py     ``corral serve`` in a child process: config, log, RSS/FDs/children sampling, reaping
  shapes.py      protocol error shapes, how a stream ended, canary forms
  fuzz_cases.py  Hypothesis strategies: every route, families of nasty values
  fuzz.py, faults.py, storm.py, soak.py, canary.py   the five parts
  report.py      checks and findings, printed as one table
"""
