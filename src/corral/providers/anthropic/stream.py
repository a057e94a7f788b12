"""The state of one Anthropic Messages stream: SSE payloads in, corral events out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ...errors import ResponseError, error_from_response
from ...events import StreamEvent
from ...types import ChatResponse
from .assembler import MessageAssembler

__all__ = ["ERROR_STATUS", "AnthropicStreamState", "raise_stream_error"]

#: the HTTP status the API gives each error type (docs: "HTTP errors")
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def raise_stream_error(payload: Mapping[str, Any], provider: str) -> None:
    """An ``error`` event inside a 200 stream becomes the error its HTTP status would have given."""
    body = {k: v for k, v in payload.items() if k != "__event__"}
    err = body.get("error")
    kind = err.get("type") if isinstance(err, Mapping) else None
    status = ERROR_STATUS.get(kind, 500) if isinstance(kind, str) else 500
    raise error_from_response(status, json.dumps(body), provider=provider)


def _index(payload: Mapping[str, Any]) -> int:
    index = payload.get("index")
    if not isinstance(index, int) or isinstance(index, bool):
        raise ResponseError(f"stream event has no integer index: {payload!r}", raw=repr(payload))
    return index


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


class AnthropicStreamState:
    """Feed the decoded SSE payloads (each has a "type"); ``finish()`` for the response."""

    def __init__(self, assembler: MessageAssembler) -> None:
        self._asm = assembler

    def feed(self, payload: dict[str, Any]) -> list[StreamEvent]:
        kind = payload.get("type") or payload.get("__event__")
        if kind == "error" or payload.get("__event__") == "error":
            raise_stream_error(payload, self._asm.provider)
        asm = self._asm
        if kind == "content_block_delta":
            return asm.block_delta(_index(payload), _mapping(payload.get("delta")))
        if kind == "content_block_start":
            return asm.block_start(_index(payload), _mapping(payload.get("content_block")))
        if kind == "content_block_stop":
            return asm.block_stop(_index(payload))
        if kind == "message_start":
            asm.start(_mapping(payload.get("message")))
        elif kind == "message_delta":
            asm.message_delta(_mapping(payload.get("delta")), payload.get("usage"))
        elif kind == "message_stop":
            return asm.message_stop()
        # "ping" and event types added later carry nothing corral reports.
        return []

    def finish(self) -> ChatResponse:
        return self._asm.finish()
