"""The one exception tree of corral.

    CorralError
    ├── ConfigurationError          bad config file, env, DSN or argument
    ├── UnsupportedCapability       the provider cannot do this; raised before any request
    ├── ConnectionFailed            (retryable) no HTTP answer at all
    │   ├── ServerUnreachable       nothing listening / DNS / refused
    │   └── RequestTimeout          no answer within the timeout
    ├── ProviderError               the server answered with an error (status, message, body)
    │   ├── Authentication          401 / 403
    │   ├── ModelNotFound           404 naming a model
    │   ├── BadRequest              400 / 413 / 422
    │   │   └── ContextLengthExceeded
    │   ├── RateLimited             (retryable) 429, with retry_after
    │   ├── ModelLoading            (retryable) 503 while the model loads, with retry_after
    │   └── ServerError             (retryable) other 5xx
    └── ResponseError               malformed body, malformed or cut stream
        └── StructuredOutputError   output did not parse/validate against the requested format

Errors are classified once, from the status code and the structured fields of
the body (never by matching message text), in :func:`error_from_response`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "Authentication",
    "BadRequest",
    "ConfigurationError",
    "ConnectionFailed",
    "ContextLengthExceeded",
    "CorralError",
    "ModelLoading",
    "ModelNotFound",
    "ProviderError",
    "RateLimited",
    "RequestTimeout",
    "ResponseError",
    "ServerError",
    "ServerUnreachable",
    "StructuredOutputError",
    "UnsupportedCapability",
    "error_from_response",
    "parse_error_message",
]


class CorralError(Exception):
    """Base of every error corral raises."""

    retryable: bool = False

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigurationError(CorralError):
    """The configuration (file, environment, DSN or arguments) is invalid."""


class UnsupportedCapability(CorralError):
    """The provider does not offer what was asked; nothing was sent."""

    def __init__(self, provider: str, capability: str, detail: str = "") -> None:
        # ``capability`` is a corral.Capability value ("embeddings", "structured output", …)
        self.provider = provider
        self.capability = capability
        text = f"provider {provider!r} does not support {capability}"
        super().__init__(f"{text}: {detail}" if detail else text)


class ConnectionFailed(CorralError):
    """No HTTP answer was received."""

    retryable = True

    def __init__(self, message: str, *, endpoint: str = "") -> None:
        self.endpoint = endpoint
        super().__init__(message)


class ServerUnreachable(ConnectionFailed):
    """Nothing answered at the endpoint (refused, unresolvable, reset before a response)."""


class RequestTimeout(ConnectionFailed):
    """The server did not answer within the timeout. Not retried (a slow server stays slow within
    the same call), but a fallback chain moves on after it."""

    retryable = False


class ProviderError(CorralError):
    """The server answered with an HTTP error."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        provider: str = "",
        error_type: str | None = None,
        code: str | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.provider = provider
        self.error_type = error_type
        self.code = code
        self.body = body
        #: seconds the server asked to wait (``Retry-After``), on 429 and 503 answers
        self.retry_after = retry_after
        if status in (408, 409):  # request timeout / conflict: the same request may well succeed again
            self.retryable = True
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status})" if self.status else self.message


class Authentication(ProviderError):
    """The server refused the credentials (401/403)."""


class ModelNotFound(ProviderError):
    """The requested model does not exist on the server."""


class BadRequest(ProviderError):
    """The server rejected the request as invalid."""


class ContextLengthExceeded(BadRequest):
    """The prompt (plus requested tokens) does not fit the model's context."""


class RateLimited(ProviderError):
    """Too many requests; ``retry_after`` seconds if the server said."""

    retryable = True


class ModelLoading(ProviderError):
    """The server is up but still loading (or downloading) its model; ``retry_after`` seconds if known."""

    retryable = True


class ServerError(ProviderError):
    """The server failed (5xx)."""

    retryable = True


class ResponseError(CorralError):
    """The response could not be understood: malformed JSON, a cut stream, a bad chunk."""

    def __init__(self, message: str, *, raw: str | None = None) -> None:
        self.raw = raw
        super().__init__(message)


class StructuredOutputError(ResponseError):
    """The model's output did not parse or validate against the requested format."""


_CONTEXT_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error", "context_window_exceeded"})
_LOADING_TYPES = frozenset({"unavailable_error", "loading_error"})
_NOT_FOUND_CODES = frozenset({"model_not_found", "not_found_error"})


def parse_error_message(body: bytes | str) -> tuple[str, Mapping[str, Any]]:
    """The server's message from ``{"error":{"message":..}}``, ``{"error":".."}``,
    ``{"message":..}`` or, failing those, the raw body text; plus the error object."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip() or "(empty response body)", {}
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            msg = err.get("message") or err.get("msg") or json.dumps(err)
            return str(msg), err
        if isinstance(err, str) and err:
            return err, data
        if isinstance(data.get("message"), str):
            # Anthropic and some gateways: {"type":"error","error":{...}} handled above; bare message here.
            return str(data["message"]), data
        if isinstance(data.get("detail"), str):
            return str(data["detail"]), data
    return text.strip(), {}


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    value = headers.get("retry-after") or headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_from_response(
    status: int,
    body: bytes | str,
    *,
    provider: str = "",
    headers: Mapping[str, str] | None = None,
    model_route: bool = False,
) -> ProviderError:
    """Classify an HTTP error answer by status and structured body fields; ``model_route`` says the
    request named a model in a route that exists, so a 404 there is about the model."""
    message, err = parse_error_message(body)
    error_type = err.get("type") if isinstance(err.get("type"), str) else None
    raw_code = err.get("code")
    code = raw_code if isinstance(raw_code, str) else None
    markers = {m for m in (error_type, code) if m}
    kw: dict[str, Any] = {
        "status": status,
        "provider": provider,
        "error_type": error_type,
        "code": code,
        "body": err or message,
        "retry_after": _retry_after(headers) if status in (429, 503) else None,
    }
    if markers & _CONTEXT_CODES:
        return ContextLengthExceeded(message, **kw)
    if status in (401, 403) or markers & {"authentication_error", "permission_error", "invalid_api_key"}:
        return Authentication(message, **kw)
    if status == 429 or markers & {"rate_limit_error", "rate_limit_exceeded"}:
        return RateLimited(message, **kw)
    if status == 404 and (markers & _NOT_FOUND_CODES or "model" in err or model_route):
        return ModelNotFound(message, **kw)
    if status == 503 and (markers & _LOADING_TYPES or not markers):
        return ModelLoading(message, **kw)
    if status == 501 or "not_supported_error" in markers:
        # "Not Implemented" (llama-server: a feature this server or model lacks): asking again will
        # not help, so not a retryable ServerError.
        return ProviderError(message, **kw)
    if status >= 500:
        return ServerError(message, **kw)
    if status in (400, 413, 422):
        return BadRequest(message, **kw)
    return ProviderError(message, **kw)
