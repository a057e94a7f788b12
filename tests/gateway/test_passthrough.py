"""What a pass-through sends upstream: the client's bytes when nothing changes, the model renamed
otherwise; retries resend the same body; usage and the request log still work."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from .conftest import RunningGateway, gateway_config

ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "x",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16, "prompt_tokens_details": {"x": 1}},
}


class Upstream:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.auth: list[str | None] = []
        self.fail_next = 0
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                upstream.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                upstream.auth.append(self.headers.get("Authorization"))
                status, payload = 200, json.dumps(ANSWER).encode()
                if upstream.fail_next:
                    upstream.fail_next -= 1
                    status, payload = 503, b'{"error": {"message": "busy"}}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    yield up
    up.server.shutdown()


@pytest.fixture(scope="module")
def gw(upstream: Upstream) -> Iterator[RunningGateway]:
    config = gateway_config(
        {"up": {"type": "openai", "base_url": upstream.url, "api_key": "k", "max_retries": 1}},
        models={"same": {"provider": "up"}, "renamed": {"provider": "up", "upstream": "real-name"}},
    )
    gateway = RunningGateway(config)
    yield gateway
    gateway.stop()


def post(gw: RunningGateway, raw: bytes) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"}, timeout=30
    )


def test_unchanged_body_goes_as_sent(gw: RunningGateway, upstream: Upstream) -> None:
    raw = b'{ "model": "same",  "messages": [{"role": "user", "content": "h\\u00e9"}], "max_tokens": 8 }'
    r = post(gw, raw)
    assert r.status_code == 200, r.text
    assert r.json() == {**ANSWER, "model": "same"}  # named as the client asked, not as the upstream calls it
    assert upstream.bodies[-1] == raw


def test_renamed_model_is_rewritten(gw: RunningGateway, upstream: Upstream) -> None:
    r = post(gw, json.dumps({"model": "renamed", "messages": [{"role": "user", "content": "hé"}]}).encode())
    assert r.status_code == 200, r.text
    sent = json.loads(upstream.bodies[-1])
    assert sent == {"model": "real-name", "messages": [{"role": "user", "content": "hé"}]}


def test_a_retry_resends_the_same_bytes(gw: RunningGateway, upstream: Upstream) -> None:
    raw = b'{"model": "same", "messages": [{"role": "user", "content": "again"}]}'
    upstream.fail_next = 1
    before = len(upstream.bodies)
    r = post(gw, raw)
    assert r.status_code == 200, r.text
    assert upstream.bodies[before:] == [raw, raw]


def test_usage_is_counted(gw: RunningGateway) -> None:
    post(gw, b'{"model": "same", "messages": [{"role": "user", "content": "count"}]}')
    metrics = httpx.get(f"{gw.url}/metrics", timeout=10).text
    counted = {
        kind: float(ln.rsplit(" ", 1)[1])
        for ln in metrics.splitlines()
        if ln.startswith("corral_tokens_total{") and 'model="same"' in ln
        for kind in ("prompt", "completion")
        if f'kind="{kind}"' in ln
    }
    # Every answer says 9 prompt and 7 completion tokens.
    assert counted["prompt"] > 0 and counted["prompt"] % 9 == 0, counted
    assert counted["completion"] / 7 == counted["prompt"] / 9, counted


def test_credentials_in_a_base_url_are_sent_as_basic_auth_and_never_shown(upstream: Upstream) -> None:
    """As corral's own clients do (httpx): user:password in the URL is Basic auth, over the key."""
    import base64

    import corral

    url = upstream.url.replace("http://", "http://ann:p%40ss-word@")
    expected = "Basic " + base64.b64encode(b"ann:p@ss-word").decode()
    gw = RunningGateway(gateway_config({"up": {"type": "openai", "base_url": url, "api_key": "sk-key"}}))
    try:
        body = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}
        r = httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=10)
        assert r.status_code == 200 and upstream.auth[-1] == expected
    finally:
        gw.stop()
    with corral.Client(provider="openai", base_url=url, api_key="sk-key", max_retries=0) as client:
        assert client.chat("hi").content == "hi" and upstream.auth[-1] == expected
    closed = "http://ann:p%40ss-word@127.0.0.1:9/v1"
    with (
        corral.Client(provider="openai", base_url=closed, api_key="sk-key", max_retries=0) as client,
        pytest.raises(corral.ServerUnreachable) as caught,
    ):
        client.chat("hi")
    assert str(caught.value) == "OpenAI-compatible server not reachable at http://127.0.0.1:9/v1"
