"""The gateway's error bodies and statuses, checked against what the official SDKs make of them."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import openai
import pytest

from corral.errors import (
    BadRequest,
    ConfigurationError,
    CorralError,
    ModelLoading,
    RequestTimeout,
    ResponseError,
    ServerUnreachable,
    StructuredOutputError,
    UnsupportedCapability,
    error_from_response,
)
from corral.gateway.wire_errors import (
    STATUS_KIND,
    WireError,
    anthropic_error,
    config_error,
    from_corral_error,
    openai_error,
)

SECRET = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123456789"


def _client(status: int, body: dict[str, Any]) -> httpx2.Client:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, json=body)

    return httpx2.Client(transport=httpx2.MockTransport(handler))


def openai_sdk(status: int, body: dict[str, Any]) -> openai.OpenAI:
    return openai.OpenAI(api_key="x", base_url="http://t/v1", max_retries=0, http_client=_client(status, body))


def anthropic_sdk(status: int, body: dict[str, Any]) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="x", base_url="http://t", max_retries=0, http_client=_client(status, body))


# -- body shapes ------------------------------------------------------------------------------------------------
def test_anthropic_kinds_and_statuses_are_the_documented_ones() -> None:
    assert STATUS_KIND == {
        "invalid_request_error": 400,
        "authentication_error": 401,
        "permission_error": 403,
        "not_found_error": 404,
        "request_too_large": 413,
        "rate_limit_error": 429,
        "api_error": 500,
        "overloaded_error": 529,
    }


def test_anthropic_error_shape() -> None:
    assert anthropic_error(529, "Overloaded", kind="overloaded_error") == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


@pytest.mark.parametrize(
    ("kind", "code", "want_type", "want_code"),
    [
        ("invalid_request_error", None, "invalid_request_error", None),
        ("authentication_error", None, "invalid_request_error", "invalid_api_key"),
        ("not_found_error", "model_not_found", "invalid_request_error", "model_not_found"),
        ("rate_limit_error", None, "requests", "rate_limit_exceeded"),
        ("api_error", None, "server_error", None),
        ("overloaded_error", None, "service_unavailable_error", "server_is_overloaded"),
    ],
)
def test_openai_error_types_and_codes(kind: str, code: str | None, want_type: str, want_code: str | None) -> None:
    body = openai_error(400, "bad", kind=kind, param="temperature", code=code)
    assert body == {"error": {"message": "bad", "type": want_type, "param": "temperature", "code": want_code}}


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown error kind"):
        openai_error(400, "x", kind="bad_error")
    with pytest.raises(ValueError, match="unknown error kind"):
        anthropic_error(400, "x", kind="bad_error")
    with pytest.raises(ValueError, match="unknown error kind"):
        WireError(400, "x", kind="bad_error")


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (404, "not_found_error"),
        (422, "invalid_request_error"),
        (503, "overloaded_error"),
        (502, "api_error"),
    ],
)
def test_wire_error_kind_follows_status(status: int, kind: str) -> None:
    err = WireError(status, "m", param="p")
    assert (err.status, err.kind, err.message, err.param) == (status, kind, "m", "p")


# -- what the SDKs make of the bodies ---------------------------------------------------------------------------
def test_openai_sdk_reads_a_model_not_found_body() -> None:
    body = WireError(404, "model 'nope' is not served here", param="model").openai(code="model_not_found")
    with pytest.raises(openai.NotFoundError) as caught:
        openai_sdk(404, body).chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"
    assert "is not served here" in caught.value.message


def test_openai_sdk_reads_a_validation_body() -> None:
    body = WireError(400, "temperature must be a number between 0 and 2, got 3", param="temperature").openai()
    with pytest.raises(openai.BadRequestError) as caught:
        openai_sdk(400, body).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.type == "invalid_request_error"
    assert caught.value.param == "temperature"


@pytest.mark.parametrize(
    ("kind", "exc_type"),
    [
        ("invalid_request_error", anthropic.BadRequestError),
        ("not_found_error", anthropic.NotFoundError),
        ("rate_limit_error", anthropic.RateLimitError),
        ("overloaded_error", anthropic.OverloadedError),
        ("request_too_large", anthropic.ContentTooLargeError),
    ],
)
def test_anthropic_sdk_reads_each_kind(kind: str, exc_type: type[Exception]) -> None:
    status = STATUS_KIND[kind]
    client = anthropic_sdk(status, anthropic_error(status, "went wrong", kind=kind))
    with pytest.raises(exc_type) as caught:
        client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["error"] == {"type": kind, "message": "went wrong"}  # type: ignore[attr-defined]


# -- upstream failures ------------------------------------------------------------------------------------------
def _upstream(status: int, body: str | dict[str, Any]) -> CorralError:
    import json

    return error_from_response(status, body if isinstance(body, str) else json.dumps(body), provider="up")


@pytest.mark.parametrize(
    ("exc", "status", "kind", "fragment"),
    [
        (
            _upstream(404, {"error": {"message": "no such model", "code": "model_not_found"}}),
            404,
            "not_found_error",
            "no such model",
        ),
        (_upstream(400, {"error": {"message": "bad field"}}), 400, "invalid_request_error", "bad field"),
        (
            _upstream(400, {"error": {"message": "too long", "code": "context_length_exceeded"}}),
            400,
            "invalid_request_error",
            "too long",
        ),
        (_upstream(413, {"error": {"message": "huge"}}), 413, "request_too_large", "huge"),
        (_upstream(429, {"error": {"message": "slow down"}}), 429, "rate_limit_error", "slow down"),
        (_upstream(503, {"error": {"message": "Loading model"}}), 503, "overloaded_error", "Loading model"),
        (_upstream(500, {"error": {"message": "boom"}}), 502, "api_error", "boom"),
        (_upstream(405, "Method Not Allowed"), 405, "invalid_request_error", "Method Not Allowed"),
        (ServerUnreachable("llama-server not running at http://127.0.0.1:8080"), 502, "api_error", "not running"),
        (RequestTimeout("llama-server request timed out"), 504, "api_error", "timed out"),
        (UnsupportedCapability("ollama", "grammar"), 400, "invalid_request_error", "does not support grammar"),
        (StructuredOutputError("model output is not valid JSON"), 502, "api_error", "not valid JSON"),
        (ResponseError("stream ended before the server sent a finish reason"), 502, "api_error", "stream ended"),
        (ConfigurationError("anthropic needs a model"), 400, "invalid_request_error", "needs a model"),
        (ModelLoading("still loading", status=503), 503, "overloaded_error", "still loading"),
        (BadRequest("odd", status=422), 400, "invalid_request_error", "odd"),
    ],
)
def test_from_corral_error(exc: CorralError, status: int, kind: str, fragment: str) -> None:
    got_status, got_kind, message = from_corral_error(exc)
    assert (got_status, got_kind) == (status, kind)
    assert fragment in message
    assert "Traceback" not in message


def test_upstream_401_is_the_gateways_own_key_not_the_clients() -> None:
    exc = _upstream(401, {"error": {"message": f"Incorrect API key provided: {SECRET}", "code": "invalid_api_key"}})
    status, kind, message = from_corral_error(exc)
    assert status == 502 and kind == "api_error"
    assert message.startswith("upstream authentication failed: Incorrect API key provided")
    assert SECRET not in message and "AbCdEfGh" not in message


@pytest.mark.parametrize(
    "text",
    [
        f"upstream said Authorization: Bearer {SECRET}",
        "GET https://api.example.com/v1/models?key=AIzaSyA-very-secret-value failed",
        'body {"x-api-key": "sk-ant-api03-secretsecretsecret"}',
    ],
)
def test_messages_never_carry_keys(text: str) -> None:
    _, _, message = from_corral_error(ResponseError(text))
    for secret in (SECRET, "AIzaSyA-very-secret-value", "sk-ant-api03-secretsecretsecret"):
        assert secret not in message
    assert "***" in message


def test_long_upstream_messages_are_bounded() -> None:
    _, _, message = from_corral_error(ResponseError("x" * 10_000))
    assert len(message) < 2100


@pytest.mark.parametrize(
    ("text", "param"),
    [
        ("messages[0].role must be one of system, user, assistant, tool; got 'bot'", "messages[0].role"),
        ("response_format.json_schema.schema must be a JSON schema object", "response_format.json_schema.schema"),
        ("tools[1] must be {'type': 'function', 'function': {'name': ...}}", "tools[1]"),
        ("give either grammar or response_format, not both", None),
    ],
)
def test_config_error_names_the_field(text: str, param: str | None) -> None:
    err = config_error(ConfigurationError(text))
    assert (err.status, err.kind, err.param, err.message) == (400, "invalid_request_error", param, text)
