"""An embedded engine started for a tool call goes away with the MCP server: when the client
closes stdio, and when the HTTP server gets SIGTERM."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from .conftest import HttpServer, http_session, stdio_session
from .test_stdio_live import ok

pytestmark = [pytest.mark.live, pytest.mark.timeout(240)]


def descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # the command name may hold spaces and parentheses: the fields after the last ")"
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found.add(child)
                frontier.append(child)
    return found


def engines(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            if b"corral.manager.engine_child" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.add(pid)
        except OSError:
            continue
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_gone(pids: set[int], timeout: float = 20) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return {p for p in pids if alive(p)}


@pytest.fixture
def embedded_config(gguf_path: Path, tmp_path: Path) -> Path:
    path = tmp_path / "corral.toml"
    path.write_text(
        f"""
[providers.tiny]
type = "embedded"
gguf = "{gguf_path}"
args = ["-c", "512", "-np", "1"]
"""
    )
    return path


async def test_stdio_close_reaps_the_engine(embedded_config: Path) -> None:
    before = descendants(os.getpid())
    async with stdio_session(embedded_config) as session:
        ok(await session.call_tool("chat_completion", {"prompt": "Hi", "max_tokens": 2}))
        started = engines(descendants(os.getpid()) - before)
        assert started, "no embedded engine was started"
    assert wait_gone(started) == set()


async def test_http_sigterm_reaps_the_engine(embedded_config: Path) -> None:
    server = HttpServer(embedded_config, "--log-level", "info")
    try:
        async with http_session(server.url) as session:
            ok(await session.call_tool("chat_completion", {"prompt": "Hi", "max_tokens": 2}))
        started = engines(descendants(server.proc.pid))
        assert started, "no embedded engine was started"
    finally:
        server.stop()
    # uvicorn shuts down gracefully, then re-raises the signal: -SIGTERM is the clean outcome
    assert server.proc.returncode in (0, -signal.SIGTERM)
    assert "closed 1 provider client(s)" in server.stderr()  # the engine was released, not orphaned
    assert wait_gone(started) == set()
