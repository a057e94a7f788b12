"""`corral mcp --http` (streamable HTTP) as a child process: the SDK client, the Host/Origin checks,
the bearer key, and the refusal to bind a public address without one."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import MCP_KEY, HttpServer, http_session, post_mcp, server_env, write_config
from .test_stdio_live import SIX, ok

pytestmark = [pytest.mark.live, pytest.mark.timeout(240)]


async def test_tools_chat_and_stream_over_http(http_server: HttpServer) -> None:
    seen: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message)

    async with http_session(http_server.url) as session:
        tools = (await session.list_tools()).tools
        chat = ok(await session.call_tool("chat_completion", {"prompt": "Say hi.", "max_tokens": 8}))
        stream = ok(
            await session.call_tool(
                "stream_chat", {"prompt": "Count: one two", "max_tokens": 8}, progress_callback=on_progress
            )
        )
        bad = await session.call_tool("chat_completion", {"prompt": "hi", "max_tokens": -1})
    assert {t.name for t in tools} == SIX
    assert all(t.output_schema for t in tools)
    assert chat["content"].strip() and chat["usage"]["completion_tokens"] > 0
    assert seen and seen[-1] == stream["content"]
    assert bad.is_error


def test_foreign_origin_is_403_and_foreign_host_421(http_server: HttpServer) -> None:
    assert post_mcp(http_server.url, {"Origin": "http://evil.example"}).status_code == 403
    assert post_mcp(http_server.url, {"Origin": "http://evil.example:80"}).status_code == 403
    # DNS rebinding: the page's name resolves to 127.0.0.1, but the Host header still names it
    assert post_mcp(http_server.url, {"Host": f"evil.example:{http_server.port}"}).status_code == 421
    # a local page and a plain client (no Origin) are fine
    assert post_mcp(http_server.url, {"Origin": f"http://localhost:{http_server.port}"}).status_code == 200
    assert post_mcp(http_server.url, {}).status_code == 200


@pytest.fixture(scope="module")
def keyed_server(mcp_config: Path) -> Iterator[HttpServer]:
    server = HttpServer(mcp_config, "--api-key", MCP_KEY)
    try:
        yield server
    finally:
        server.stop()


async def test_api_key_required(keyed_server: HttpServer) -> None:
    url = keyed_server.url
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": MCP_KEY}):
        r = post_mcp(url, headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert MCP_KEY not in r.text
    assert post_mcp(url, {"Authorization": f"Bearer {MCP_KEY}"}).status_code == 200
    # the Origin check still applies to a keyed request
    assert post_mcp(url, {"Authorization": f"Bearer {MCP_KEY}", "Origin": "http://evil.example"}).status_code == 403
    async with http_session(url, {"Authorization": f"Bearer {MCP_KEY}"}) as session:
        assert {t.name for t in (await session.list_tools()).tools} == SIX


def test_api_key_from_config(llama_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "corral.toml", llama_url, extra='\n[mcp]\napi_key = "${TEST_MCP_KEY}"\n')
    server = HttpServer(config, env={"TEST_MCP_KEY": MCP_KEY})
    try:
        assert post_mcp(server.url, {}).status_code == 401
        assert post_mcp(server.url, {"Authorization": f"Bearer {MCP_KEY}"}).status_code == 200
    finally:
        server.stop()


def test_refuses_public_host_without_key(mcp_config: Path) -> None:
    corral = Path(sys.executable).parent / "corral"
    r = subprocess.run(
        [str(corral), "mcp", "--config", str(mcp_config), "--http", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(),
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 1
    assert "refusing to serve MCP on 0.0.0.0 without a key" in r.stderr
