"""Assembling an Anthropic message, block by block, into events and one ChatResponse.

Streams drive it event by event; a whole (non-streamed) message drives it with one
start/stop per content block, so ``chat()`` and ``stream().final()`` cannot disagree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from ...errors import ResponseError, StructuredOutputError
from ...events import ContentDelta, ReasoningDelta, StreamEvent, ToolCallDelta, ToolCallEnd
from ...structured import parse_structured
from ...types import ChatResponse, ToolCall, Usage
from .request import JSON_TOOL

__all__ = ["FINISH_REASONS", "MessageAssembler"]

#: Anthropic stop_reason -> corral finish_reason (others are passed on unchanged)
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

BlockKind = Literal["text", "thinking", "tool", "json", "other"]


def _canonical_json(raw: str) -> str:
    """Tool input as the JSON text a whole response would give; raw if it does not parse."""
    if not raw.strip():
        return "{}"
    try:
        return json.dumps(json.loads(raw), ensure_ascii=False)
    except ValueError:
        return raw


class _Block:
    __slots__ = ("closed", "id", "kind", "name", "ordinal", "parts")

    def __init__(self, kind: BlockKind, ordinal: int = -1, call_id: str = "", name: str = "") -> None:
        self.kind = kind
        self.ordinal = ordinal  # position among the reported tool calls
        self.id = call_id
        self.name = name
        self.parts: list[str] = []
        self.closed = False

    def close(self) -> None:
        if not self.closed and self.kind == "tool":
            self.parts = [_canonical_json("".join(self.parts))]
        self.closed = True

    @property
    def text(self) -> str:
        return "".join(self.parts)


class MessageAssembler:
    """Feed it the parts of one Anthropic message; ``finish()`` gives the ChatResponse."""

    def __init__(
        self,
        provider: str,
        *,
        response_format: Mapping[str, Any] | None = None,
        output_type: Any = None,
        parse: bool = True,
    ):
        self.provider = provider
        self._format = response_format
        self._output_type = output_type
        self._parse = parse  # False: structured output is the text, unparsed (a gateway relays it)
        self._stop_sequence: str | None = None
        self._blocks: dict[int, _Block] = {}
        self._calls = 0
        self._id = ""
        self._model = ""
        self._usage: dict[str, int] = {}
        self._stop_reason: str | None = None
        self._stopped = False

    # -- message level ----------------------------------------------------------------------------------
    def start(self, message: Mapping[str, Any]) -> None:
        self._id = str(message.get("id") or "")
        self._model = str(message.get("model") or "")
        self._add_usage(message.get("usage"))

    def message_delta(self, delta: Mapping[str, Any], usage: Any) -> None:
        reason = delta.get("stop_reason")
        if isinstance(reason, str) and reason:
            self._stop_reason = reason
        matched = delta.get("stop_sequence")
        if isinstance(matched, str):
            self._stop_sequence = matched
        self._add_usage(usage)

    def message_stop(self) -> list[StreamEvent]:
        self._stopped = True
        return [e for i in sorted(self._blocks) for e in self.block_stop(i)]

    def _add_usage(self, usage: Any) -> None:
        if not isinstance(usage, Mapping):
            return
        for key in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
            value = usage.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                self._usage[key] = value  # counts are cumulative: the latest wins

    # -- content blocks -------------------------------------------------------------------------------
    def block_start(self, index: int, block: Mapping[str, Any]) -> list[StreamEvent]:
        kind = block.get("type")
        out: list[StreamEvent] = []
        if kind == "text":
            self._blocks[index] = _Block("text")
            out += self._text(index, block.get("text"))
        elif kind == "thinking":
            self._blocks[index] = _Block("thinking")
            out += self._thinking(index, block.get("thinking"))
        elif kind == "tool_use" and block.get("name") == JSON_TOOL and self._format is not None:
            self._blocks[index] = _Block("json")
            out += self._tool_input(index, self._whole_input(block))
        elif kind == "tool_use":
            b = _Block("tool", self._calls, str(block.get("id") or ""), str(block.get("name") or ""))
            self._calls += 1
            self._blocks[index] = b
            args = self._whole_input(block)
            if args:
                b.parts.append(args)
            out.append(ToolCallDelta(b.ordinal, b.id or None, b.name or None, args))
        else:  # redacted_thinking, server tool blocks, …: nothing corral reports
            self._blocks[index] = _Block("other")
        return out

    @staticmethod
    def _whole_input(block: Mapping[str, Any]) -> str:
        # Streams start a tool_use block with an empty input; whole messages carry it complete.
        value = block.get("input")
        return json.dumps(value, ensure_ascii=False) if value else ""

    def block_delta(self, index: int, delta: Mapping[str, Any]) -> list[StreamEvent]:
        kind = delta.get("type")
        if kind == "text_delta":
            return self._text(index, delta.get("text"))
        if kind == "thinking_delta":
            return self._thinking(index, delta.get("thinking"))
        if kind == "input_json_delta":
            partial = delta.get("partial_json")
            return self._tool_input(index, partial if isinstance(partial, str) else "")
        return []  # signature_delta, citations_delta, …

    def block_stop(self, index: int) -> list[StreamEvent]:
        b = self._blocks.get(index)
        if b is None or b.closed:
            return []
        b.close()
        if b.kind == "tool":
            return [ToolCallEnd(b.ordinal, self._call(b))]
        return []

    def _block(self, index: int, kind: BlockKind) -> _Block:
        b = self._blocks.get(index)
        if b is None:  # a delta without its content_block_start: be lenient for text
            b = self._blocks[index] = _Block(kind)
        return b

    def _text(self, index: int, text: Any) -> list[StreamEvent]:
        b = self._block(index, "text")
        if not isinstance(text, str) or not text or b.kind != "text":
            return []
        b.parts.append(text)
        return [ContentDelta(text)]

    def _thinking(self, index: int, text: Any) -> list[StreamEvent]:
        b = self._block(index, "thinking")
        if not isinstance(text, str) or not text or b.kind != "thinking":
            return []
        b.parts.append(text)
        return [ReasoningDelta(text)]

    def _tool_input(self, index: int, partial: str) -> list[StreamEvent]:
        b = self._blocks.get(index)
        if b is None or b.kind not in ("tool", "json"):
            raise ResponseError(f"input_json_delta for content block {index}, which is not a tool_use block")
        if not partial:
            return []
        b.parts.append(partial)
        if b.kind == "json":  # structured output is the reply's text
            return [ContentDelta(partial)]
        return [ToolCallDelta(b.ordinal, None, None, partial)]

    @staticmethod
    def _call(b: _Block) -> ToolCall:
        args = b.text if b.closed else _canonical_json(b.text)
        return ToolCall(b.id or f"toolu_{b.ordinal}", b.name, args)

    # -- the result ---------------------------------------------------------------------------------------
    def _joined(self, kind: BlockKind) -> str:
        return "".join(b.text for _, b in sorted(self._blocks.items()) if b.kind == kind)

    def finish(self) -> ChatResponse:
        if self._stop_reason is None or not self._stopped:
            missing = "a stop reason" if self._stop_reason is None else "message_stop"
            raise ResponseError(
                f"stream ended before the server sent {missing} (connection cut or server crashed)",
                raw=self._joined("text")[-500:],
            )
        blocks = sorted(self._blocks.items())
        calls = tuple(self._call(b) for _, b in blocks if b.kind == "tool")
        json_blocks = [b for _, b in blocks if b.kind == "json"]
        content = "".join(b.text for b in json_blocks) if json_blocks else self._joined("text")
        finish = FINISH_REASONS.get(self._stop_reason, self._stop_reason)
        if finish == "tool_calls" and not calls:
            finish = "stop"  # only the structured-output tool was called: that is the answer
        u = self._usage
        cached = u.get("cache_read_input_tokens", 0)
        prompt = u.get("input_tokens", 0) + cached + u.get("cache_creation_input_tokens", 0)
        parsed = None
        if self._format is not None and self._parse and not calls:
            try:
                parsed = parse_structured(content, self._format, self._output_type)
            except StructuredOutputError as exc:
                if finish == "length":
                    raise StructuredOutputError(
                        f"{exc.message} (the output was cut at max_tokens; allow more tokens)", raw=exc.raw
                    ) from exc
                raise
        return ChatResponse(
            content=content,
            finish_reason=finish,
            usage=Usage(prompt, u.get("output_tokens", 0), cached),
            model=self._model,
            id=self._id,
            reasoning=self._joined("thinking") or None,
            tool_calls=calls,
            provider=self.provider,
            parsed=parsed,
            stop_sequence=self._stop_sequence if self._stop_reason == "stop_sequence" else None,
        )
