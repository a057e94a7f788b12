"""`corral doctor` on broken set-ups: each problem is found, said with its fix, and fails the exit
code when it is a failure (warnings alone do not)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .test_cli import closed_port, corral


def doctor(tmp_path: Path, toml: str, **env: str) -> tuple[int, dict[str, list[dict[str, str]]]]:
    (tmp_path / "corral.toml").write_text(toml)
    full = {"CORRAL_CACHE_DIR": str(tmp_path / "cache"), "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path),
            **env}  # fmt: skip
    done = corral("doctor", "--json", env=full, cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    report = json.loads(done.stdout)
    by: dict[str, list[dict[str, str]]] = {}
    for f in report["checks"]:
        by.setdefault(f["check"], []).append(f)
    assert report["ok"] == (done.returncode == 0)
    return done.returncode, by


def test_invalid_toml_fails(tmp_path: Path) -> None:
    code, by = doctor(tmp_path, "default_provider = [oops\n")
    assert code == 1 and by["config"][0]["level"] == "fail" and "invalid TOML" in by["config"][0]["detail"]


def test_unreachable_provider_fails_with_the_fix(tmp_path: Path) -> None:
    port = closed_port()
    code, by = doctor(tmp_path, f'[providers.local]\ntype = "llamacpp"\nbase_url = "http://127.0.0.1:{port}"\n')
    [f] = by["provider local"]
    assert code == 1 and f["level"] == "fail" and f"127.0.0.1:{port}" in f["detail"] and "start the server" in f["fix"]


@pytest.fixture
def refusing_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            body = b'{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_refused_key_fails_and_is_never_printed(tmp_path: Path, refusing_server: str) -> None:
    toml = f'[providers.cloud]\ntype = "openai"\nbase_url = "{refusing_server}"\napi_key = "sk-secret-0123456789"\n'
    code, by = doctor(tmp_path, toml)
    [f] = by["provider cloud"]
    assert code == 1 and f["level"] == "fail" and "refused the key" in f["detail"] and "api_key" in f["fix"]
    assert "sk-secret-0123456789" not in json.dumps(by)


def test_managed_models_broken_gguf_unknown_flag_unpulled(tmp_path: Path, gguf_path: Path) -> None:
    truncated = tmp_path / "cut.gguf"
    with gguf_path.open("rb") as src:
        truncated.write_bytes(src.read(2_000_000))
    toml = f"""
[manager.models.cut]
gguf = "{truncated}"
[manager.models.flags]
gguf = "{gguf_path}"
args = ["-c", "512", "--flash-atn", "on"]
[manager.models.later]
gguf = "hf://acme/tiny-GGUF:Q4_K_M"
[manager.models.missing]
gguf = "{tmp_path / 'nope.gguf'}"
"""
    code, by = doctor(tmp_path, toml)
    assert code == 1
    cut = by["model cut"][0]
    assert cut["level"] == "fail" and "truncated" in cut["detail"]
    assert by["model flags"][0]["level"] == "ok"
    args = by["model flags: args"][0]
    assert args["level"] == "fail" and "--flash-atn (did you mean --flash-attn?)" in args["detail"]
    later = by["model later"][0]
    assert later["level"] == "warn" and later["fix"] == "corral pull acme/tiny-GGUF:Q4_K_M"
    assert by["model missing"][0]["level"] == "fail"


def test_cache_with_an_unfinished_download_and_a_taken_port_warns(tmp_path: Path) -> None:
    partial = tmp_path / "cache" / "hub" / "acme--tiny-GGUF" / "tiny-Q4_K_M.gguf.0123456789abcdef.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"x" * 1000)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _, by = doctor(tmp_path, f'[gateway]\nport = {port}\n[providers.x]\ntype = "llamacpp"\n'
                          f'base_url = "http://127.0.0.1:{closed_port()}"\n')  # fmt: skip
    assert by["cache: downloads"][0]["level"] == "warn" and "resume" in by["cache: downloads"][0]["fix"]
    assert by["gateway port"][0]["level"] == "warn" and f":{port} is taken" in by["gateway port"][0]["detail"]


@pytest.mark.live
def test_healthy_llama_server_passes_with_its_features(tmp_path: Path, llama_url: str) -> None:
    code, by = doctor(tmp_path, f'[providers.local]\ntype = "llamacpp"\nbase_url = "{llama_url}"\n')
    assert code == 0, by
    assert by["provider local"][0]["level"] == "ok" and "1 model(s)" in by["provider local"][0]["detail"]
    assert "context 1024 tokens, 2 slot(s)" in by["provider local: /props"][0]["detail"]
    assert by["provider local: embeddings"][0]["level"] == "ok"
    # this server has no tool-capable template: said, with the fix, as a warning
    assert by["provider local: tools"][0]["level"] == "warn" and "--jinja" in by["provider local: tools"][0]["fix"]
