"""Capabilities read from the real server, capability and error fallbacks, env switching, tools."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

import corral
from corral import AsyncClient, Client, ContentDelta

from ..conftest import start_engine

pytestmark = pytest.mark.live


def hostport(url: str) -> str:
    return url.split("://", 1)[1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Recorder:
    """An httpx client that remembers every request it sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bytes]] = []
        self.http = httpx.Client(event_hooks={"request": [self._log]})

    def _log(self, request: httpx.Request) -> None:
        self.sent.append((request.method, str(request.url), request.content))

    def paths(self) -> list[str]:
        return [httpx.URL(u).path for _, u, _ in self.sent]


def test_capabilities_are_read_live_from_props(llama_url: str, templated_server: Any) -> None:
    plain = Client(f"llamacpp://{hostport(llama_url)}")
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with pytest.raises(corral.UnsupportedCapability) as info:
        plain.chat("hi", tools=tools, max_tokens=2)
    assert info.value.capability == "tools" and "llamacpp" in str(info.value)
    # The jinja template renders tools, so that server accepts them.
    templated = Client(f"llamacpp://{hostport(templated_server.url)}")
    assert templated.chat("hi", tools=tools, tool_choice="none", max_tokens=2).usage.completion_tokens > 0


def test_embeddings_missing_is_unsupported_before_sending(templated_server: Any) -> None:
    rec = Recorder()
    client = Client(f"llamacpp://{hostport(templated_server.url)}", http_client=rec.http)
    with pytest.raises(corral.UnsupportedCapability) as info:
        client.embed(["a real input"])
    assert info.value.capability == "embeddings"
    # Only the free probe (an empty input) reached the server; the caller's text never did.
    bodies = [body for _, url, body in rec.sent if url.endswith("/v1/embeddings")]
    assert bodies == [b'{"input":[]}']
    with pytest.raises(corral.UnsupportedCapability):
        client.embed(["again"])
    assert len(rec.sent) == 1  # the answer is cached: no second probe


def test_capability_fallback_sends_embeddings_elsewhere(llama_url: str, templated_server: Any) -> None:
    config = {
        "default_provider": "local",
        "providers": {
            "local": {"type": "llamacpp", "base_url": templated_server.url},
            # the same kind of server, reached as a generic OpenAI-compatible host
            "cloud": {"type": "openai", "base_url": f"{llama_url}/v1", "api_key": "unused"},
        },
        "routing": {"capability_fallbacks": {"embeddings": ["cloud"]}},
    }
    client = Client(config=config)
    result = client.embed(["fall back, please"])
    assert result.provider == "cloud" and len(result.vectors[0]) == 640
    # Chat still goes to the primary.
    assert client.chat("hi", max_tokens=2).provider == "local"


def test_fallback_after_unreachable_answers_from_second(llama_url: str) -> None:
    config = {
        "default_provider": "local",
        "providers": {
            "local": {"type": "llamacpp", "base_url": f"http://127.0.0.1:{closed_port()}", "max_retries": 0},
            "backup": {"type": "llamacpp", "base_url": llama_url},
        },
        "routing": {"fallbacks": {"local": ["backup"]}},
    }
    r = Client(config=config).chat("hi", max_tokens=3)
    assert r.provider == "backup" and r.usage.completion_tokens > 0
    with Client(config=config).stream("hi", max_tokens=3) as s:
        assert s.final().provider == "backup"
    assert s.provider == "backup"


async def test_async_fallback_after_unreachable(llama_url: str) -> None:
    config = {
        "default_provider": "local",
        "providers": {
            "local": {"type": "llamacpp", "base_url": f"http://127.0.0.1:{closed_port()}", "max_retries": 0},
            "backup": {"type": "llamacpp", "base_url": llama_url},
        },
        "routing": {"fallbacks": {"local": ["backup"]}},
    }
    async with AsyncClient(config=config) as c:
        assert (await c.chat("hi", max_tokens=3)).provider == "backup"


def test_stream_failing_after_first_chunk_is_not_retried(gguf_path: Path, llama_url: str) -> None:
    engine = start_engine(gguf_path, "-c", "1024")
    assert engine.proc is not None and engine.url
    rec = Recorder()
    config = {
        "default_provider": "local",
        "providers": {
            "local": {"type": "llamacpp", "base_url": engine.url},
            "backup": {"type": "llamacpp", "base_url": llama_url},
        },
        "routing": {"fallbacks": {"local": ["backup"]}},
    }
    try:
        client = Client(config=config, http_client=rec.http)
        seen = 0
        stream = client.stream("Write a long story about ships.", max_tokens=400)
        with pytest.raises(corral.ResponseError), stream as s:
            for event in s:
                if isinstance(event, ContentDelta):
                    seen += 1
                    if seen == 2:
                        os.kill(engine.proc.pid, signal.SIGKILL)
        assert seen >= 2
        # One request, to the primary: no retry and no fallback once bytes reached the caller.
        assert [(m, u.startswith(engine.url)) for m, u, _ in rec.sent] == [("POST", True)]
    finally:
        engine.stop()


def test_env_switches_default_provider(llama_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CORRAL_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("CORRAL_DEFAULT_PROVIDER", "llama.cpp")
    monkeypatch.setenv("CORRAL_LLAMA_CPP_BASE_URL", llama_url)
    client = Client()
    assert client.config.type == "llamacpp" and client.config.base_url == llama_url
    r = client.chat("hi", max_tokens=3)
    assert r.provider == "llama.cpp" and r.usage.completion_tokens > 0


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ROUND_TRIP = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "18 C and sunny"},
]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_tool_round_trip_on_real_server(templated_server: Any, mode: str) -> None:
    dsn = f"llamacpp://{hostport(templated_server.url)}"
    # The small base model never calls tools itself and llama-server's tool-call parser rejects its
    # free text (500); tool_choice="none" still sends the definitions, the earlier call and its result.
    kw: dict[str, Any] = {"tools": [WEATHER_TOOL], "tool_choice": "none", "max_tokens": 12, "temperature": 0}
    if mode == "sync":
        with Client(dsn) as c:
            prompt = c.apply_template(ROUND_TRIP)
            r = c.chat(ROUND_TRIP, **kw)
            with c.stream(ROUND_TRIP, **kw) as s:
                streamed = s.final()
    else:
        async with AsyncClient(dsn) as ac:
            prompt = await ac.apply_template(ROUND_TRIP)
            r = await ac.chat(ROUND_TRIP, **kw)
            async with ac.stream(ROUND_TRIP, **kw) as s:
                streamed = await s.final()
    # The template rendered the earlier call and the tool's result into the prompt.
    assert '{"name": "get_weather", "arguments": {"city": "Paris"}}' in prompt
    assert "Tool result: 18 C and sunny" in prompt
    assert r.content and r.usage.prompt_tokens > 60  # the tool schema and history were in the prompt
    assert streamed.content == r.content and streamed.usage.prompt_tokens == r.usage.prompt_tokens
