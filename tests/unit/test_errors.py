"""Error classification from HTTP answers, and connection failures through the real drivers."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

import corral
from corral import (
    Authentication,
    BadRequest,
    ConnectionFailed,
    ContextLengthExceeded,
    CorralError,
    ModelLoading,
    ModelNotFound,
    ProviderError,
    RateLimited,
    RequestTimeout,
    ResponseError,
    ServerError,
    ServerUnreachable,
)
from corral.errors import error_from_response


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"error": {"message": "bad things", "type": "invalid_request_error"}}),
        json.dumps({"error": "bad things"}),
        "bad things",
        b"  bad things\n",
    ],
    ids=["error-object", "error-string", "raw-text", "raw-bytes"],
)
def test_three_body_shapes_keep_status_and_message(body):
    err = error_from_response(400, body, provider="llamacpp")
    assert type(err) is BadRequest
    assert err.status == 400
    assert err.message == "bad things"
    assert str(err) == "bad things (HTTP 400)"
    assert err.provider == "llamacpp"


def test_error_object_fields_are_kept():
    body = {"error": {"message": "nope", "type": "invalid_request_error", "code": "invalid_value"}}
    err = error_from_response(422, json.dumps(body))
    assert (err.error_type, err.code) == ("invalid_request_error", "invalid_value")
    assert err.body == body["error"]


def test_empty_body_has_a_readable_message():
    assert error_from_response(500, b"").message == "(empty response body)"


@pytest.mark.parametrize("status", [401, 403])
def test_auth_statuses(status):
    err = error_from_response(status, json.dumps({"error": {"message": "Invalid API Key"}}))
    assert type(err) is Authentication
    assert err.message == "Invalid API Key"
    assert err.status == status
    assert not err.retryable


def test_anthropic_authentication_error_type():
    body = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
    assert type(error_from_response(401, json.dumps(body))) is Authentication


@pytest.mark.parametrize(
    "headers",
    [httpx.Headers({"Retry-After": "7"}), {"Retry-After": "7"}, {"retry-after": "7"}],
    ids=["httpx-headers", "dict-title-case", "dict-lower-case"],
)
def test_rate_limited_with_retry_after(headers):
    err = error_from_response(429, json.dumps({"error": {"message": "slow down"}}), headers=headers)
    assert type(err) is RateLimited
    assert err.retry_after == 7.0
    assert err.retryable


def test_rate_limited_without_or_with_unparseable_retry_after():
    assert error_from_response(429, "x").retry_after is None
    assert error_from_response(429, "x", headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}).retry_after is None


def test_llamacpp_loading_model_503():
    body = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
    err = error_from_response(503, json.dumps(body))
    assert type(err) is ModelLoading
    assert err.message == "Loading model"
    assert err.retryable


@pytest.mark.parametrize(
    "error",
    [
        {"code": 400, "message": "the request exceeds the available context size", "type": "exceed_context_size_error"},
        {
            "message": "maximum context length is 8192 tokens",
            "type": "invalid_request_error",
            "code": "context_length_exceeded",
        },
    ],
    ids=["llama-server", "openai"],
)
def test_context_length_exceeded(error):
    err = error_from_response(400, json.dumps({"error": error}))
    assert type(err) is ContextLengthExceeded
    assert isinstance(err, BadRequest)
    assert err.message == error["message"]
    assert not err.retryable


def test_model_not_found_404():
    body = {
        "error": {
            "message": "The model `gpt-9` does not exist",
            "type": "invalid_request_error",
            "code": "model_not_found",
        }
    }
    err = error_from_response(404, json.dumps(body))
    assert type(err) is ModelNotFound
    assert err.code == "model_not_found"


def test_plain_404_is_not_model_not_found():
    err = error_from_response(404, "Not Found")
    assert type(err) is ProviderError
    assert err.status == 404


@pytest.mark.parametrize("status", [500, 502, 504])
def test_5xx_is_server_error(status):
    err = error_from_response(status, json.dumps({"error": {"message": "boom", "type": "server_error"}}))
    assert type(err) is ServerError
    assert err.retryable


@pytest.mark.parametrize(
    ("exc_type", "retryable"),
    [
        (ServerError, True),
        (RateLimited, True),
        (ModelLoading, True),
        (ServerUnreachable, True),
        (RequestTimeout, False),
        (BadRequest, False),
        (ContextLengthExceeded, False),
        (Authentication, False),
        (ModelNotFound, False),
        (ResponseError, False),
        (corral.ConfigurationError, False),
        (corral.UnsupportedCapability, False),
    ],
)
def test_retryable_flags(exc_type, retryable):
    assert exc_type.retryable is retryable
    assert issubclass(exc_type, CorralError)


def test_classification_ignores_message_text():
    # "context" in a 500 message must not turn it into ContextLengthExceeded.
    err = error_from_response(500, json.dumps({"error": {"message": "context length exceeded, model_not_found"}}))
    assert type(err) is ServerError


# -- through the drivers: nothing listening / nothing answering ----------------------------------------


@pytest.fixture
def closed_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def silent_server():
    """A TCP listener that accepts connections and never writes a byte."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.1)
    stop = threading.Event()
    conns: list[socket.socket] = []

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except (TimeoutError, OSError):
                continue
            conns.append(conn)

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join(2)
    for c in conns:
        c.close()
    srv.close()


def test_connection_refused_is_server_unreachable(closed_port):
    with corral.Client(f"llamacpp://127.0.0.1:{closed_port}") as client, pytest.raises(ServerUnreachable) as info:
        client.chat("hi")
    assert str(info.value) == f"llama-server not running at http://127.0.0.1:{closed_port}"
    assert info.value.endpoint == f"http://127.0.0.1:{closed_port}"
    assert isinstance(info.value, ConnectionFailed)
    assert info.value.retryable


def test_connection_refused_while_streaming(closed_port):
    with corral.Client(f"llamacpp://127.0.0.1:{closed_port}") as client, pytest.raises(ServerUnreachable) as info:
        client.stream("hi").final()
    assert str(info.value) == f"llama-server not running at http://127.0.0.1:{closed_port}"


def test_server_that_never_answers_is_request_timeout(silent_server):
    start = time.monotonic()
    with corral.Client(f"llamacpp://127.0.0.1:{silent_server}") as client, pytest.raises(RequestTimeout) as info:
        client.chat("hi", timeout=0.5)
    assert str(info.value) == "llama-server request timed out"
    assert time.monotonic() - start < 5
    assert not info.value.retryable  # a slow server stays slow: no retry, but fallbacks move on


async def test_async_connection_refused_is_server_unreachable(closed_port):
    async with corral.AsyncClient(f"llamacpp://127.0.0.1:{closed_port}") as client:
        with pytest.raises(ServerUnreachable) as info:
            await client.chat("hi")
        assert str(info.value) == f"llama-server not running at http://127.0.0.1:{closed_port}"
        with pytest.raises(ServerUnreachable):
            await client.stream("hi").final()


async def test_async_server_that_never_answers_is_request_timeout(silent_server):
    start = time.monotonic()
    async with corral.AsyncClient(f"llamacpp://127.0.0.1:{silent_server}") as client:
        with pytest.raises(RequestTimeout) as info:
            await client.chat("hi", timeout=0.5)
    assert str(info.value) == "llama-server request timed out"
    assert time.monotonic() - start < 5


def test_not_implemented_is_not_a_retryable_server_error():
    # llama-server answers 501 for a feature the server or model lacks: asking again cannot help.
    body = b'{"error":{"code":501,"message":"This server does not support reranking.","type":"not_supported_error"}}'
    err = error_from_response(501, body, provider="llamacpp")
    assert not isinstance(err, ServerError) and not err.retryable
    assert str(err) == "This server does not support reranking. (HTTP 501)"
