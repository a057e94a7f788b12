"""The MCP server's pieces without llama.cpp: system probes, HTTP security settings, argument and
provider resolution, secret redaction (in-process, through the SDK's own client), CLI checks."""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from corral.cli import app
from corral.config import Secret, load_settings, public_url
from corral.mcp import build_server
from corral.mcp.http import is_loopback, security_settings
from corral.mcp.pool import ArgumentError, ClientPool
from corral.mcp.system import cpu_info, gpu_info, memory_info
from corral.redaction import Redactor
from mcp import Client as McpClient

SECRET = "sk-live-abcdefghijklmnopqrstuvwxyz0123"


# -- system ---------------------------------------------------------------------------------------------------


def test_memory_from_proc_meminfo(tmp_path: Path) -> None:
    f = tmp_path / "meminfo"
    f.write_text("MemTotal:       24684084 kB\nMemFree:        22777248 kB\nMemAvailable:   23655732 kB\n")
    m = memory_info(f)
    assert m.total_bytes == 24684084 * 1024 and m.available_bytes == 23655732 * 1024


def test_memory_without_memavailable_uses_memfree(tmp_path: Path) -> None:
    f = tmp_path / "meminfo"
    f.write_text("MemTotal: 2048 kB\nMemFree: 1024 kB\n")
    assert memory_info(f).available_bytes == 1024 * 1024


def test_memory_fallback_without_proc(tmp_path: Path) -> None:
    m = memory_info(tmp_path / "missing")
    assert m.source in ("sysconf", "none")
    if m.source == "sysconf":
        assert m.total_bytes and m.total_bytes > 0


def test_cpu_info(tmp_path: Path) -> None:
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n")
    c = cpu_info(f)
    assert c.model == "AMD EPYC 7B13" and c.cores >= 1 and c.architecture
    assert cpu_info(tmp_path / "missing").model  # platform's answer, or "unknown"


def fake_nvidia_smi(bin_dir: Path, script: str) -> None:
    exe = bin_dir / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\n{script}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)


def test_gpu_info_from_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvidia_smi(
        tmp_path, "echo 'NVIDIA GeForce RTX 4090, 24564, 1021, 550.54.14'\necho 'Tesla T4, [N/A], 0, 550.54.14'"
    )
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    gpus = gpu_info()
    assert [g.name for g in gpus] == ["NVIDIA GeForce RTX 4090", "Tesla T4"]
    assert gpus[0].memory_total_mib == 24564 and gpus[0].memory_used_mib == 1021 and gpus[0].driver == "550.54.14"
    assert gpus[1].memory_total_mib is None


def test_gpu_info_when_nvidia_smi_fails_or_is_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvidia_smi(tmp_path, "echo 'NVIDIA-SMI has failed' >&2; exit 9")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpu_info() == []
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert gpu_info() == []


# -- HTTP security ----------------------------------------------------------------------------------------------


def test_security_settings() -> None:
    s = security_settings("127.0.0.1", allowed_origins=["https://app.example"])
    assert s.enable_dns_rebinding_protection
    assert "127.0.0.1:*" in s.allowed_hosts and "localhost:*" in s.allowed_hosts and "[::1]:*" in s.allowed_hosts
    assert "http://localhost:*" in s.allowed_origins and "https://app.example" in s.allowed_origins
    assert not any("evil" in o for o in s.allowed_origins)
    public = security_settings("10.0.0.5", allowed_hosts=["mcp.internal:*"])
    assert "10.0.0.5:*" in public.allowed_hosts and "mcp.internal:*" in public.allowed_hosts
    assert "[::1]:*" in security_settings("::1").allowed_hosts


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5") and not is_loopback("example.com")


# -- resolution and redaction -----------------------------------------------------------------------------------


def test_public_url_drops_credentials() -> None:
    assert public_url("http://user:pw@host:8080/v1") == "http://host:8080/v1"
    assert public_url("http://host:8080") == "http://host:8080"
    assert public_url(None) is None


def test_redactor() -> None:
    r = Redactor([Secret(SECRET), None, Secret("ab")])
    assert r(f"bad key {SECRET}!") == "bad key ****!"
    assert r("ab stays: too short to be a key") == "ab stays: too short to be a key"
    assert Redactor([])("x") == "x"
    assert Redactor([])("not running at http://me:pw@host:1/v1") == "not running at http://****@host:1/v1"


def test_pool_resolves_configured_names_only() -> None:
    settings = load_settings(
        data={
            "default_provider": "local",
            "providers": {"local": {"type": "llamacpp"}, "llama.cpp": {"type": "llamacpp"}},
        },
        env={},
    )
    pool = ClientPool(settings)
    assert pool.resolve(None) == "local" and pool.resolve("") == "local"
    assert pool.resolve("LLAMA_CPP") == "llama.cpp"  # the env-key spelling of a configured name
    for bad in ("nope", "openai", "llamacpp://evil.example:80"):
        with pytest.raises(ArgumentError, match=r"^provider: unknown provider"):
            pool.resolve(bad)


def test_pool_zero_setup_default() -> None:
    pool = ClientPool(load_settings(data={}, env={}))
    assert pool.names == ["default"] and pool.default == "default" and pool.type_of("default") == "zero-setup"


# -- in process, through the SDK client: no key ever reaches the caller --------------------------------------------


class _EchoKey(BaseHTTPRequestHandler):
    """A server that rejects every request and quotes the Authorization header back."""

    def _reject(self) -> None:
        body = json.dumps({"error": {"message": f"invalid key {self.headers.get('Authorization')}"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _reject

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def echo_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _EchoKey)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_no_key_in_any_answer(echo_server: str) -> None:
    settings = load_settings(
        data={
            "default_provider": "cloud",
            "providers": {
                "cloud": {"type": "openai", "base_url": echo_server + "/v1", "api_key": SECRET, "max_retries": 0},
                "down": {"type": "llamacpp", "base_url": "http://user:hunter2pass@127.0.0.1:9", "max_retries": 0},
            },
        },
        env={},
    )
    server, pool = build_server(settings)
    try:
        async with McpClient(server) as client:
            chat = await client.call_tool("chat_completion", {"prompt": "hi", "max_tokens": 2})
            models = await client.call_tool("list_available_models", {})
            info = await client.call_tool("get_system_info", {})
    finally:
        await pool.aclose()
    assert chat.is_error
    text = chat.content[0].model_dump_json()
    assert "invalid key" in text and "****" in text
    for result in (chat, models, info):
        dumped = result.model_dump_json()
        assert SECRET not in dumped and "hunter2pass" not in dumped
    assert not models.is_error and not info.is_error
    providers = {p["name"]: p for p in (models.structured_content or {})["providers"]}
    assert not providers["cloud"]["ok"] and not providers["down"]["ok"]


# -- the command ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("installed", "message"),
    [
        (None, "corral mcp needs the mcp extra: pip install 'corral[mcp]'"),
        ("1.26.0", "corral mcp needs mcp 2 (installed: 1.26.0)"),
    ],
)
def test_missing_extra_is_one_line(monkeypatch: pytest.MonkeyPatch, installed: str | None, message: str) -> None:
    from corral.cli import mcp_cmd

    for name in [m for m in sys.modules if m == "mcp" or m.startswith(("mcp.", "corral.mcp"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mcp", None)  # import mcp -> ImportError
    monkeypatch.setattr(mcp_cmd, "_installed_mcp", lambda: installed)
    r = CliRunner().invoke(app, ["mcp"])
    assert r.exit_code == 1
    assert r.output.count("\n") == 1 and message in r.output


@pytest.mark.parametrize(
    ("args", "toml", "message"),
    [
        (["--host", "127.0.0.1"], "", "--host and --port need --http"),
        (["--http", "--log-level", "loud"], "", "--log-level must be one of"),
        (["--http"], "[mcp]\nport = 'x'\n", "mcp.port must be a port number"),
        (["--http"], "[mcp]\nallowed_origins = 'x'\n", "mcp.allowed_origins must be a list of strings"),
        (["--http", "--host", "0.0.0.0"], "", "refusing to serve MCP on 0.0.0.0 without a key"),
    ],
)
def test_bad_options(tmp_path: Path, args: list[str], toml: str, message: str) -> None:
    config = tmp_path / "corral.toml"
    config.write_text(toml)
    r = CliRunner().invoke(app, ["mcp", "--config", str(config), *args], env={"CORRAL_MCP_KEY": ""})
    assert r.exit_code == 1, r.output
    assert message in r.output


class _Slots(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the stdlib's name
        body = json.dumps([{"id": 0, "n_ctx": 512, "is_processing": True}, {"id": 1, "n_ctx": 512}]).encode()
        self.send_response(200 if self.path == "/slots" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


async def test_system_info_shows_each_replica() -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Slots)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    settings = load_settings(
        data={
            "providers": {
                "up": {"type": "llamacpp", "base_url": f"http://127.0.0.1:{httpd.server_address[1]}"},
                "down": {"type": "llamacpp", "base_url": "http://127.0.0.1:9"},
            },
            "models": {"duo": {"provider": ["up", "down"], "balance": "least-loaded"}},
        },
        env={},
    )
    server, pool = build_server(settings)
    try:
        async with McpClient(server) as client:
            info = await client.call_tool("get_system_info", {})
    finally:
        await pool.aclose()
        httpd.shutdown()
        httpd.server_close()
    assert not info.is_error
    [duo] = info.structured_content["replicated_models"]  # type: ignore[index]
    assert duo["model"] == "duo" and duo["balance"] == "least-loaded"
    state = {r["name"]: r for r in duo["replicas"]}
    assert state["up"]["state"] == "healthy" and (state["up"]["slots_busy"], state["up"]["slots_total"]) == (1, 2)
    assert state["down"]["state"] == "ejected"  # refused the poll
