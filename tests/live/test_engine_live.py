"""The embedded engine, zero-setup default, auth and faults, on the real llama.cpp server code."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import corral
from corral import Client, ContentDelta

from ..conftest import start_engine

pytestmark = pytest.mark.live


def _gone(pid: int, wait: float = 10.0) -> bool:
    """True once the process has exited. A process of ours must also be reaped (no zombie); one
    re-parented elsewhere may linger as a zombie until its new parent reaps it, which is not ours to do."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(") ", 1)[1].split()
        except FileNotFoundError:
            return True
        state, ppid = fields[0], int(fields[1])
        if state == "Z" and ppid != os.getpid():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_embedded_dsn_chats_and_close_reaps_the_child(gguf_path: Path) -> None:
    client = Client(f"embedded://{gguf_path}")
    r = client.chat("hi", max_tokens=4, temperature=0)
    assert r.usage.completion_tokens > 0 and r.provider == "embedded"
    engine = client._engine
    assert engine is not None and engine.pid is not None
    pid = engine.pid
    client.close()
    assert _gone(pid)


def test_engine_with_api_key_rejects_wrong_key(gguf_path: Path) -> None:
    engine = start_engine(gguf_path, "-c", "512", api_key="sekrit-key-123")
    try:
        base = f"llamacpp://{engine.url.split('://', 1)[1]}"
        with pytest.raises(corral.Authentication) as info:
            Client(base, api_key="wrong").chat("hi", max_tokens=2)
        assert info.value.status == 401
        assert "sekrit" not in str(info.value)
        assert Client(base, api_key="sekrit-key-123").chat("hi", max_tokens=2).content is not None
    finally:
        engine.stop()


def test_server_killed_mid_stream_raises_not_hangs(gguf_path: Path) -> None:
    engine = start_engine(gguf_path, "-c", "1024")
    assert engine.proc is not None
    proc = engine.proc
    try:
        client = Client(f"llamacpp://{engine.url.split('://', 1)[1]}", timeout=20)
        got: list[str] = []
        started = time.monotonic()
        stream = client.stream("Write a long story about the sea.", max_tokens=500, temperature=0)
        with pytest.raises(corral.CorralError) as info, stream as s:  # the kill happens mid-iteration
            for event in s:
                if isinstance(event, ContentDelta):
                    got.append(event.text)
                    if len(got) == 3:
                        os.kill(proc.pid, signal.SIGKILL)
        assert got, "the stream never started"
        assert isinstance(info.value, (corral.ResponseError, corral.ConnectionFailed))
        assert time.monotonic() - started < 15
    finally:
        engine.stop()
    assert proc.poll() is not None  # reaped by stop()


def test_zero_setup_default_uses_embedded_engine_and_leaves_no_child(tmp_path: Path, gguf_path: Path) -> None:
    """`Client()` with nothing configured: llama-server on :8080 if one answers, else the embedded engine."""
    with socket.socket() as s:
        port_8080_busy = s.connect_ex(("127.0.0.1", 8080)) == 0
    script = textwrap.dedent(
        """
        import json, os, corral
        c = corral.Client()
        r = c.chat("Say hello.", max_tokens=8, temperature=0)
        engine = c._engine
        print(json.dumps({"provider": r.provider, "tokens": r.usage.completion_tokens,
                          "child": engine.pid if engine else None}))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_") or k == "CORRAL_CACHE_DIR"}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    env.setdefault("CORRAL_CACHE_DIR", str(gguf_path.parent.parent))  # reuse the assembled model
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["tokens"] > 0
    if port_8080_busy:
        assert report["provider"] == "llamacpp"
    else:
        assert report["provider"] == "embedded"
        assert report["child"] and _gone(report["child"])


def test_parent_killed_child_engine_exits(tmp_path: Path, gguf_path: Path) -> None:
    """SIGKILL of the Python process that owns an embedded engine leaves no engine behind."""
    script = textwrap.dedent(
        f"""
        import sys, time, corral
        c = corral.Client("embedded://{gguf_path}")
        c.health()
        print(c._engine.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        os.kill(child, 0)  # alive while the parent lives
        parent.kill()
        parent.wait(timeout=10)
        if not _gone(child):
            os.kill(child, signal.SIGKILL)
            pytest.fail("embedded engine outlived its killed parent")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
