"""The model manager behind the gateway, with fake llama-servers for the faults a real one has:
slow loads, hangs, refusals to start, crashes mid-request."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import corral
from corral.config import Settings
from corral.errors import ConfigurationError
from corral.manager.spec import ManagerSettings

from ..gateway.conftest import RunningGateway

FAKE = str(Path(__file__).with_name("fake_llama_server.py"))


def fake(mode: str, *extra: str) -> list[str]:
    return [sys.executable, FAKE, "--mode", mode, *extra]


def chat(url: str, model: str, timeout: float = 60) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=timeout)


def children(state: str | None = None) -> list[tuple[int, str]]:
    """(pid, state letter) of this process's children."""
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and (state is None or fields[0] == state):
            out.append((int(entry), fields[0]))
    return out


@pytest.fixture
def gguf(tmp_path: Path) -> str:
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"GGUF")
    return str(path)


@pytest.fixture
def faults(gguf: str, tmp_path: Path) -> Any:
    models = {
        "ok": {"gguf": gguf, "engine": fake("ok"), "aliases": ["gpt-4o-mini"]},
        "slow": {"gguf": gguf, "engine": fake("slow", "--delay", "1.5")},
        "hang": {"gguf": gguf, "engine": fake("hang")},
        "refuses": {"gguf": gguf, "engine": fake("die")},
        "crashy": {"gguf": gguf, "engine": fake("ok", "--crash-once", str(tmp_path / "crashed"))},
        "short": {"gguf": gguf, "engine": fake("ok"), "ttl": 1},
    }
    gw = RunningGateway(
        {"manager": {"max_loaded": 2, "load_timeout": 3, "stop_grace": 2, "state_dir": str(tmp_path), "models": models}}
    )
    yield gw
    gw.stop()


def test_first_request_starts_the_model_and_aliases_route_to_it(faults: RunningGateway) -> None:
    r = chat(faults.url, "gpt-4o-mini")
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "fake answer"
    running = httpx.get(f"{faults.url}/running").json()["running"]
    assert [(m["model"], m["state"]) for m in running] == [("ok", "ready")]


def test_loading_is_waiting_not_failure(faults: RunningGateway) -> None:
    started = time.monotonic()
    r = chat(faults.url, "slow")
    assert r.status_code == 200
    assert time.monotonic() - started >= 1.4  # it waited through the 503 "loading" answers


@pytest.mark.parametrize(
    ("model", "reason"),
    [("hang", "not healthy within 3 s"), ("refuses", "exited with code 3 while starting: fake: refusing to start")],
)
def test_a_model_that_cannot_start_gives_a_clear_error(faults: RunningGateway, model: str, reason: str) -> None:
    r = chat(faults.url, model)
    assert r.status_code == 502
    message = r.json()["error"]["message"]
    assert f"model {model!r} failed to start" in message and reason in message
    assert httpx.get(f"{faults.url}/running").json()["running"] == []  # nothing left half-started


def test_a_crash_mid_request_is_reported_and_the_next_request_restarts(faults: RunningGateway) -> None:
    first = chat(faults.url, "crashy")
    assert first.status_code == 502
    assert "closed the stream before it was complete" in first.json()["error"]["message"]
    time.sleep(0.3)  # the exit is noticed by the child's watcher
    assert all(m["model"] != "crashy" for m in httpx.get(f"{faults.url}/running").json()["running"])
    second = chat(faults.url, "crashy")
    assert second.status_code == 200


def test_ttl_unloads_an_idle_model(faults: RunningGateway) -> None:
    assert chat(faults.url, "short").status_code == 200
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        if all(m["model"] != "short" for m in httpx.get(f"{faults.url}/running").json()["running"]):
            break
        time.sleep(0.2)
    else:
        pytest.fail("the model was not unloaded after its ttl")


def test_unload_routes_behave_like_llama_swap(faults: RunningGateway) -> None:
    assert chat(faults.url, "ok").status_code == 200
    assert httpx.post(f"{faults.url}/api/models/unload/ok").text == "OK"
    assert httpx.get(f"{faults.url}/running").json() == {"running": []}
    assert httpx.post(f"{faults.url}/models/ok/load").json() == {"model": "ok", "state": "ready"}
    assert httpx.post(f"{faults.url}/api/models/unload").json() == {"msg": "ok"}
    assert httpx.get(f"{faults.url}/running").json() == {"running": []}
    r = httpx.post(f"{faults.url}/api/models/unload/nope")
    assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
    assert chat(faults.url, "nope").status_code == 404  # only [manager] configured: unknown names are unknown


def test_llama_swap_provider_drives_the_manager(faults: RunningGateway) -> None:
    client = corral.Client(f"llama-swap://{faults.url.split('://', 1)[1]}", model="ok")
    assert client.chat("hi").content == "fake answer"
    assert [m.model for m in client.running()] == ["ok"]
    client.unload("ok")
    assert client.running() == []
    client.chat("hi")
    client.unload()
    assert client.running() == []
    assert {m.id for m in client.models()} >= {"ok", "gpt-4o-mini", "slow"}


def test_start_stop_cycles_leave_no_zombie(gguf: str, tmp_path: Path) -> None:
    gw = RunningGateway(
        {"manager": {"state_dir": str(tmp_path), "models": {"ok": {"gguf": gguf, "engine": fake("ok")}}}}
    )
    try:
        pids = set()
        for _ in range(100):
            assert httpx.post(f"{gw.url}/models/ok/load", timeout=30).status_code == 200
            pids.add(httpx.get(f"{gw.url}/running").json()["running"][0]["pid"])
            assert httpx.post(f"{gw.url}/api/models/unload", timeout=30).status_code == 200
        assert len(pids) == 100  # a new child each cycle
        assert children("Z") == []
        assert not any(pid in pids for pid, _ in children())
    finally:
        gw.stop()


@pytest.mark.parametrize(
    ("args", "flag"), [(["--port", "9"], "--port"), (["--host=0.0.0.0"], "--host"), (["--api-key", "k"], "--api-key")]
)
def test_user_args_cannot_move_the_child(args: list[str], flag: str) -> None:
    with pytest.raises(ConfigurationError, match=f"may not set {flag}"):
        ManagerSettings.from_settings(
            corral.load_settings(data={"manager": {"models": {"m": {"gguf": "x", "args": args}}}})
        )


def test_args_must_be_a_list() -> None:
    with pytest.raises(ConfigurationError, match="not a shell string"):
        ManagerSettings.from_settings(
            corral.load_settings(data={"manager": {"models": {"m": {"gguf": "x", "args": "-c 8"}}}})
        )


def test_groups_decide_what_runs_together(gguf: str, tmp_path: Path) -> None:
    models = {name: {"gguf": gguf, "engine": fake("ok")} for name in ("chat", "embed", "big")}
    models["chat"]["aliases"] = ["gpt-4o-mini"]
    table = {"groups": [["gpt-4o-mini", "embed"]], "stop_grace": 2, "state_dir": str(tmp_path), "models": models}
    gw = RunningGateway({"manager": table})
    try:

        def running() -> list[str]:
            return sorted(m["model"] for m in httpx.get(f"{gw.url}/running").json()["running"])

        assert chat(gw.url, "chat").status_code == 200
        assert chat(gw.url, "embed").status_code == 200
        assert running() == ["chat", "embed"]  # one group: both stay loaded
        assert chat(gw.url, "big").status_code == 200
        assert running() == ["big"]  # in no group: runs alone, the group is swapped out
        assert chat(gw.url, "embed").status_code == 200
        assert running() == ["embed"]
    finally:
        gw.stop()


def test_groups_must_name_configured_models(gguf: str) -> None:
    table = {"groups": [["a", "ghost"]], "models": {"a": {"gguf": gguf}}}
    with pytest.raises(ConfigurationError, match="'ghost'"):
        ManagerSettings.from_settings(Settings(raw={"manager": table}))


def test_a_model_name_never_becomes_a_path() -> None:
    """Issue 12 (low): the slot folder is made from the model name, safely."""
    from corral.manager.scheduler import slot_dir_name

    names = ["../../etc", "a/b", "a_b", "..", "/abs", "ok-name.q4"]
    folders = [slot_dir_name(n) for n in names]
    assert all("/" not in f and f not in (".", "..") and not f.startswith(".") for f in folders)
    assert len(set(folders)) == len(names)  # "a/b" and "a_b" do not share one


def test_replicas_run_n_children_and_conversations_stick(gguf: str, tmp_path: Path) -> None:
    models = {"duo": {"gguf": gguf, "engine": fake("ok"), "replicas": 2, "aliases": ["gpt-4o-mini"]}}
    gw = RunningGateway({"manager": {"stop_grace": 2, "state_dir": str(tmp_path), "models": models}})

    def ask(messages: list[dict[str, str]]) -> int:
        body = {"model": "gpt-4o-mini", "messages": messages, "max_tokens": 4}
        return httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=60).status_code

    try:
        convos = [[{"role": "user", "content": f"topic {n}"}] for n in range(4)]
        for turn in range(3):
            for c in convos:
                assert ask(c) == 200
                c += [{"role": "assistant", "content": "fake answer"}, {"role": "user", "content": f"more {turn}"}]
        running = sorted(m["model"] for m in httpx.get(f"{gw.url}/running").json()["running"])
        assert running == ["duo#1", "duo#2"]  # two children, each on a port corral picked
        state = httpx.get(f"{gw.url}/dashboard/api/state").json()["replicas"]["duo"]["replicas"]
        assert state["duo#1"]["requests"] == state["duo#2"]["requests"] == 6  # two conversations each
        assert state["duo#1"]["cache_hits"] + state["duo#2"]["cache_hits"] == 8  # every follow-up stuck
    finally:
        gw.stop()


def test_replicas_and_concurrency_are_checked() -> None:
    table = {"models": {"m": {"gguf": "/x.gguf", "replicas": 3, "concurrency": 2, "queue": 4}}}
    ms = ManagerSettings.from_settings(Settings(raw={"manager": table}))
    assert ms.replica_groups == {"m": ("m#1", "m#2", "m#3")} and ms.max_loaded == 3
    assert ms.names() == {"m": "m"} and ms.models["m#2"].concurrency == 2
    for bad in ({"replicas": 0}, {"concurrency": 0}, {"queue": -1}):
        with pytest.raises(ConfigurationError):
            ManagerSettings.from_settings(Settings(raw={"manager": {"models": {"m": {"gguf": "/x.gguf", **bad}}}}))
