"""A whole (non-streamed) Anthropic message -> ChatResponse, through the stream's assembler."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import ResponseError
from ...types import ChatResponse
from ..base import decode_json
from .assembler import MessageAssembler

__all__ = ["parse_message"]


def parse_message(body: bytes, assembler: MessageAssembler) -> ChatResponse:
    data: Any = decode_json(body, "chat")
    raw = body[:300].decode("utf-8", "replace")
    if not isinstance(data, Mapping) or not isinstance(data.get("content"), list):
        raise ResponseError(f"chat response is not an Anthropic message: {raw!r}", raw=raw)
    if not isinstance(data.get("stop_reason"), str):
        raise ResponseError(f"chat response has no stop_reason: {raw!r}", raw=raw)
    assembler.start(data)
    for i, block in enumerate(data["content"]):
        if not isinstance(block, Mapping):
            raise ResponseError(f"malformed content block {i} in chat response: {block!r}", raw=raw)
        assembler.block_start(i, block)
        assembler.block_stop(i)
    assembler.message_delta(data, data.get("usage"))
    assembler.message_stop()
    return assembler.finish()
