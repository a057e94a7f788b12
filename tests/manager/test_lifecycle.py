"""One lifecycle record for corral's manager, llama-swap and router mode; and cold loads of
hf:// models (503 + Retry-After while they download), with fake servers and a fake Hub."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.errors import ModelLoading, ServerError
from corral.manager.lifecycle import ModelStatus, from_llamaswap_running, from_router_models, from_scheduler
from corral.manager.scheduler import Scheduler
from corral.manager.spec import ManagerSettings, ModelSpec

from ..hub.fake_hub import FakeFile, FakeHub, FakeRepo

FAKE = (sys.executable, str(Path(__file__).with_name("fake_llama_server.py")), "--mode", "ok")


def _scheduler(tmp_path: Path, **models: ModelSpec) -> Scheduler:
    return Scheduler(ManagerSettings(models=models, max_loaded=2, load_timeout=30), state_dir=tmp_path)


async def test_manager_models_as_lifecycle_records(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    sched = _scheduler(
        tmp_path,
        a=ModelSpec("a", gguf, ("-c", "2048"), ttl=300, aliases=("gpt-x",), engine=FAKE),
        b=ModelSpec("b", gguf, engine=FAKE),
    )
    try:
        assert [(s.id, s.status) for s in from_scheduler(sched)] == [("a", "unloaded"), ("b", "unloaded")]
        await sched.load("gpt-x")
        a, b = from_scheduler(sched)
        assert (a.id, a.status, a.aliases, a.ctx, a.source) == ("a", "loaded", ("gpt-x",), 2048, "manager")
        assert a.ttl_remaining is not None and 290 < a.ttl_remaining <= 300
        assert a.memory is not None and a.memory > 1_000_000  # the child's resident memory
        assert b.status == "unloaded" and b.ttl_remaining is None and b.memory is None
        later = from_scheduler(sched, now=time.monotonic() + 100)[0]
        assert later.ttl_remaining is not None and 190 < later.ttl_remaining <= 200
        await sched.unload("a")
        assert from_scheduler(sched)[0].status == "unloaded"
    finally:
        await sched.aclose()


def test_router_and_llamaswap_lists_become_the_same_record() -> None:
    router = {"data": [
        {"id": "alpha", "status": {"value": "loaded", "args": ["llama-server", "-c", "512"]}},
        {"id": "beta", "status": {"value": "loading", "args": ["llama-server"]}},
        {"id": "gamma", "status": {"value": "unloaded", "args": ["llama-server"], "failed": True, "exit_code": 1}},
        {"id": "plain-llama-server-model"},  # an ordinary server's entry: no lifecycle
    ]}  # fmt: skip
    got = from_router_models(router)
    assert [(s.id, s.status, s.ctx, s.source) for s in got] == [
        ("alpha", "loaded", 512, "router"), ("beta", "loading", None, "router"), ("gamma", "unloaded", None, "router")
    ]
    assert got[2].error == "failed to load (exit code 1)"
    swap = from_llamaswap_running(
        {"running": [{"model": "qwen", "state": "ready", "cmd": "llama-server -m q.gguf -c 8192"},
                     {"model": "coder", "state": "starting"}]},
        [{"id": "qwen"}, {"id": "coder"}, {"id": "idle", "aliases": ["i"]}],
    )  # fmt: skip
    assert [(s.id, s.status, s.ctx) for s in swap] == [
        ("coder", "loading", None), ("idle", "unloaded", None), ("qwen", "loaded", 8192)
    ]
    assert all(isinstance(s, ModelStatus) for s in [*got, *swap])
    assert set(got[0].as_dict()) == {"id", "status", "aliases", "ctx", "ttl_remaining", "memory", "source", "error"}


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    monkeypatch.setenv("CORRAL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    fake = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    yield fake
    fake.stop()


async def test_hf_model_cold_load_is_503_with_retry_after_then_runs(hub: FakeHub, tmp_path: Path) -> None:
    hub.repos["acme/tiny-GGUF"] = FakeRepo({"tiny-Q4_K_M.gguf": FakeFile(b"GGUF" + b"x" * 5000)})
    from corral.config import load_settings

    cfg = load_settings(data={"manager": {"models": {"tiny": {"gguf": "hf://acme/tiny-GGUF:Q4_K_M"}}}})
    manager = ManagerSettings.from_settings(cfg)
    spec = manager.models["tiny"]
    assert spec.source == "hf://acme/tiny-GGUF:Q4_K_M"
    sched = Scheduler(ManagerSettings(models={"tiny": ModelSpec(**{**_fields(spec), "engine": FAKE})},
                                      load_timeout=30), state_dir=tmp_path)  # fmt: skip
    try:
        with pytest.raises(ModelLoading) as info:
            await sched.acquire("tiny")
        assert info.value.status == 503 and info.value.retry_after == 5.0 and "being downloaded" in str(info.value)
        deadline = time.monotonic() + 30
        while True:
            try:
                lease = await sched.acquire("tiny")
                break
            except ModelLoading:
                assert time.monotonic() < deadline, "the pull never finished"
                await asyncio.sleep(0.1)
        lease.release()
        assert from_scheduler(sched)[0].status == "loaded"
        assert [p.spec.gguf.name for p in sched.processes()] == ["tiny-Q4_K_M.gguf"]
    finally:
        await sched.aclose()


async def test_failed_pull_is_reported_to_the_next_request_and_retried(hub: FakeHub, tmp_path: Path) -> None:
    spec = ModelSpec("gated", Path("unused.gguf"), engine=FAKE, source="hf://acme/gated-GGUF:Q4_K_M")
    hub.repos["acme/gated-GGUF"] = FakeRepo({"g-Q4_K_M.gguf": FakeFile(b"GGUF")}, gated_token="hf_ok")
    sched = Scheduler(ManagerSettings(models={"gated": spec}), state_dir=tmp_path)
    try:
        with pytest.raises(ModelLoading):
            await sched.acquire("gated")
        deadline = time.monotonic() + 30
        while True:
            try:
                await sched.acquire("gated")
            except ModelLoading:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
                continue
            except ServerError as exc:
                assert exc.status == 502 and "gated" in str(exc) and "HF_TOKEN" in str(exc)
                break
        with pytest.raises(ModelLoading):  # forgotten: the next request starts a new pull
            await sched.acquire("gated")
    finally:
        await sched.aclose()


def _fields(spec: ModelSpec) -> dict[str, object]:
    return {f: getattr(spec, f) for f in ModelSpec.__dataclass_fields__}
