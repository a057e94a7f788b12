"""Ollama's API on backends that are not llama.cpp, with canned loopback servers: an Ollama upstream
(everything passes through as bytes, a cut stream is reported), an OpenAI-shaped one that calls
tools (translated: arguments become objects, options become that provider's words) and Anthropic."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import pytest

from .canned import Canned, Reply
from .conftest import RunningGateway, gateway_config


def lines(*objs: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


# -- an Ollama upstream ---------------------------------------------------------------------------------------
def _ollama_chat(body: dict[str, Any]) -> Reply:
    model = body.get("model")
    if model not in ("llama3.2", "llama3.2:latest", "cut"):
        return 404, "application/json", json.dumps({"error": f"model '{model}' not found"}).encode()
    final = {
        "model": model,
        "created_at": "2025-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 11,
        "eval_count": 2,
    }
    if body.get("stream") is False:
        whole = final | {"message": {"role": "assistant", "content": "Hi there"}}
        return 200, "application/json", json.dumps(whole).encode()
    chunks = [
        {
            "model": model,
            "created_at": "2025-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": t},
            "done": False,
        }
        for t in ("Hi", " there")
    ]
    if model == "cut":
        return 200, "application/x-ndjson", lines(*chunks)  # no done: true line: the upstream died
    return 200, "application/x-ndjson", lines(*chunks, final)


OLLAMA_TAGS = {
    "models": [
        {
            "name": "llama3.2:latest",
            "model": "llama3.2:latest",
            "size": 2019393189,
            "digest": "a80c4f17acd5",
            "details": {"family": "llama", "parameter_size": "3.2B"},
        }
    ]
}


@pytest.fixture(scope="module")
def ollama_up() -> Iterator[Canned]:
    up = Canned(
        {
            "/api/chat": _ollama_chat,
            "/api/generate": lambda b: (
                200,
                "application/json",
                json.dumps({"model": b["model"], "response": "raw:" + b.get("prompt", ""), "done": True}).encode(),
            ),
            "/api/tags": lambda b: (200, "application/json", json.dumps(OLLAMA_TAGS).encode()),
            "/api/ps": lambda b: (200, "application/json", json.dumps({"models": []}).encode()),
            "/api/show": lambda b: (
                200,
                "application/json",
                json.dumps(
                    {"template": "{{ .Prompt }}", "capabilities": ["completion", "tools"], "model_info": {}}
                ).encode(),
            ),
        }
    )
    yield up
    up.close()


@pytest.fixture(scope="module")
def via_ollama(ollama_up: Canned) -> Iterator[RunningGateway]:
    """No [models]: every name goes to the Ollama upstream as the client spells it."""
    gw = RunningGateway(gateway_config({"up": {"type": "ollama", "base_url": ollama_up.url}}))
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def routed_ollama(ollama_up: Canned) -> Iterator[RunningGateway]:
    gw = RunningGateway(
        gateway_config(
            {"up": {"type": "ollama", "base_url": ollama_up.url}},
            models={"llama3.2": {"provider": "up"}, "cut": {"provider": "up"}},
        )
    )
    yield gw
    gw.stop()


def test_an_ollama_upstream_gets_the_clients_bytes(via_ollama: RunningGateway, ollama_up: Canned) -> None:
    raw = (
        b'{"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": false,'
        b' "think": false, "keep_alive": "10m", "options": {"num_ctx": 8192, "top_k": 3}}'
    )
    r = httpx.post(f"{via_ollama.url}/api/chat", content=raw, timeout=30)
    assert r.status_code == 200 and r.json()["message"]["content"] == "Hi there"
    assert ollama_up.last_raw("/api/chat") == raw  # options, think and keep_alive untouched
    assert "x-corral-not-applied" not in r.headers


def test_a_streamed_ollama_answer_is_relayed(routed_ollama: RunningGateway, ollama_up: Canned) -> None:
    client = ollama.Client(host=routed_ollama.url)
    parts = list(client.chat(model="llama3.2:latest", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert "".join(p.message.content or "" for p in parts) == "Hi there" and parts[-1].done
    assert all(p.model == "llama3.2:latest" for p in parts)  # named as the client asked
    assert ollama_up.last("/api/chat")["model"] == "llama3.2"  # the configured name upstream
    metrics = httpx.get(f"{routed_ollama.url}/metrics").text
    assert any(
        ln.startswith("corral_tokens_total{") and 'model="llama3.2"' in ln and 'kind="prompt"' in ln
        for ln in metrics.splitlines()
    )


def test_a_cut_ollama_stream_ends_with_an_error(routed_ollama: RunningGateway) -> None:
    client = ollama.Client(host=routed_ollama.url)
    got: list[str] = []
    with pytest.raises(ollama.ResponseError, match="ended before the answer was complete"):
        for part in client.chat(model="cut", messages=[{"role": "user", "content": "hi"}], stream=True):
            got.append(part.message.content or "")
    assert "".join(got) == "Hi there"  # what came was relayed


def test_ollama_upstream_errors_and_model_routes(via_ollama: RunningGateway, ollama_up: Canned) -> None:
    client = ollama.Client(host=via_ollama.url)
    with pytest.raises(ollama.ResponseError) as nf:
        client.chat(model="mistral", messages=[{"role": "user", "content": "hi"}])
    assert nf.value.status_code == 404 and "mistral" in nf.value.error
    assert client.list().models[0].model == "llama3.2:latest"  # the upstream's own list
    assert client.show("llama3.2").capabilities == ["completion", "tools"]
    assert client.ps().models == []
    raw = client.generate(model="llama3.2", prompt="[INST] x", raw=True)  # Ollama does raw itself
    assert raw.response == "raw:[INST] x" and ollama_up.last("/api/generate")["raw"] is True


# -- an OpenAI-shaped upstream that calls tools ---------------------------------------------------------------
TOOL_CALL = {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}


def _openai_chat(body: dict[str, Any]) -> Reply:
    if not body.get("stream"):
        answer = {
            "id": "c1",
            "object": "chat.completion",
            "created": 1,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
                }
            ],
            "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29},
        }
        return 200, "application/json", json.dumps(answer).encode()

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        c = {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": body["model"],
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(c).encode() + b"\n\n"

    first = {"index": 0, "id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": '{"ci'}}
    rest = {"index": 0, "function": {"arguments": 'ty": "Oslo"}'}}
    events = chunk({"role": "assistant", "content": "Checking."}) + chunk({"tool_calls": [first]})
    events += chunk({"tool_calls": [rest]}) + chunk({}, "tool_calls") + b"data: [DONE]\n\n"
    return 200, "text/event-stream", events


@pytest.fixture(scope="module")
def openai_up() -> Iterator[Canned]:
    up = Canned({"/v1/chat/completions": _openai_chat})
    yield up
    up.close()


@pytest.fixture(scope="module")
def via_openai(openai_up: Canned) -> Iterator[RunningGateway]:
    gw = RunningGateway(
        gateway_config(
            {"oa": {"type": "openai", "base_url": f"{openai_up.url}/v1", "api_key": "k"}},
            models={"gpt": {"provider": "oa", "upstream": "gpt-4.1-mini"}},
        )
    )
    yield gw
    gw.stop()


WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def test_tool_calls_come_back_in_ollamas_shape(via_openai: RunningGateway, openai_up: Canned) -> None:
    client = ollama.Client(host=via_openai.url)
    r = client.chat(
        model="gpt",
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER],
        think="low",
        options={"num_predict": 50, "top_k": 5, "presence_penalty": 0.5},
    )
    assert r.done and r.done_reason == "stop" and r.message.tool_calls
    assert r.message.tool_calls[0].function.name == "get_weather"
    assert r.message.tool_calls[0].function.arguments == {"city": "Oslo"}  # an object, not JSON text
    sent = openai_up.last("/v1/chat/completions")
    assert sent["model"] == "gpt-4.1-mini" and sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["presence_penalty"] == 0.5 and sent["reasoning_effort"] == "low" and "top_k" not in sent
    assert r.prompt_eval_count == 20 and r.eval_count == 9


def test_a_streamed_tool_call_arrives_whole(via_openai: RunningGateway) -> None:
    body = {
        "model": "gpt",
        "messages": [{"role": "user", "content": "Oslo?"}],
        "tools": [WEATHER],
        "options": {"top_k": 5, "num_ctx": 4096},
    }
    with httpx.stream("POST", f"{via_openai.url}/api/chat", json=body, timeout=30) as r:
        assert r.headers["content-type"].startswith("application/x-ndjson")
        assert r.headers["x-corral-not-applied"] == "options.top_k, options.num_ctx"
        parts = [json.loads(line) for line in r.iter_lines() if line]
    calls = [c for p in parts for c in p["message"].get("tool_calls", ())]
    assert calls == [{"id": "call_9", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Oslo"}}}]
    assert "".join(p["message"]["content"] for p in parts) == "Checking." and parts[-1]["done"] is True
    assert parts[-1]["eval_duration"] >= 0 and parts[-1]["prompt_eval_duration"] >= 0  # the stream's own clock


# -- Anthropic --------------------------------------------------------------------------------------------------
def _anthropic(body: dict[str, Any]) -> Reply:
    answer = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [{"type": "thinking", "thinking": "Short.", "signature": "s"}, {"type": "text", "text": "Bonjour"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 7, "output_tokens": 3},
    }
    return 200, "application/json", json.dumps(answer).encode()


def test_an_anthropic_provider_answers_ollama_clients(tmp_path: Any) -> None:
    up = Canned({"/v1/messages": _anthropic})
    gw = RunningGateway(
        gateway_config(
            {"claude": {"type": "anthropic", "base_url": up.url, "api_key": "sk-ant-x"}},
            models={"sonnet": {"provider": "claude", "upstream": "claude-sonnet-4-5"}},
        )
    )
    try:
        r = ollama.Client(host=gw.url).generate(
            model="sonnet", prompt="Say hello in French.", think=True, options={"top_k": 4, "num_predict": 3000}
        )
        assert r.response == "Bonjour" and r.thinking == "Short." and r.eval_count == 3
        sent = up.last("/v1/messages")
        assert sent["top_k"] == 4 and sent["max_tokens"] == 3000
        assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    finally:
        gw.stop()
        up.close()
