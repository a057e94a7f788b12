"""Router mode on the embedded engine (llama-server's --models-dir API), driven through corral:
two models listed with their status, loaded and unloaded, requests routed by model name."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import corral
from corral import Client
from corral.manager.engine import EngineProcess
from corral.manager.lifecycle import from_router_models

pytestmark = pytest.mark.live


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(") ", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except OSError:
                continue
    return out


def _status(client: Client) -> dict[str, str]:
    raw = client._run(client.provider.router_models(), 10, client.provider)  # type: ignore[attr-defined]
    return {s.id: s.status for s in from_router_models(raw)}


def _wait(client: Client, model: str, want: str) -> None:
    deadline = time.monotonic() + 120
    while _status(client).get(model) != want:
        assert time.monotonic() < deadline, f"{model} never became {want}: {_status(client)}"
        time.sleep(0.2)


def test_two_models_load_and_unload_through_corral(gguf_path: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for name in ("alpha", "beta"):
        (models / f"{name}.gguf").symlink_to(gguf_path)
    (models / "notes.txt").write_text("not a model")
    router = EngineProcess(None, ["--models-dir", str(models), "--models-max", "2", "-c", "512"], api_key="rk-1")
    try:
        router.start()
    except Exception as exc:
        pytest.fail(f"router mode did not start: {exc}")
    engines: list[int] = []
    try:
        client = Client(f"llamacpp://{router.url.split('://', 1)[1]}?router=true", api_key="rk-1", timeout=170)
        assert [m.id for m in client.models()] == ["alpha", "beta"]
        assert _status(client) == {"alpha": "unloaded", "beta": "unloaded"}
        assert client.running() == []

        client.load("alpha")
        _wait(client, "alpha", "loaded")
        reply = client.chat("hi", model="beta", max_tokens=2)  # routed by name; loads beta on demand
        assert reply.model == "beta" and reply.usage.completion_tokens > 0
        assert sorted(m.model for m in client.running()) == ["alpha", "beta"]

        client.unload("alpha")
        assert _status(client) == {"alpha": "unloaded", "beta": "loaded"}
        assert client.chat("hi", model="alpha", max_tokens=2).model == "alpha"  # and back again

        with pytest.raises(corral.ModelNotFound, match="not found"):
            client.chat("hi", model="gamma", max_tokens=2)
        with pytest.raises(corral.ConfigurationError, match="unloads one model at a time"):
            client.unload()
        with pytest.raises(corral.Authentication):
            Client(f"llamacpp://{router.url.split('://', 1)[1]}?router=true", api_key="wrong").running()
        assert router.pid is not None
        engines = _children(router.pid)
        assert len(engines) == 2  # one engine per loaded model, as llama.cpp's router runs them
    finally:
        router.stop()
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{p}") for p in engines) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in engines if os.path.exists(f"/proc/{p}")], "a model engine outlived the router"
