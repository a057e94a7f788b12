"""A translated stream whose backend is silent before its first token (llama.cpp processing a long
prompt) gets SSE keepalive comments, so a byte-level read timeout (an SDK's, a proxy's) does not fire
while the prompt is processed; the SDKs read the stream as usual, and a client leaving still cancels."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import anthropic
import httpx
import pytest

from corral.gateway import relay

from .canned import Canned, Reply, sse
from .conftest import RunningGateway, gateway_config

FIRST_TOKEN_AFTER = 0.6  # seconds of "prompt processing"


def slow_chat(body: dict[str, object]) -> Reply:
    frames = sse(
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "late"}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
         "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}},
    )  # fmt: skip

    def chunks() -> Iterator[bytes]:
        time.sleep(FIRST_TOKEN_AFTER)
        yield from frames

    return 200, "text/event-stream", chunks()


@pytest.fixture
def gw(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningGateway]:
    monkeypatch.setattr(relay, "KEEPALIVE_SECONDS", 0.1)
    up = Canned({"/v1/chat/completions": slow_chat})
    gateway = RunningGateway(gateway_config({"up": {"type": "openai", "base_url": f"{up.url}/v1", "api_key": "k"}}))
    yield gateway
    gateway.stop()
    up.close()


def test_a_silent_backend_gets_keepalives_before_the_first_event(gw: RunningGateway) -> None:
    body = {"model": "m", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(f"{gw.url}/v1/messages", json=body, timeout=10)
    assert r.status_code == 200
    head, _, rest = r.text.partition("event: message_start")
    assert head.count(": keepalive\n\n") >= 3 and ": keepalive" not in rest  # only while silent
    # The SDK reads past them.
    claude = anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)
    with claude.messages.stream(model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}]) as s:
        assert s.get_final_message().content[0].text == "late"  # type: ignore[union-attr]


def test_ndjson_streams_get_no_keepalive(gw: RunningGateway) -> None:
    r = httpx.post(f"{gw.url}/api/chat", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                   timeout=10)  # fmt: skip
    lines = [json.loads(line) for line in r.text.splitlines()]  # every line is JSON: nothing else was added
    assert lines[0]["message"]["content"] == "late" and lines[-1]["done"] is True


def test_a_client_leaving_before_the_first_event_closes_the_upstream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay, "KEEPALIVE_SECONDS", 0.1)
    written: list[int] = []

    def endless(body: dict[str, object]) -> Reply:
        def chunks() -> Iterator[bytes]:
            time.sleep(FIRST_TOKEN_AFTER)
            for i in range(200):  # 10 s of tokens, unless the gateway hangs up
                written.append(i)
                yield sse({"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]}, done=False)[0]
                time.sleep(0.05)

        return 200, "text/event-stream", chunks()

    up = Canned({"/v1/chat/completions": endless})
    gw = RunningGateway(gateway_config({"up": {"type": "openai", "base_url": f"{up.url}/v1", "api_key": "k"}}))
    try:
        body = {"model": "m", "max_tokens": 500, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        with httpx.stream("POST", f"{gw.url}/v1/messages", json=body, timeout=10) as r:
            first = next(r.iter_bytes())
            assert first.startswith(b": keepalive")  # still silent upstream: the client leaves now
        time.sleep(FIRST_TOKEN_AFTER + 1.5)
        assert 1 <= len(written) < 40, len(written)  # the upstream connection was closed at once
    finally:
        gw.stop()
        up.close()
