"""The `corral` command as a user runs it: exit codes, one-line errors, streamed output, masked secrets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def corral(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_") or k == "CORRAL_CACHE_DIR"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "corral.cli", *args],
        capture_output=True, text=True, timeout=180, env=full_env, cwd=cwd, input=stdin,
    )  # fmt: skip


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_server_is_one_line_and_exit_1() -> None:
    port = closed_port()
    done = corral("health", "--dsn", f"llamacpp://127.0.0.1:{port}")
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: llama-server not running at http://127.0.0.1:{port}"
    assert "Traceback" not in done.stderr


def test_config_masks_secrets(tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text(
        'default_provider = "cloud"\n[providers.cloud]\ntype = "openai"\n'
        'base_url = "https://api.example.com/v1"\napi_key = "${MY_KEY}"\n'
    )
    secret = "sk-live-0123456789abcdef"
    done = corral("config", "--json", cwd=tmp_path, env={"MY_KEY": secret})
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout
    view = json.loads(done.stdout)
    assert view["selected"]["name"] == "cloud" and view["selected"]["base_url"] == "https://api.example.com/v1"
    assert view["providers"]["cloud"]["api_key"] != secret
    text = corral("config", cwd=tmp_path, env={"MY_KEY": secret})
    assert text.returncode == 0 and secret not in text.stdout and "cloud" in text.stdout


def test_config_masks_base_url_passwords_and_dsn_credentials(tmp_path: Path) -> None:
    """Issue 12 #5: a password in a base URL, and a key given as a DSN's user, never print."""
    (tmp_path / "corral.toml").write_text(
        'default_provider = "vllm"\n[providers.vllm]\ntype = "openai"\n'
        'base_url = "http://ann:pw-canary-31337@127.0.0.1:9/v1"\napi_key = "plain-canary-key-4242"\n'
        '[providers.other]\ndsn = "openai://dsn-canary-token-777@api.example.com/v1"\n'
    )
    for args in (("config",), ("config", "--json")):
        done = corral(*args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        for canary in ("pw-canary-31337", "plain-canary-key-4242", "dsn-canary-token-777"):
            assert canary not in done.stdout, (args, canary)
        assert "ann:****@127.0.0.1:9" in done.stdout  # the user and the host are still shown


def test_env_switches_provider(tmp_path: Path) -> None:
    env = {"CORRAL_DEFAULT_PROVIDER": "llama.cpp", "CORRAL_LLAMA_CPP_BASE_URL": "http://127.0.0.1:9"}
    done = corral("config", "--json", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    sel = json.loads(done.stdout)["selected"]
    assert sel["type"] == "llamacpp" and sel["base_url"] == "http://127.0.0.1:9"


def test_bad_config_is_reported(tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text("default_provider = [unclosed\n")
    done = corral("config", cwd=tmp_path)
    assert done.returncode == 1
    assert "invalid TOML" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.live
def test_chat_streams_a_reply(llama_url: str) -> None:
    dsn = "llamacpp://" + llama_url.split("://", 1)[1]
    done = corral("chat", "--dsn", dsn, "-n", "8", "--temperature", "0", "Say hi.")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    as_json = corral("chat", "--dsn", dsn, "-n", "8", "--temperature", "0", "--json", "Say hi.")
    reply = json.loads(as_json.stdout)
    assert reply["content"].strip() == done.stdout.strip()
    assert reply["usage"]["completion_tokens"] > 0


@pytest.mark.live
def test_interactive_chat_keeps_history(llama_url: str) -> None:
    dsn = "llamacpp://" + llama_url.split("://", 1)[1]
    done = corral("chat", "--dsn", dsn, "-n", "4", stdin="hello\nand again\n/exit\n")
    assert done.returncode == 0, done.stderr
    assert "Ctrl-D" in done.stderr and done.stdout.strip()


@pytest.mark.live
def test_models_and_health_json(llama_url: str, gguf_path: Path) -> None:
    dsn = "llamacpp://" + llama_url.split("://", 1)[1]
    models = json.loads(corral("models", "--dsn", dsn, "--json").stdout)
    assert models[0]["id"].endswith(gguf_path.name) and models[0]["context_length"] == 1024
    health = corral("health", "--dsn", dsn, "--json")
    assert health.returncode == 0 and json.loads(health.stdout)["status"] == "ok"


def test_serve_refuses_an_open_ollama_port_without_keys(tmp_path: Path) -> None:
    config = tmp_path / "corral.toml"
    config.write_text('default_provider = "x"\n[providers.x]\ntype = "llamacpp"\nbase_url = "http://127.0.0.1:9"\n')
    done = corral("serve", "--config", str(config), "--port", str(closed_port()), "--ollama-port", str(closed_port()),
                  "--ollama-host", "0.0.0.0")  # fmt: skip
    assert done.returncode == 1
    assert "refusing to serve on 0.0.0.0 without API keys" in done.stderr and "Traceback" not in done.stderr
