"""The manager with real llama.cpp children (the gemma GGUF under two model names): swaps under
load, and no child outlives the gateway, even when the gateway is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.manager.scheduler import slot_dir_name

from ..gateway.conftest import RunningGateway

pytestmark = pytest.mark.live

SOAK_SECONDS = float(os.environ.get("CORRAL_SOAK_SECONDS", "60"))


def engine_children(parent: int, state_dir: Path) -> list[tuple[int, str]]:
    """(pid, model name) of the manager's llama.cpp children (slot folders under ``state_dir``)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(") ", 1)[1].split()
            if int(fields[1]) != parent or fields[0] == "Z":
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if b"--slot-save-path" in argv:
            slot_dir = Path(argv[argv.index(b"--slot-save-path") + 1].decode())
            if slot_dir.parent == state_dir / "slots":  # not the test session's own servers
                out.append((int(entry), slot_dir.name))  # the slot folder is named after the model
    return out


def test_two_models_one_slot_twenty_clients(gguf_path: Path, tmp_path: Path) -> None:
    models = {name: {"gguf": str(gguf_path), "args": ["-c", "1024", "-np", "4"]} for name in ("left", "right")}
    gw = RunningGateway({"manager": {"max_loaded": 1, "state_dir": str(tmp_path), "models": models}})
    stop = threading.Event()
    failures: list[str] = []
    served: Counter[str] = Counter()
    violations: list[str] = []

    def client(i: int) -> None:
        with httpx.Client(timeout=180) as http:
            n = 0
            while not stop.is_set():
                model = ("left", "right")[(i + n) % 2]
                n += 1
                body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
                try:
                    r = http.post(f"{gw.url}/v1/chat/completions", json=body)
                except httpx.HTTPError as exc:
                    failures.append(f"{model}: {exc!r}")
                    continue
                if r.status_code == 200:
                    served[model] += 1
                else:
                    failures.append(f"{model}: {r.status_code} {r.text[:200]}")

    def sampler() -> None:
        while not stop.is_set():
            kids = engine_children(os.getpid(), tmp_path)
            per_model = Counter(name for _, name in kids)
            if len(kids) > 1 or any(c > 1 for c in per_model.values()):
                violations.append(f"children alive at once: {kids}")
            time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)] + [threading.Thread(target=sampler)]
    try:
        for t in threads:
            t.start()
        time.sleep(SOAK_SECONDS)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=240)
        gw.stop()
    print(f"served per model in {SOAK_SECONDS:g} s: {dict(served)}")
    assert failures == [], failures[:5]
    assert violations == [], violations[:5]
    assert served["left"] > 0 and served["right"] > 0, served
    assert engine_children(os.getpid(), tmp_path) == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sigkill_of_the_gateway_leaves_no_child(gguf_path: Path, tmp_path: Path) -> None:
    config = tmp_path / "corral.toml"
    config.write_text(
        f'[manager]\nmax_loaded = 2\nstate_dir = "{tmp_path}"\n'
        f'[manager.models.one]\ngguf = "{gguf_path}"\nargs = ["-c", "512"]\n'
        f'[manager.models.two]\ngguf = "{gguf_path}"\nargs = ["-c", "512"]\n'
    )
    port = free_port()
    gateway = subprocess.Popen(
        [sys.executable, "-m", "corral.cli", "serve", "--config", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        for model in ("one", "two"):
            assert httpx.post(f"{url}/models/{model}/load", timeout=120).status_code == 200
        running = httpx.get(f"{url}/running").json()["running"]
        pids = [m["pid"] for m in running]
        assert len(pids) == 2 and all(isinstance(p, int) for p in pids)
        gateway.send_signal(signal.SIGKILL)
        gateway.wait(timeout=10)
        deadline = time.monotonic() + 10
        alive = pids
        while alive and time.monotonic() < deadline:
            alive = [p for p in pids if _exists(p)]
            time.sleep(0.1)
        assert alive == [], f"children {alive} outlived the killed gateway"
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait()


def _exists(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(") ", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie re-parented to init has exited; reaping it is init's job


def test_slot_save_passthrough_per_model(gguf_path: Path, tmp_path: Path) -> None:
    models: dict[str, Any] = {"kv": {"gguf": str(gguf_path), "args": ["-c", "512"]}}
    gw = RunningGateway({"manager": {"state_dir": str(tmp_path), "models": models}})
    try:
        body = {"model": "kv", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "id_slot": 0}
        assert httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=120).status_code == 200
        r = httpx.post(f"{gw.url}/upstream/kv/slots/0?action=save", json={"filename": "s.bin"}, timeout=30)
        assert r.status_code == 200 and r.json()["n_saved"] > 0
        assert (tmp_path / "slots" / slot_dir_name("kv") / "s.bin").is_file()  # each model has its own slot folder
        r = httpx.post(f"{gw.url}/upstream/kv/slots/0?action=restore", json={"filename": "s.bin"}, timeout=30)
        assert r.status_code == 200 and r.json()["n_restored"] > 0
    finally:
        gw.stop()
