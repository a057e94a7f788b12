"""Errors on the gateway's wire: one exception for bad client input, and the two APIs' error bodies.

``kind`` is always one of Anthropic's error types (:data:`KINDS`); :func:`openai_error` maps it to
the type and code OpenAI's API gives the same failure, as seen in its answers:

    400 invalid_request_error  -> type "invalid_request_error"
    401 authentication_error   -> type "invalid_request_error", code "invalid_api_key"
    403 permission_error       -> type "permission_error"
    404 not_found_error        -> type "invalid_request_error" (pass code="model_not_found" for a model)
    413 request_too_large      -> type "invalid_request_error"
    429 rate_limit_error       -> type "requests", code "rate_limit_exceeded"
    5xx api_error              -> type "server_error"
    529 overloaded_error       -> type "service_unavailable_error", code "server_is_overloaded"

The OpenAI SDKs choose their exception class from the HTTP status alone; the type and code are for
clients that branch on them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from ..errors import (
    Authentication,
    BadRequest,
    ConfigurationError,
    ConnectionFailed,
    CorralError,
    ModelLoading,
    ModelNotFound,
    ProviderError,
    RateLimited,
    RequestTimeout,
    ResponseError,
    ServerError,
    UnsupportedCapability,
)

if TYPE_CHECKING:
    from starlette.responses import Response

__all__ = [
    "KINDS",
    "STATUS_KIND",
    "WireError",
    "WireProtocol",
    "anthropic_error",
    "config_error",
    "error_body",
    "error_response",
    "from_corral_error",
    "kind_for_status",
    "mask_key_shapes",
    "ollama_error",
    "openai_error",
    "protocol_for_path",
]

#: the error shapes the gateway answers in (the Responses API uses OpenAI's)
WireProtocol = Literal["openai", "anthropic", "ollama"]

#: Anthropic's error types, each with the HTTP status the Messages API gives it
STATUS_KIND: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
KINDS = frozenset(STATUS_KIND)

_OPENAI: dict[str, tuple[str, str | None]] = {
    "invalid_request_error": ("invalid_request_error", None),
    "authentication_error": ("invalid_request_error", "invalid_api_key"),
    "permission_error": ("permission_error", None),
    "not_found_error": ("invalid_request_error", None),
    "request_too_large": ("invalid_request_error", None),
    "rate_limit_error": ("requests", "rate_limit_exceeded"),
    "api_error": ("server_error", None),
    "overloaded_error": ("service_unavailable_error", "server_is_overloaded"),
}

_FIELD = re.compile(
    r"^((?:messages|tools|tool_choice|response_format|max_tokens|temperature|top_p|stop|seed)\b[\w.\[\]]*)"
)
_MAX_MESSAGE = 2000
# Secrets an upstream might echo back: bearer tokens, provider keys, key= query parameters.
_SECRETS = re.compile(
    r"(?i)(bearer\s+)[^\s\"',]+"
    r"|\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{8,}"
    r"|((?:api[_-]?key|x-api-key|key|token)[\"']?\s*[=:]\s*[\"']?)[^\s\"'&,]+"
)


def kind_for_status(status: int) -> str:
    """The error type a status means (Anthropic uses invalid_request_error for unlisted 4xx)."""
    for kind, code in STATUS_KIND.items():
        if code == status:
            return kind
    if status == 503:
        return "overloaded_error"
    return "api_error" if status >= 500 or status < 400 else "invalid_request_error"


class WireError(Exception):
    """Bad client input (or a refusal) the gateway answers with an HTTP error.

    ``kind`` defaults to the type the status means; ``param`` names the offending field.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        kind: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        kind = kind or kind_for_status(status)
        _check_kind(kind)
        self.status = status
        self.message = message
        self.param = param
        self.kind = kind
        self.headers = headers
        super().__init__(message)

    def openai(self, *, code: str | None = None) -> dict[str, Any]:
        return openai_error(self.status, self.message, kind=self.kind, param=self.param, code=code)

    def anthropic(self) -> dict[str, Any]:
        return anthropic_error(self.status, self.message, kind=self.kind)


def config_error(exc: ConfigurationError, param: str | None = None) -> WireError:
    """A corral validation error (build_chat_request, to_messages) as a 400 naming its field; the field
    is read from the start of the message ("messages[0].role must be ...") when not given."""
    if param is None:
        match = _FIELD.match(exc.message)
        param = match.group(1) if match else None
    return WireError(400, exc.message, param=param)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown error kind {kind!r}; use one of {sorted(KINDS)}")


def openai_error(
    status: int, message: str, *, kind: str, param: str | None = None, code: str | int | None = None
) -> dict[str, Any]:
    """OpenAI's error body ``{"error": {"message", "type", "param", "code"}}``; an explicit ``code``
    replaces the kind's usual one."""
    _check_kind(kind)
    err_type, default_code = _OPENAI[kind]
    return {
        "error": {
            "message": message,
            "type": err_type,
            "param": param,
            "code": code if code is not None else default_code,
        }
    }


def anthropic_error(status: int, message: str, *, kind: str) -> dict[str, Any]:
    """Anthropic's error body ``{"type": "error", "error": {"type", "message"}}``."""
    _check_kind(kind)
    return {"type": "error", "error": {"type": kind, "message": message}}


def ollama_error(message: str) -> dict[str, Any]:
    """Ollama's error body ``{"error": "..."}``."""
    return {"error": message}


def error_body(
    protocol: WireProtocol, status: int, kind: str, message: str, param: str | None = None
) -> dict[str, Any]:
    """The error body of ``protocol`` for one failure."""
    if protocol == "anthropic":
        return anthropic_error(status, message, kind=kind)
    if protocol == "ollama":
        _check_kind(kind)
        return ollama_error(message)
    code = "model_not_found" if status == 404 and param == "model" else None
    return openai_error(status, message, kind=kind, param=param, code=code)


def error_response(
    protocol: WireProtocol,
    status: int,
    kind: str,
    message: str,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A whole HTTP error answer in ``protocol``'s shape."""
    from starlette.responses import Response

    body = json.dumps(error_body(protocol, status, kind, message, param))
    return Response(body, status, headers=headers, media_type="application/json")


def protocol_for_path(path: str) -> WireProtocol:
    """Which protocol's error shape a path answers in (for failures before a route runs)."""
    if path.startswith("/v1/messages"):
        return "anthropic"
    if path.startswith("/api/") and not path.startswith("/api/models/"):  # /api/models/unload is llama-swap's
        return "ollama"
    return "openai"


def mask_key_shapes(text: str) -> str:
    """Anything shaped like a key (bearer tokens, sk-… keys, key=… parameters) masked."""
    return _SECRETS.sub(lambda m: (m.group(1) or m.group(2) or "") + "***", text)


def _clean(message: str, redact: Callable[[str], str] | None = None) -> str:
    """An upstream message fit for the gateway's client: configured secrets and anything shaped like
    a key masked, length bounded."""
    text = redact(message.strip()) if redact is not None else message.strip()
    text = _SECRETS.sub(lambda m: (m.group(1) or m.group(2) or "") + "***", text)
    if len(text) > _MAX_MESSAGE:
        text = text[:_MAX_MESSAGE] + "…"
    return text or "upstream error"


def from_corral_error(exc: CorralError, redact: Callable[[str], str] | None = None) -> tuple[int, str, str]:
    """(status, kind, message) to answer the gateway's client with when the upstream call failed;
    ``redact`` masks the configured secrets in what the upstream said.

    An upstream 401/403 is the gateway's own provider credential being refused, so the client gets
    502, not 401: its own key for the gateway is fine.
    """
    msg = _clean(exc.message, redact)
    if isinstance(exc, Authentication):
        return 502, "api_error", f"upstream authentication failed: {msg}"
    if isinstance(exc, ModelNotFound):
        return 404, "not_found_error", msg
    if isinstance(exc, BadRequest):  # includes ContextLengthExceeded
        if exc.status == 413:
            return 413, "request_too_large", msg
        return 400, "invalid_request_error", msg
    if isinstance(exc, RateLimited):
        return 429, "rate_limit_error", msg
    if isinstance(exc, ModelLoading):
        return 503, "overloaded_error", msg
    if isinstance(exc, ProviderError) and exc.status in (501, 503):
        # Not implemented stays 501 (asking again will not help); unavailable stays 503, with its
        # Retry-After, so the client waits as the upstream asked.
        kind = "overloaded_error" if exc.status == 503 else "api_error"
        return exc.status, kind, f"upstream answered HTTP {exc.status}: {msg}"
    if isinstance(exc, ServerError):
        return 502, "api_error", f"upstream server error (HTTP {exc.status}): {msg}"
    if isinstance(exc, ProviderError):
        if 400 <= exc.status < 500:
            return exc.status, kind_for_status(exc.status), msg
        return 502, "api_error", f"upstream error (HTTP {exc.status}): {msg}"
    if isinstance(exc, RequestTimeout):
        return 504, "api_error", f"upstream timed out: {msg}"
    if isinstance(exc, ConnectionFailed):  # includes ServerUnreachable
        return 502, "api_error", f"upstream unreachable: {msg}"
    if isinstance(exc, (UnsupportedCapability, ConfigurationError)):
        return 400, "invalid_request_error", msg
    if isinstance(exc, ResponseError):  # includes StructuredOutputError
        return 502, "api_error", f"bad upstream response: {msg}"
    return 500, "api_error", msg
