"""Replicas behind the gateway on canned llama-servers: a conversation stays on one replica and in one
llama-server slot (id_slot, once /slots was read), a replica answering 5xx is ejected and its request answered
by another, and the replicas' state is on /metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .canned import Canned, json_reply, sse, sse_reply
from .conftest import RunningGateway, gateway_config

SLOTS = [{"id": i, "n_ctx": 512, "is_processing": False} for i in range(3)]


def answer(body: dict[str, Any]) -> Any:
    chunk = {"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": None}]}
    end = {
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    return sse_reply(sse(chunk, end))


def failing(body: dict[str, Any]) -> Any:
    return json_reply({"error": {"message": "boom", "type": "server_error"}}, status=500)


@pytest.fixture
def backends() -> Iterator[list[Canned]]:
    made = [
        Canned(
            {"/v1/chat/completions": chat, "/slots": lambda _: json_reply(SLOTS), "/health": lambda _: json_reply({})}
        )
        for chat in (answer, answer, failing)
    ]
    yield made
    for b in made:
        b.close()


def chat_bodies(backend: Canned) -> list[dict[str, Any]]:
    return [json.loads(raw) for path, _, raw in backend.requests if path == "/v1/chat/completions"]


def test_conversations_keep_their_replica_and_slot_and_a_failing_replica_is_ejected(backends: list[Canned]) -> None:
    providers = {f"r{i}": {"type": "llamacpp", "base_url": b.url} for i, b in enumerate(backends)}
    gw = RunningGateway(gateway_config(providers, models={"trio": {"provider": list(providers), "cooldown": 60}}))
    try:
        convos = [[{"role": "user", "content": f"topic {n}"}] for n in range(4)]
        for turn in range(3):
            for n, c in enumerate(convos):
                body = {"model": "trio", "messages": c, "max_tokens": 4, "stream": n % 2 == 0}
                r = httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=30)
                assert r.status_code == 200, r.text  # the failing replica's request went to another one
                c += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": f"more {turn}"}]
        seen: dict[str, set[tuple[int, int]]] = {}  # conversation -> {(replica, slot)}
        for i, b in enumerate(backends[:2]):
            for body in chat_bodies(b):
                seen.setdefault(body["messages"][0]["content"], set()).add((i, body["id_slot"]))
        assert all(len(places) == 1 for places in seen.values()) and len(seen) == 4
        assert {i for places in seen.values() for i, _ in places} == {0, 1}  # both healthy replicas got some
        assert len(chat_bodies(backends[2])) == 1  # tried once, then ejected for the cooldown
        metrics = httpx.get(f"{gw.url}/metrics").text
        assert 'corral_replica_healthy{model="trio",replica="r2"} 0.0' in metrics
        assert 'corral_replica_ejections_total{model="trio",replica="r2"} 1.0' in metrics
        assert 'corral_replica_healthy{model="trio",replica="r0"} 1.0' in metrics
    finally:
        gw.stop()
