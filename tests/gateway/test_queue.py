"""A model's concurrency limit and queue behind the gateway: a burst beyond it waits, then is refused with
429 and Retry-After in the caller's own protocol (OpenAI, Anthropic, Responses, Ollama); nothing hangs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from .canned import Canned, json_reply
from .conftest import RunningGateway, gateway_config

CHAT = {
    "id": "x",
    "object": "chat.completion",
    "model": "m",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


def slow_chat(body: dict[str, Any]) -> Any:
    time.sleep(0.8)  # long enough that the burst's other requests arrive while it runs
    return json_reply(CHAT)


@pytest.fixture(scope="module")
def limited() -> Iterator[RunningGateway]:
    backend = Canned({"/v1/chat/completions": slow_chat})
    gw = RunningGateway(
        gateway_config(
            {"slow": {"type": "openai", "base_url": f"{backend.url}/v1", "api_key": "k"}},
            models={"m": {"provider": "slow", "concurrency": 1, "queue": 1, "queue_timeout": 10}},
        )
    )
    yield gw
    gw.stop()
    backend.close()


MESSAGES = [{"role": "user", "content": "hi"}]
CASES = {
    "openai": ("/v1/chat/completions", {"model": "m", "messages": MESSAGES}),
    "anthropic": ("/v1/messages", {"model": "m", "max_tokens": 8, "messages": MESSAGES}),
    "responses": ("/v1/responses", {"model": "m", "input": "hi"}),
    "ollama": ("/api/chat", {"model": "m", "messages": MESSAGES, "stream": False}),
}


@pytest.mark.parametrize("protocol", list(CASES))
def test_a_burst_queues_then_gets_429_in_the_callers_shape(limited: RunningGateway, protocol: str) -> None:
    path, body = CASES[protocol]
    started = time.monotonic()
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: httpx.post(f"{limited.url}{path}", json=body, timeout=30), range(3)))
    assert time.monotonic() - started < 10  # one ran, one waited its turn, one was refused at once
    assert sorted(r.status_code for r in answers) == [200, 200, 429]
    refused = next(r for r in answers if r.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    error = refused.json()
    if protocol == "anthropic":
        assert error["type"] == "error" and error["error"]["type"] == "rate_limit_error"
    elif protocol == "ollama":
        assert "is busy" in error["error"]  # Ollama's errors are a string
    else:
        assert "is busy" in error["error"]["message"]
    metrics = httpx.get(f"{limited.url}/metrics").text
    assert 'corral_queue_limit{model="m"} 1.0' in metrics
    state = httpx.get(f"{limited.url}/dashboard/api/state").json()["replicas"]["m"]["queue"]
    assert state["rejected"] >= 1 and state["queued"] >= 1 and state["waiting"] == 0
