"""Bad input gets a clear 4xx naming what was wrong, in the caller's protocol's error shape; never a
stack trace, never a key. These never reach a backend (its address is a closed port)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .conftest import GATEWAY_KEY, RunningGateway, gateway_config

UPSTREAM_KEY = "sk-upstream-secret-abcdef123456"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def gw() -> Iterator[RunningGateway]:
    g = RunningGateway(
        gateway_config(
            {
                "local": {
                    "type": "llamacpp",
                    "base_url": f"http://127.0.0.1:{closed_port()}",
                    "api_key": UPSTREAM_KEY,
                    "max_retries": 0,
                }
            },
            gateway={"api_keys": [GATEWAY_KEY], "max_body_bytes": 4096},
            models={"m": {"provider": "local", "aliases": ["gpt-4o"]}},
        )
    )
    yield g
    g.stop()


AUTH = {"authorization": f"Bearer {GATEWAY_KEY}", "content-type": "application/json"}


def post(gw: RunningGateway, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{gw.url}{path}", content=content, headers=headers if headers is not None else AUTH, timeout=10)


def openai_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"])
    assert "Traceback" not in r.text and UPSTREAM_KEY not in r.text and GATEWAY_KEY not in r.text
    return dict(body["error"])


def anthropic_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == "error" and {"type", "message"} <= set(body["error"])
    assert "Traceback" not in r.text and UPSTREAM_KEY not in r.text and GATEWAY_KEY not in r.text
    return dict(body["error"])


GOOD_OPENAI = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
GOOD_ANTHROPIC = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages"),
        ({"temperature": 3}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 0}, "n"),
        ({"n": 17}, "n"),
        ({"stream": "yes"}, "stream"),
        ({"tools": [{"type": "function"}]}, "tools"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"model": 42}, "model"),
    ],
)
def test_openai_invalid_fields_are_named(gw: RunningGateway, change: dict[str, Any], field: str) -> None:
    err = openai_error(post(gw, "/v1/chat/completions", {**GOOD_OPENAI, **change}), 400)
    assert err["type"] == "invalid_request_error"
    assert field in err["message"] and (err["param"] or "").startswith(field)


def test_openai_missing_messages(gw: RunningGateway) -> None:
    err = openai_error(post(gw, "/v1/chat/completions", {"model": "m"}), 400)
    assert "messages" in err["message"] and err["param"] == "messages"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "hologram"}]}]}, "messages"),
        ({"temperature": 1.5}, "temperature"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools"),
    ],
)
def test_anthropic_invalid_fields_are_named(gw: RunningGateway, change: dict[str, Any], field: str) -> None:
    body = {k: v for k, v in {**GOOD_ANTHROPIC, **change}.items() if v is not None}
    err = anthropic_error(post(gw, "/v1/messages", body), 400)
    assert err["type"] == "invalid_request_error" and field in err["message"]


@pytest.mark.parametrize(("path", "shape"), [("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic")])
def test_malformed_json(gw: RunningGateway, path: str, shape: str) -> None:
    r = post(gw, path, b'{"model": "m", "messages": [')
    err = openai_error(r, 400) if shape == "openai" else anthropic_error(r, 400)
    assert "not valid JSON" in err["message"]
    r = post(gw, path, b"[1, 2]")
    err = openai_error(r, 400) if shape == "openai" else anthropic_error(r, 400)
    assert "JSON object" in err["message"]


@pytest.mark.parametrize(("path", "shape"), [("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic")])
def test_unknown_model_is_404(gw: RunningGateway, path: str, shape: str) -> None:
    body = {**(GOOD_OPENAI if shape == "openai" else GOOD_ANTHROPIC), "model": "who-knows"}
    r = post(gw, path, body)
    err = openai_error(r, 404) if shape == "openai" else anthropic_error(r, 404)
    assert "who-knows" in err["message"]
    if shape == "openai":
        assert err["code"] == "model_not_found" and err["param"] == "model"
    else:
        assert err["type"] == "not_found_error"


@pytest.mark.parametrize(("path", "shape"), [("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic")])
def test_oversized_body_is_413_before_parsing(gw: RunningGateway, path: str, shape: str) -> None:
    junk = b"{" + b"x" * 10_000  # not even JSON: the size is refused before anything is parsed
    r = post(gw, path, junk)
    err = openai_error(r, 413) if shape == "openai" else anthropic_error(r, 413)
    assert "4096" in err["message"]


@pytest.mark.parametrize(("path", "shape"), [("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic")])
@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_auth_required(gw: RunningGateway, path: str, shape: str, key: str | None) -> None:
    headers = {"content-type": "application/json"}
    if key:
        headers["x-api-key" if shape == "anthropic" else "authorization"] = (
            key if shape == "anthropic" else f"Bearer {key}"
        )
    r = post(gw, path, GOOD_OPENAI if shape == "openai" else GOOD_ANTHROPIC, headers)
    err = openai_error(r, 401) if shape == "openai" else anthropic_error(r, 401)
    assert "API key" in err["message"]


def test_x_api_key_also_authenticates(gw: RunningGateway) -> None:
    # With a valid key the request gets past auth and fails upstream instead (nothing listens there).
    r = post(gw, "/v1/messages", GOOD_ANTHROPIC, {"x-api-key": GATEWAY_KEY, "content-type": "application/json"})
    err = anthropic_error(r, 502)
    assert "not running" in err["message"]


def test_upstream_unreachable_is_502_without_secrets(gw: RunningGateway) -> None:
    err = openai_error(post(gw, "/v1/chat/completions", GOOD_OPENAI), 502)
    assert "llama-server not running at http://127.0.0.1:" in err["message"]


def test_unknown_route_and_method(gw: RunningGateway) -> None:
    r = httpx.get(f"{gw.url}/v1/nothing", headers=AUTH)
    assert openai_error(r, 404)["message"].startswith("no route")
    r = httpx.get(f"{gw.url}/v1/chat/completions", headers=AUTH)
    openai_error(r, 405)


def test_serve_refuses_public_bind_without_keys(tmp_path: Any) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[providers.local]\ntype = "llamacpp"\n')
    done = subprocess.run(
        [sys.executable, "-m", "corral.cli", "serve", "--config", str(cfg), "--host", "0.0.0.0", "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "refusing to serve on 0.0.0.0 without API keys" in done.stderr
