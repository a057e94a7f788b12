"""What the sync and async drivers share: timeouts, headers, and turning httpx failures
into corral errors, once, at the boundary. httpx is imported here, lazily by the clients."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx

from .errors import ConnectionFailed, CorralError, RequestTimeout, ResponseError, ServerUnreachable, error_from_response
from .providers.base import UNSET, HTTPRequest

if TYPE_CHECKING:
    from .providers.base import Provider

__all__ = ["check_status", "encode_body", "http_timeout", "request_headers", "translate_error"]

_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def http_timeout(provider: Provider, per_call: Any = UNSET) -> httpx.Timeout:
    if per_call is not UNSET:
        seconds = per_call
    else:
        # No timeout configured (llama-swap: a cold model swap can take minutes): the deadline bounds it.
        seconds = provider.config.timeout if provider.config.timeout is not None else provider.deadline
    if seconds is None:
        return httpx.Timeout(None, connect=10.0)
    return httpx.Timeout(float(seconds), connect=min(float(seconds), 10.0))


def request_headers(provider: Provider, req: HTTPRequest) -> dict[str, str]:
    headers = dict(_JSON_HEADERS) if req.json is not None else {"Accept": "application/json"}
    headers.update(provider.headers())
    headers.update(req.headers)
    return headers


def encode_body(req: HTTPRequest) -> bytes | None:
    if req.json is None:
        return None
    return json.dumps(req.json, separators=(",", ":"), ensure_ascii=False).encode()


def translate_error(exc: httpx.HTTPError, provider: Provider, *, streaming: bool = False) -> CorralError:
    """httpx's exceptions -> corral's. Chain with ``raise ... from exc`` at the call site."""
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeout(provider.timeout_message(), endpoint=provider.endpoint)
    if isinstance(exc, httpx.ConnectError):
        return ServerUnreachable(provider.unreachable_message(), endpoint=provider.endpoint)
    if streaming:
        return ResponseError(f"{provider.server_label} closed the stream before it was complete ({exc})")
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return ConnectionFailed(
            f"{provider.server_label} at {provider.endpoint} closed the connection without answering",
            endpoint=provider.endpoint,
        )
    return ConnectionFailed(f"{provider.server_label} request failed: {exc}", endpoint=provider.endpoint)


def check_status(provider: Provider, req: HTTPRequest, status: int, body: bytes, headers: httpx.Headers) -> None:
    if status >= 400:
        raise error_from_response(status, body, provider=provider.name, headers=headers, model_route=req.model_route)
