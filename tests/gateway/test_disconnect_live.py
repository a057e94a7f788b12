"""A client that goes away frees its llama-server slot at once, while the prompt is processed and
while tokens are generated, streaming or not."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest

from .conftest import RunningGateway, gateway_config

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def slot_server(gguf_path: Any) -> Any:
    from ..conftest import start_engine

    # One slot, so "busy" and "free" are unambiguous; a long context for a slow prompt.
    engine = start_engine(gguf_path, "-c", "4096", "-np", "1", "--slots")
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def gateway(slot_server: Any) -> Any:
    gw = RunningGateway(gateway_config({"local": {"type": "llamacpp", "base_url": slot_server.url}}))
    yield gw
    gw.stop()


def busy(server_url: str) -> bool:
    return any(s.get("is_processing") for s in httpx.get(f"{server_url}/slots", timeout=5).json())


def wait_until(predicate: Any, timeout: float) -> float | None:
    """Seconds until predicate() held, or None if it never did within timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.02)
    return None


def send_raw(gateway_url: str, body: dict[str, Any], path: str = "/v1/chat/completions") -> socket.socket:
    host, port = gateway_url.split("://", 1)[1].split(":")
    sock = socket.create_connection((host, int(port)))
    payload = json.dumps(body).encode()
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n".encode()
        + f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    return sock


PROMPT_PHASE_UPSTREAM = pytest.mark.xfail(
    strict=True,
    reason="llama-server (this xllamacpp build) checks for a closed connection only when it writes a token, "
    "so a slot stays busy until the prompt is processed (llama.cpp issues #24496, #1020); corral closes "
    "its upstream connection at once (see test_prompt_phase_disconnect_frees_slot_at_first_token)",
)


def assert_slot_freed_when_client_leaves(
    gateway: RunningGateway, slot_server: Any, path: str, body: dict[str, Any], wait_for_tokens: bool = True
) -> None:
    """Send ``body`` to ``path``, leave once it generates (or while the prompt is processed when
    ``wait_for_tokens`` is false), and check the llama.cpp slot is free within a second."""
    # A precondition, not a measurement: an earlier prompt-phase case may keep the slot for a while.
    assert wait_until(lambda: not busy(slot_server.url), 60) is not None, "slot busy before the test"
    sock = send_raw(gateway.url, body, path)
    try:
        assert wait_until(lambda: busy(slot_server.url), 10) is not None, "the request never reached the slot"
        if wait_for_tokens:
            if body.get("stream"):
                sock.settimeout(20)
                seen = b""
                while b"data:" not in seen:  # tokens are flowing
                    chunk = sock.recv(65536)
                    assert chunk, "the gateway closed the stream"
                    seen += chunk
            else:
                time.sleep(1.0)  # well past a short prompt: generating
    finally:
        sock.close()  # the client goes away
    freed = wait_until(lambda: not busy(slot_server.url), 5)
    assert freed is not None, "slot still busy 5 s after the client left"
    assert freed <= 1.0, f"slot freed only after {freed:.2f} s"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("phase", [pytest.param("prompt", marks=PROMPT_PHASE_UPSTREAM), "generation"])
def test_disconnect_frees_the_slot_within_a_second(
    gateway: RunningGateway, slot_server: Any, stream: bool, phase: str
) -> None:
    # A long prompt keeps the slot in prompt processing for seconds on this CPU; a short prompt
    # with many tokens to generate keeps it generating.
    content = ("The quick brown fox jumps over the lazy dog. " * 300) if phase == "prompt" else "Tell a long story."
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 2000, "stream": stream,
            "cache_prompt": False, "temperature": 1.0}  # fmt: skip
    assert_slot_freed_when_client_leaves(
        gateway, slot_server, "/v1/chat/completions", body, wait_for_tokens=phase == "generation"
    )


def test_prompt_phase_disconnect_frees_slot_at_first_token(gateway: RunningGateway, slot_server: Any) -> None:
    """What corral can do while llama-server processes a prompt: the upstream connection is closed at
    once, so the slot is freed when the first token would be written, not after max_tokens."""
    content = "The quick brown fox jumps over the lazy dog. " * 300
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 4000, "stream": False,
            "cache_prompt": False, "temperature": 1.0}  # fmt: skip
    assert wait_until(lambda: not busy(slot_server.url), 60) is not None  # an earlier test's prompt may still run
    started = time.monotonic()
    sock = send_raw(gateway.url, body)
    assert wait_until(lambda: busy(slot_server.url), 10) is not None
    sock.close()
    freed = wait_until(lambda: not busy(slot_server.url), 60)
    assert freed is not None
    # Processing ~3000 prompt tokens takes seconds here; generating 4000 tokens would take far longer.
    elapsed = time.monotonic() - started
    assert elapsed < 40, f"slot busy for {elapsed:.1f} s: the generation ran on after the client left"


# Every route that generates, streamed or whole, the Anthropic one with thinking on (Claude Code's
# requests), the completion routes too: a client leaving frees the slot during generation.
ROUTES = {
    "anthropic-thinking": ("/v1/messages", {"model": "m", "max_tokens": 2000, "thinking": {"type": "enabled",
                           "budget_tokens": 1500}, "messages": [{"role": "user", "content": "Tell a long story."}]}),
    "completions": ("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 2000}),
}  # fmt: skip


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_every_route_frees_the_slot_when_the_client_leaves(
    gateway: RunningGateway, slot_server: Any, route: str, stream: bool
) -> None:
    path, body = ROUTES[route]
    body = {**body, "stream": stream, "temperature": 1.0, "cache_prompt": False}
    assert_slot_freed_when_client_leaves(gateway, slot_server, path, body)
