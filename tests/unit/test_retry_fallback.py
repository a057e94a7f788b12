"""Retries (transient errors only, bounded, Retry-After honoured) and fallback chains, on canned HTTP."""

from __future__ import annotations

import time

import httpx
import pytest
import respx

import corral
from corral.errors import BadRequest, RateLimited, ServerError, ServerUnreachable
from corral.retry import Routing

CHAT = {
    "id": "x",
    "model": "m",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
}
PRIMARY = "http://127.0.0.1:8080"
BACKUP = "http://127.0.0.2:9090"


def config(**routing: object) -> dict[str, object]:
    return {
        "default_provider": "local",
        "providers": {
            "local": {"type": "llamacpp", "base_url": PRIMARY},
            "backup": {"type": "openai", "base_url": f"{BACKUP}/v1", "api_key": "k"},
        },
        "routing": routing,
    }


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the backoff logic, drop the waiting: the jitter factor becomes 0."""
    monkeypatch.setattr("corral.retry.random.uniform", lambda a, b: 0.0)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (503, {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}),
        (500, {"error": "boom"}),
        (502, "bad gateway"),
        (408, {"error": "timeout"}),
        (409, {"error": "conflict"}),
    ],
)
def test_transient_status_is_retried(status: int, body: object, fast_backoff: None) -> None:
    with respx.mock(assert_all_called=True) as router:
        kind = {"json": body} if not isinstance(body, str) else {"text": body}
        route = router.post(f"{PRIMARY}/v1/chat/completions").mock(
            side_effect=[httpx.Response(status, **kind), httpx.Response(200, json=CHAT)]  # type: ignore[arg-type]
        )
        assert corral.Client("llamacpp://127.0.0.1:8080").chat("hi").content == "ok"
    assert route.call_count == 2


def test_bad_request_is_never_retried(fast_backoff: None) -> None:
    with respx.mock() as router:
        route = router.post(f"{PRIMARY}/v1/chat/completions").mock(
            return_value=httpx.Response(
                400, json={"error": {"message": "bad 'temperature'", "type": "invalid_request_error"}}
            )
        )
        with pytest.raises(BadRequest, match="bad 'temperature'"):
            corral.Client("llamacpp://127.0.0.1:8080").chat("hi")
    assert route.call_count == 1


def test_retries_are_bounded(fast_backoff: None) -> None:
    with respx.mock() as router:
        route = router.post(f"{PRIMARY}/v1/chat/completions").mock(
            return_value=httpx.Response(500, json={"error": "x"})
        )
        with pytest.raises(ServerError):
            corral.Client("llamacpp://127.0.0.1:8080", max_retries=3).chat("hi")
    assert route.call_count == 4  # the first try and three retries


def test_rate_limit_waits_for_retry_after() -> None:
    with respx.mock() as router:
        route = router.post(f"{PRIMARY}/v1/chat/completions").mock(
            side_effect=[
                httpx.Response(429, headers={"Retry-After": "0.3"}, json={"error": {"message": "slow down"}}),
                httpx.Response(200, json=CHAT),
            ]
        )
        started = time.monotonic()
        assert corral.Client("llamacpp://127.0.0.1:8080").chat("hi").content == "ok"
        assert time.monotonic() - started >= 0.3
    assert route.call_count == 2


def test_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    with respx.mock() as router:
        router.post(f"{PRIMARY}/v1/chat/completions").mock(
            return_value=httpx.Response(429, headers={"Retry-After": "3600"}, json={"error": {"message": "later"}})
        )
        started = time.monotonic()
        with pytest.raises(RateLimited) as info:
            corral.Client("llamacpp://127.0.0.1:8080").chat("hi")
        assert time.monotonic() - started < 1
    assert info.value.retry_after == 3600


def test_connect_error_is_retried_then_succeeds(fast_backoff: None) -> None:
    with respx.mock() as router:
        route = router.post(f"{PRIMARY}/v1/chat/completions").mock(
            side_effect=[httpx.ConnectError("refused"), httpx.Response(200, json=CHAT)]
        )
        assert corral.Client("llamacpp://127.0.0.1:8080").chat("hi").content == "ok"
    assert route.call_count == 2


def test_fallback_on_server_error_names_the_provider_that_answered(fast_backoff: None) -> None:
    with respx.mock(assert_all_called=True) as router:
        primary = router.post(f"{PRIMARY}/v1/chat/completions").mock(return_value=httpx.Response(503, text="down"))
        backup = router.post(f"{BACKUP}/v1/chat/completions").mock(return_value=httpx.Response(200, json=CHAT))
        r = corral.Client(config=config(fallbacks={"local": ["backup"]})).chat("hi")
    assert r.provider == "backup"
    assert primary.call_count == 3 and backup.call_count == 1  # primary retried, then the chain moved on
    assert backup.calls.last.request.headers["authorization"] == "Bearer k"


def test_no_fallback_on_bad_request() -> None:
    with respx.mock(assert_all_called=False) as router:
        router.post(f"{PRIMARY}/v1/chat/completions").mock(return_value=httpx.Response(400, json={"error": "no"}))
        backup = router.post(f"{BACKUP}/v1/chat/completions").mock(return_value=httpx.Response(200, json=CHAT))
        with pytest.raises(BadRequest):
            corral.Client(config=config(fallbacks={"local": ["backup"]})).chat("hi")
    assert backup.call_count == 0


def test_stream_open_failure_falls_back_but_a_cut_stream_does_not(fast_backoff: None) -> None:
    sse = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
    with respx.mock(assert_all_called=False) as router:
        router.post(f"{PRIMARY}/v1/chat/completions").mock(side_effect=httpx.ConnectError("refused"))
        backup = router.post(f"{BACKUP}/v1/chat/completions").mock(
            return_value=httpx.Response(
                200,
                content=sse + b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n',
            )
        )
        client = corral.Client(config=config(fallbacks={"local": ["backup"]}))
        assert client.stream("hi").final().provider == "backup"
    with respx.mock(assert_all_called=False) as router:
        cut = router.post(f"{PRIMARY}/v1/chat/completions").mock(return_value=httpx.Response(200, content=sse))
        backup = router.post(f"{BACKUP}/v1/chat/completions").mock(return_value=httpx.Response(200, json=CHAT))
        client = corral.Client(config=config(fallbacks={"local": ["backup"]}))
        with pytest.raises(corral.ResponseError, match="finish reason"):
            client.stream("hi").final()
        assert cut.call_count == 1 and backup.call_count == 0


def test_capability_without_fallback_is_unsupported_and_sends_nothing() -> None:
    with respx.mock(assert_all_mocked=True):
        client = corral.Client(provider="openai", base_url=f"{BACKUP}/v1", api_key="k")
        with pytest.raises(corral.UnsupportedCapability):
            client.tokenize("hi")


def test_capability_fallback_routes_only_that_capability() -> None:
    with respx.mock(assert_all_called=True) as router:
        tok = router.post(f"{PRIMARY}/tokenize").mock(return_value=httpx.Response(200, json={"tokens": [1, 2]}))
        chat = router.post(f"{BACKUP}/v1/chat/completions").mock(return_value=httpx.Response(200, json=CHAT))
        cfg = {
            "default_provider": "cloud",
            "providers": {
                "cloud": {"type": "openai", "base_url": f"{BACKUP}/v1", "api_key": "k"},
                "local": {"type": "llamacpp", "base_url": PRIMARY},
            },
            "routing": {"capability_fallbacks": {"tokenize": ["local"]}},
        }
        client = corral.Client(config=cfg)
        assert client.tokenize("hi") == [1, 2]
        assert client.chat("hi").provider == "cloud"
    assert tok.call_count == 1 and chat.call_count == 1


async def test_async_client_retries_and_falls_back_alike(fast_backoff: None) -> None:
    with respx.mock() as router:
        primary = router.post(f"{PRIMARY}/v1/chat/completions").mock(side_effect=httpx.ConnectError("refused"))
        router.post(f"{BACKUP}/v1/chat/completions").mock(return_value=httpx.Response(200, json=CHAT))
        async with corral.AsyncClient(config=config(fallbacks={"local": ["backup"]})) as client:
            assert (await client.chat("hi")).provider == "backup"
    assert primary.call_count == 3


def test_unreachable_without_fallback_keeps_the_exact_message(fast_backoff: None) -> None:
    with respx.mock() as router:
        router.post(f"{PRIMARY}/v1/chat/completions").mock(side_effect=httpx.ConnectError("refused"))
        with pytest.raises(ServerUnreachable) as info:
            corral.Client("llamacpp://127.0.0.1:8080").chat("hi")
    assert str(info.value) == "llama-server not running at http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"fallbacks": {"local": ["nowhere"]}}, "'nowhere', which is not configured"),
        ({"capability_fallbacks": {"telepathy": ["local"]}}, "unknown capability 'telepathy'"),
        ({"max_retries": -1}, "max_retries"),
    ],
)
def test_bad_routing_config_is_reported(table: dict[str, object], message: str) -> None:
    with pytest.raises(corral.ConfigurationError, match=message):
        Routing.from_table(table, ["local"])
