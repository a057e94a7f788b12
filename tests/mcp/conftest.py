"""`corral mcp` as a real child process, driven by the official MCP SDK's client.

Stdio: the SDK's `stdio_client` spawns `python -m corral.cli mcp --config F` and reaps it on exit.
HTTP: we spawn `corral mcp --http --port P` ourselves and reap it by PID in a finally block.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

MCP_KEY = "mcp-test-key-0123456789abcdef"
DOWN_URL = "http://127.0.0.1:9"  # discard port: nothing listens, connection refused at once


def write_config(path: Path, llama_url: str, *, extra: str = "") -> Path:
    path.write_text(
        f"""
default_provider = "local"

[providers.local]
type = "llamacpp"
base_url = "{llama_url}"
timeout = 120

[providers.down]
type = "llamacpp"
base_url = "{DOWN_URL}"
max_retries = 0
{extra}
"""
    )
    return path


@pytest.fixture(scope="session")
def mcp_config(llama_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("mcp") / "corral.toml", llama_url)


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CORRAL_CONFIG", None)
    env.pop("CORRAL_DEFAULT_PROVIDER", None)
    env.pop("CORRAL_MCP_KEY", None)
    return env


@asynccontextmanager
async def stdio_session(config: Path) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "corral.cli", "mcp", "--config", str(config)], env=server_env()
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class HttpServer:
    """`corral mcp --http` in a child process; `stop()` reaps it by PID."""

    def __init__(self, config: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        corral = Path(sys.executable).parent / "corral"
        # a file, not a pipe: a chatty server never blocks on a full pipe nobody reads
        self._log = tempfile.TemporaryFile()  # noqa: SIM115  # lives as long as the server; stop() keeps it readable
        self.proc = subprocess.Popen(
            [str(corral), "mcp", "--config", str(config), "--http", "--port", str(self.port), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env={**server_env(), **(env or {})},
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"corral mcp exited: {self.stderr()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("corral mcp --http did not start listening")

    def stderr(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)  # uvicorn's graceful shutdown: the pool is closed
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


@pytest.fixture(scope="module")
def http_server(mcp_config: Path) -> Iterator[HttpServer]:
    server = HttpServer(mcp_config)
    try:
        yield server
    finally:
        server.stop()


@asynccontextmanager
async def http_session(url: str, headers: dict[str, str] | None = None) -> AsyncIterator[ClientSession]:
    import httpx2

    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def initialize_body() -> dict[str, object]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "0"},
        },
    }


def post_mcp(url: str, headers: dict[str, str]) -> httpx.Response:
    """A plain POST of an initialize request, as a browser or curl would send it."""
    return httpx.post(
        url,
        json=initialize_body(),
        headers={"Accept": "application/json, text/event-stream", **headers},
        timeout=30,
    )


@pytest.fixture(scope="session")
def served_model(llama_url: str) -> str:
    from corral import Client

    with Client(f"llamacpp://{llama_url.split('://', 1)[1]}") as client:
        return client.models()[0].id
