"""What the drivers share: timeouts, headers, and turning transport failures into corral errors,
once, at the boundary. Imported lazily by the clients (it imports httpx)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from .async_transport import Timeouts, TransportFailure
from .errors import ConnectionFailed, CorralError, RequestTimeout, ResponseError, ServerUnreachable, error_from_response
from .providers.base import UNSET, HTTPRequest

if TYPE_CHECKING:
    from .providers.base import Provider

__all__ = [
    "check_status",
    "encode_body",
    "failure_error",
    "http_timeout",
    "request_headers",
    "timeouts_for",
    "translate_error",
]

_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def timeouts_for(provider: Provider, per_call: Any = UNSET) -> Timeouts:
    if per_call is not UNSET:
        seconds = per_call
    else:
        # No timeout configured (llama-swap: a cold model swap can take minutes): the deadline bounds it.
        seconds = provider.config.timeout if provider.config.timeout is not None else provider.deadline
    if seconds is None:
        return Timeouts(connect=10.0, read=None)
    return Timeouts(connect=min(float(seconds), 10.0), read=float(seconds))


def http_timeout(provider: Provider, per_call: Any = UNSET) -> httpx.Timeout:
    t = timeouts_for(provider, per_call)
    return httpx.Timeout(t.read, connect=t.connect)


def request_headers(provider: Provider, req: HTTPRequest) -> dict[str, str]:
    headers = dict(_JSON_HEADERS) if req.json is not None else {"Accept": "application/json"}
    headers.update(provider.headers())
    headers.update(req.headers)
    return headers


def encode_body(req: HTTPRequest) -> bytes | None:
    if req.json is None:
        return None
    return json.dumps(req.json, separators=(",", ":"), ensure_ascii=False).encode()


def failure_error(failure: TransportFailure, provider: Provider, *, streaming: bool = False) -> CorralError:
    """A transport failure as the corral error a caller sees, in the provider's words."""
    if failure.kind == "timeout":
        return RequestTimeout(provider.timeout_message(), endpoint=provider.endpoint)
    if failure.kind == "connect":
        return ServerUnreachable(provider.unreachable_message(), endpoint=provider.endpoint)
    if streaming:
        return ResponseError(f"{provider.server_label} closed the stream before it was complete ({failure.detail})")
    return ConnectionFailed(
        f"{provider.server_label} at {provider.endpoint} closed the connection without answering",
        endpoint=provider.endpoint,
    )


def translate_error(exc: httpx.HTTPError, provider: Provider, *, streaming: bool = False) -> CorralError:
    """httpx's exceptions -> corral's. Chain with ``raise ... from exc`` at the call site."""
    from .async_transport import _httpx_failure

    return failure_error(_httpx_failure(exc), provider, streaming=streaming)


def check_status(provider: Provider, req: HTTPRequest, status: int, body: bytes, headers: Mapping[str, str]) -> None:
    if status >= 400:
        raise error_from_response(status, body, provider=provider.name, headers=headers, model_route=req.model_route)
