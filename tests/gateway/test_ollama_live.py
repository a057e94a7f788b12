"""The official ``ollama`` Python client, unchanged, against `corral serve` over the real llama.cpp
server: chat and generate (streamed and not), embed, embeddings, list, ps, show, errors, and the
settings the README gives (host=, OLLAMA_HOST, OLLAMA_API_KEY, --ollama-port)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from .conftest import GATEWAY_KEY, RunningGateway

pytestmark = pytest.mark.live

AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def client(live_gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> ollama.Client:
    # The key as an Ollama client sends one: the ollama clients read OLLAMA_API_KEY (a Bearer token).
    monkeypatch.setenv("OLLAMA_API_KEY", GATEWAY_KEY)
    return ollama.Client(host=live_gateway.url)


def test_chat(client: ollama.Client) -> None:
    r = client.chat(
        model="local-model",
        messages=[{"role": "user", "content": "Say hi."}],
        options={"num_predict": 8, "temperature": 0},
        think=False,  # as Open WebUI sends it: llama.cpp's template flag, harmless on a model that does not reason
    )
    assert r.model == "local-model" and r.done and r.done_reason in ("stop", "length")
    assert r.message.role == "assistant" and r.message.content
    # llama.cpp's own counts and timings, in nanoseconds
    assert r.prompt_eval_count and r.prompt_eval_count > 5 and r.eval_count and 0 < r.eval_count <= 8
    assert r.eval_duration and r.prompt_eval_duration and r.total_duration
    assert r.total_duration >= r.eval_duration > 0


def test_streamed_chat_with_a_tagged_name(client: ollama.Client) -> None:
    parts = list(
        client.chat(
            model="local-model:latest",
            messages=[{"role": "user", "content": "Count: one two"}],
            stream=True,
            options={"num_predict": 8, "temperature": 0},
        )
    )
    assert len(parts) >= 2 and [p.done for p in parts].count(True) == 1 and parts[-1].done
    assert all(p.model == "local-model:latest" for p in parts)  # named as asked
    text = "".join(p.message.content or "" for p in parts)
    assert text and (parts[-1].eval_count == 8 or parts[-1].done_reason == "stop")


def test_generate_streamed_and_not(client: ollama.Client) -> None:
    whole = client.generate(model="local-model", prompt="The sky is", options={"num_predict": 6, "temperature": 0})
    assert whole.done and whole.response and whole.eval_count
    parts = list(
        client.generate(
            model="local-model", prompt="The sky is", stream=True, options={"num_predict": 6, "temperature": 0}
        )
    )
    assert "".join(p.response for p in parts) == whole.response  # temperature 0: the same text either way
    assert parts[-1].done and parts[-1].response == "" and parts[-1].eval_count == whole.eval_count


def test_raw_generate_is_a_plain_completion(client: ollama.Client) -> None:
    r = client.generate(
        model="local-model", prompt="1, 2, 3, 4,", raw=True, options={"num_predict": 4, "temperature": 0}
    )
    assert r.done and r.response and r.eval_count == 4 and r.prompt_eval_count


def test_format_json_schema(client: ollama.Client) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    r = client.chat(
        model="local-model",
        messages=[{"role": "user", "content": "Give a JSON object with a name."}],
        format=schema,
        options={"num_predict": 40, "temperature": 0},
    )
    assert isinstance(json.loads(r.message.content or "")["name"], str)


def test_embed_and_the_legacy_embeddings(client: ollama.Client) -> None:
    e = client.embed(model="local-model", input=["hello", "world"])
    assert len(e.embeddings) == 2 and len(e.embeddings[0]) == 640 and e.prompt_eval_count
    short = client.embed(model="local-model", input="hello", dimensions=64)
    assert len(short.embeddings[0]) == 64 and abs(sum(x * x for x in short.embeddings[0]) - 1) < 1e-6
    legacy = client.embeddings(model="local-model", prompt="hello")
    assert len(legacy.embedding) == 640


def test_list_ps_and_show(client: ollama.Client) -> None:
    names = {m.model for m in client.list().models}
    assert {"local-model:latest", "gpt-4o-mini:latest", "tools-model:latest"} <= names
    assert {"local-model:latest", "tools-model:latest"} <= {m.model for m in client.ps().models}
    plain = client.show("local-model")
    assert plain.capabilities == ["completion"] and "num_ctx" in (plain.parameters or "")
    tools = client.show("tools-model:latest")  # its server has a tool-aware template
    assert tools.capabilities and "tools" in tools.capabilities and "tools" in (tools.template or "")


def test_a_tool_round_trip_reaches_the_model(client: ollama.Client) -> None:
    r = client.chat(
        model="tools-model",
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
            },
            {"role": "tool", "content": "18 C and sunny", "tool_name": "get_weather"},
        ],
        tools=[WEATHER],
        options={"num_predict": 12, "temperature": 0},
    )
    assert r.done and r.prompt_eval_count and r.prompt_eval_count > 60  # the tool schema and history reached it


def test_errors_as_ollama_clients_know_them(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as nf:
        client.chat(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert nf.value.status_code == 404 and nf.value.error == 'model "no-such-model" not found, try pulling it first'
    with pytest.raises(ollama.ResponseError) as br:
        client.chat(model="local-model", messages=[{"role": "user", "content": "x"}], options={"temperature": 7})
    assert br.value.status_code == 400 and "options.temperature" in br.value.error
    with pytest.raises(ollama.ResponseError) as fim:  # gemma has no fill-in-the-middle tokens
        client.generate(model="local-model", prompt="def f(", suffix="    return 1")
    assert fim.value.status_code == 400 and "infill" in fim.value.error


def test_keys_options_not_applied_and_probes(live_gateway: RunningGateway) -> None:
    url = live_gateway.url
    keyless = ollama.Client(host=url, headers={"Authorization": "Bearer wrong"})
    with pytest.raises(ollama.ResponseError) as denied:
        keyless.list()
    assert denied.value.status_code == 401 and "OLLAMA_API_KEY" in denied.value.error
    body = {
        "model": "local-model",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
        "options": {"num_predict": 2, "num_ctx": 8192, "top_k": 5},
    }
    r = httpx.post(f"{url}/api/chat", json=body, headers=AUTH, timeout=120)
    assert r.status_code == 200 and r.headers["x-corral-not-applied"] == "options.num_ctx"  # top_k was applied
    # What tools probe before they have a key: the version, and Ollama's banner.
    version = httpx.get(f"{url}/api/version").json()["version"]
    assert tuple(map(int, version.split("."))) >= (0, 13, 4)  # codex --oss refuses to start below
    assert httpx.get(f"{url}/").text == "Ollama is running"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(llama_url: str, tmp_path: Path) -> Iterator[tuple[int, int]]:
    """`corral serve --ollama-port` as a user runs it: (main port, Ollama's port)."""
    config = tmp_path / "corral.toml"
    config.write_text(
        f'default_provider = "local"\n[providers.local]\ntype = "llamacpp"\nbase_url = "{llama_url}"\n'
        '[models.gemma]\nprovider = "local"\n'
    )
    port, ollama_port = _free_port(), _free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as err:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "corral",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
                "--ollama-port",
                str(ollama_port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{ollama_port}/api/version", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"corral serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield port, ollama_port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_ollama_port_serves_the_same_app(served: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    port, ollama_port = served
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{ollama_port}")
    r = ollama.Client().chat(model="gemma", messages=[{"role": "user", "content": "hi"}], options={"num_predict": 3})
    assert r.done and r.message.content is not None and r.eval_count
    assert httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"][0]["id"] == "gemma"
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert 'route="/api/chat"' in metrics  # one app: the Ollama port's request counted with the rest


def test_requests_as_continue_and_open_webui_send_them(live_gateway: RunningGateway) -> None:
    """Request shapes from Continue's Ollama provider (core/llm/llms/Ollama.ts) and Open WebUI's Ollama
    router; the clients themselves are not run."""
    url = live_gateway.url
    # Continue: /api/show by "name", its parameters parsed line by line for num_ctx.
    shown = httpx.post(f"{url}/api/show", json={"name": "local-model"}, headers=AUTH, timeout=30).json()
    params = dict(re.match(r"^(\S+)\s+((?:\".*\")|\S+)$", line).groups() for line in shown["parameters"].split("\n"))  # type: ignore[union-attr]
    assert int(params["num_ctx"]) > 0
    # Continue's chat: keep_alive in seconds, num_ctx on every call, streamed NDJSON.
    body = {
        "model": "local-model",
        "messages": [{"role": "user", "content": "hi"}],
        "options": {"temperature": 0, "num_predict": 4, "num_ctx": 2048},
        "keep_alive": 1800,
    }
    with httpx.stream("POST", f"{url}/api/chat", json=body, headers=AUTH, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.iter_lines() if line.strip()]
    assert lines[-1]["done"] is True and all(not line["done"] for line in lines[:-1])
    # Open WebUI: the version and the model list with its connection's key, then a streamed chat.
    assert httpx.get(f"{url}/api/version", headers=AUTH).status_code == 200
    models = httpx.get(f"{url}/api/tags", headers=AUTH).json()["models"]
    assert all({"name", "model", "modified_at", "size", "digest", "details"} <= set(m) for m in models)
