"""Two real llama.cpp replicas behind the gateway: conversations stay where their KV cache is (measured by
the replicas' own /metrics), both replicas get work, a replica killed mid-run costs no non-streamed request
and is re-admitted when it is back; a burst beyond the concurrency limit queues, then gets 429."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.manager.engine import EngineProcess

from ..conftest import start_engine
from .conftest import RunningGateway, gateway_config

pytestmark = pytest.mark.live

SERVER_ARGS = ("-c", "2048", "-np", "2", "--slots", "--metrics")
# A system prompt long enough that a follow-up turn is mostly prefix, as in real use (~250 tokens).
SYSTEM = "You answer in one short sentence. " + " ".join(f"Rule {i}: stay brief and kind." for i in range(25))


@pytest.fixture(scope="module")
def replicas(gguf_path: Path) -> Iterator[list[EngineProcess]]:
    engines = [start_engine(gguf_path, *SERVER_ARGS) for _ in range(2)]
    yield engines
    for e in engines:
        e.stop()


def _gateway(engines: list[EngineProcess], **model: Any) -> RunningGateway:
    providers = {f"r{i}": {"type": "llamacpp", "base_url": e.url} for i, e in enumerate(engines)}
    return RunningGateway(
        gateway_config(providers, models={"duo": {"provider": list(providers), "cooldown": 1, **model}})
    )


def _metrics(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {m[1]: float(m[2]) for m in re.finditer(r"^llamacpp:(\w+) ([0-9.e+-]+)$", text, re.M)}


def _ask(gw: RunningGateway, messages: list[dict[str, str]], **extra: Any) -> httpx.Response:
    body = {"model": "duo", "messages": messages, "max_tokens": 4, "temperature": 0, **extra}
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=120)


def test_conversations_stick_to_the_replica_holding_their_cache(replicas: list[EngineProcess]) -> None:
    gw = _gateway(replicas)
    try:
        convos = [
            [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Name a color, {n}."}]
            for n in range(4)
        ]
        for c in convos:  # first turns: cold everywhere
            r = _ask(gw, c)
            assert r.status_code == 200, r.text
            c += [{"role": "assistant", "content": r.json()["choices"][0]["message"]["content"]}]
        before = [_metrics(e.url or "") for e in replicas]
        assert all(m["prompt_tokens_total"] > 0 for m in before)  # both replicas got conversations
        for turn in range(2):
            for n, c in enumerate(convos):
                c += [{"role": "user", "content": f"And another, {turn}?"}]
                r = _ask(gw, c, stream=n % 2 == 1)  # streamed and whole answers alike
                assert r.status_code == 200, r.text
                text = r.json()["choices"][0]["message"]["content"] if n % 2 == 0 else "ok"
                c += [{"role": "assistant", "content": text or "ok"}]
        after = [_metrics(e.url or "") for e in replicas]
        prompt = sum(a["prompt_tokens_total"] - b["prompt_tokens_total"] for a, b in zip(after, before, strict=True))
        cached = sum(
            a["prompt_tokens_cached_total"] - b["prompt_tokens_cached_total"]
            for a, b in zip(after, before, strict=True)
        )
        assert cached / prompt >= 0.85, (cached, prompt)
        state = httpx.get(f"{gw.url}/metrics", timeout=10).text
        assert 'corral_replica_healthy{model="duo",replica="r0"} 1' in state
        assert 'corral_replica_requests_total{model="duo",replica="r1"}' in state
    finally:
        gw.stop()


def test_a_killed_replica_costs_no_request_and_comes_back(replicas: list[EngineProcess], gguf_path: Path) -> None:
    gw = _gateway(replicas, balance="round-robin")
    victim = replicas[1]
    port = int((victim.url or "").rsplit(":", 1)[1])

    def one(n: int) -> int:
        return _ask(gw, [{"role": "user", "content": f"Say {n}."}]).status_code

    try:
        with ThreadPoolExecutor(4) as pool:
            running = [pool.submit(one, n) for n in range(6)]
            time.sleep(0.5)
            victim.stop()  # killed while requests are in flight on it
            statuses = [f.result(timeout=120) for f in running] + [one(n) for n in range(6, 8)]
        assert statuses == [200] * 8
        state = httpx.get(f"{gw.url}/dashboard/api/state", timeout=10).json()["replicas"]["duo"]["replicas"]
        assert state["r1"]["state"] in ("ejected", "probing") and state["r1"]["failures"] >= 1
        back = start_engine(gguf_path, *SERVER_ARGS, "--port", str(port))
        replicas[1] = back
        assert back.url == victim.url
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the background poll re-admits it after its cooldown
            state = httpx.get(f"{gw.url}/dashboard/api/state", timeout=10).json()["replicas"]["duo"]["replicas"]
            if state["r1"]["state"] == "healthy":
                break
            time.sleep(0.3)
        assert state["r1"]["state"] == "healthy"
        served = state["r1"]["requests"]
        assert [one(n) for n in range(2)] == [200] * 2
        after = httpx.get(f"{gw.url}/dashboard/api/state", timeout=10).json()["replicas"]["duo"]["replicas"]
        assert after["r1"]["requests"] > served  # round-robin sends it work again
    finally:
        gw.stop()


def test_a_burst_beyond_the_limit_queues_then_gets_429(replicas: list[EngineProcess]) -> None:
    gw = _gateway(replicas, concurrency=1, queue=2, queue_timeout=60)
    try:
        body = {"role": "user", "content": "Count to three."}
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda n: _ask(gw, [body], max_tokens=2), range(8)))
        assert time.monotonic() - started < 100  # nothing hangs
        codes = sorted(r.status_code for r in answers)
        # one runs, two wait their turn (the machine is shared: a slow one may time out), the rest: 429 at once
        assert codes.count(200) >= 1 and codes.count(429) >= 5 and set(codes) <= {200, 429}
        refused = next(r for r in answers if r.status_code == 429)
        assert int(refused.headers["retry-after"]) >= 1
        assert "is busy" in refused.json()["error"]["message"]  # OpenAI's error shape
        anthropic = httpx.post(  # the same refusal, in the Anthropic shape, when its queue is full
            f"{gw.url}/v1/messages", json={"model": "duo", "max_tokens": 4, "messages": [body]}, timeout=60
        )
        assert anthropic.status_code in (200, 429)
        metrics = httpx.get(f"{gw.url}/metrics", timeout=10).text
        assert re.search(r'corral_queue_rejected_total\{model="duo"\} [1-9]', metrics)
        assert re.search(r'corral_queue_queued_total\{model="duo"\} [1-9]', metrics)  # some waited
        assert 'corral_queue_wait_seconds_total{model="duo"}' in metrics
    finally:
        gw.stop()
