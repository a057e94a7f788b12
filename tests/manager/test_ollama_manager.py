"""Ollama's model lifecycle on corral's manager, with fake llama-servers over the bundled GGUF (its
header is what /api/tags, /api/ps and /api/show read): keep_alive, load and unload requests, ps."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import ollama
import pytest

from ..gateway.conftest import RunningGateway
from .test_manager import fake


@pytest.fixture
def managed(gguf_path: Path, tmp_path: Path) -> Iterator[RunningGateway]:
    models = {
        "gemma": {"gguf": str(gguf_path), "engine": fake("ok"), "aliases": ["small"], "args": ["-c", "2048"]},
        "short": {"gguf": str(gguf_path), "engine": fake("ok"), "ttl": 1},
    }
    table = {"max_loaded": 2, "load_timeout": 5, "stop_grace": 2, "state_dir": str(tmp_path), "models": models}
    gw = RunningGateway({"manager": table})
    yield gw
    gw.stop()


def running(gw: RunningGateway) -> list[str]:
    return sorted(m["model"] for m in httpx.get(f"{gw.url}/running").json()["running"])


def wait_until(check: object, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def hi(client: ollama.Client, model: str, **kwargs: object) -> ollama.ChatResponse:
    return client.chat(model=model, messages=[{"role": "user", "content": "hi"}], **kwargs)  # type: ignore[call-overload, no-any-return]


def test_ps_shows_a_loaded_model_with_its_expiry_and_size(managed: RunningGateway) -> None:
    client = ollama.Client(host=managed.url)
    assert client.ps().models == []
    r = hi(client, "small:latest", keep_alive="10m")  # an alias, with Ollama's tag
    assert r.message.content == "fake answer" and r.load_duration and r.load_duration > 0  # it was started
    (entry,) = client.ps().models
    assert entry.model == "gemma:latest" and entry.size and entry.size > 1_000_000  # the child's memory
    assert entry.details and entry.details.family == "gemma3" and entry.context_length == 2048
    assert entry.expires_at is not None
    left = (entry.expires_at - datetime.now(UTC)).total_seconds()
    assert 590 < left <= 600
    raw = httpx.get(f"{managed.url}/api/ps").json()["models"][0]
    assert raw["state"] == "loaded" and raw["aliases"] == ["small:latest"]


def test_keep_alive_zero_unloads_after_the_request(managed: RunningGateway) -> None:
    client = ollama.Client(host=managed.url)
    assert hi(client, "gemma").done
    assert running(managed) == ["gemma"]
    assert hi(client, "gemma", keep_alive=0).message.content == "fake answer"  # answered first
    assert wait_until(lambda: running(managed) == [], 3), "keep_alive 0 did not unload the model"


def test_keep_alive_negative_keeps_a_model_past_its_ttl(managed: RunningGateway) -> None:
    client = ollama.Client(host=managed.url)
    hi(client, "short", keep_alive=-1)
    (entry,) = client.ps().models
    assert entry.expires_at is not None and entry.expires_at.year > 2200
    time.sleep(2.5)  # its configured ttl is 1 s
    assert running(managed) == ["short"]
    hi(client, "short", keep_alive="1s")  # and a later request sets it again
    assert wait_until(lambda: running(managed) == [], 5)


def test_load_and_unload_requests(managed: RunningGateway) -> None:
    client = ollama.Client(host=managed.url)
    loaded = client.generate(model="gemma")  # no prompt: Ollama's "load the model"
    assert loaded.done and loaded.done_reason == "load" and running(managed) == ["gemma"]
    gone = client.chat(model="gemma", messages=[], keep_alive=0)
    assert gone.done_reason == "unload" and running(managed) == []


def test_tags_and_show_read_the_gguf(managed: RunningGateway, gguf_path: Path) -> None:
    client = ollama.Client(host=managed.url)
    tags = {m.model: m for m in client.list().models}
    assert set(tags) == {"gemma:latest", "small:latest", "short:latest"}
    gemma = tags["gemma:latest"]
    assert gemma.size == gguf_path.stat().st_size and gemma.details and gemma.details.format == "gguf"
    assert gemma.details.quantization_level and gemma.details.family == "gemma3"
    shown = client.show("gemma")
    assert shown.modelinfo and shown.modelinfo["general.architecture"] == "gemma3"
    assert shown.modelinfo["gemma3.context_length"] > 0 and "general.name" not in shown.modelinfo
    assert shown.template == ""  # this GGUF carries no chat template (llama-server falls back to its own)
    assert shown.capabilities == ["completion"] and "2048" in (shown.parameters or "")  # its -c
    assert shown.details and shown.details.parameter_size == "270M"
    assert running(managed) == []  # show starts nothing
    with pytest.raises(ollama.ResponseError) as nf:
        client.show("nothing")
    assert nf.value.status_code == 404
