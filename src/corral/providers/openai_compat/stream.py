"""Assembling OpenAI-shaped chat chunks into events and one ChatResponse.

Whole (non-streamed) responses go through the same state as a single chunk, so
``chat()`` and ``stream().final()`` cannot disagree.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import ResponseError, StructuredOutputError, error_from_response
from ...events import ContentDelta, ReasoningDelta, StreamEvent, ToolCallDelta, ToolCallEnd
from ...reasoning import ThinkSplitter
from ...structured import parse_structured
from ...toolcalls import Refused, checked_calls, refusal_text
from ...types import ChatResponse, Timings, ToolCall, Usage

__all__ = ["ChunkAssembler", "raise_stream_error"]


def raise_stream_error(payload: Mapping[str, Any], provider: str) -> None:
    """An ``error`` object inside a 200 stream becomes the same error an HTTP status would give."""
    err = payload.get("error")
    code = err.get("code") if isinstance(err, Mapping) else None
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    raise error_from_response(status, json.dumps(payload), provider=provider)


class _PendingCall:
    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments: list[str] = []


class ChunkAssembler:
    """Feed OpenAI ``chat.completion(.chunk)`` payloads; get events; ``finish()`` for the response."""

    def __init__(
        self,
        provider: str,
        *,
        response_format: Mapping[str, Any] | None = None,
        output_type: Any = None,
        ignore_reasoning: bool = False,
        tools: Sequence[Mapping[str, Any]] = (),
        stop: Sequence[str] = (),
    ) -> None:
        self.provider = provider
        self._stop = stop
        self._format = response_format
        self._output_type = output_type
        self._ignore_reasoning = ignore_reasoning
        self._tools = tools
        self._checked: tuple[list[ToolCall], list[Refused]] | None = None
        self._logprobs: list[Mapping[str, Any]] | None = None
        self._stop_sequence: str | None = None
        self._think = ThinkSplitter()
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._calls: dict[int, _PendingCall] = {}
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._timings: Timings | None = None
        self._model = ""
        self._id = ""

    def feed(self, payload: dict[str, Any]) -> list[StreamEvent]:
        if "error" in payload or payload.get("__event__") == "error":
            raise_stream_error(payload, self.provider)
        out: list[StreamEvent] = []
        if not self._id:
            self._id = str(payload.get("id") or "")
            self._model = str(payload.get("model") or "")
        choices = payload.get("choices")
        if choices:
            choice = choices[0]
            if not isinstance(choice, Mapping):
                raise ResponseError(f"malformed choice in chunk: {choice!r}", raw=repr(payload))
            delta = choice.get("delta")
            if delta is None:
                delta = choice.get("message") or {}
            logprobs = choice.get("logprobs")
            tokens = logprobs.get("content") if isinstance(logprobs, Mapping) else None
            if isinstance(tokens, list) and tokens:
                self._logprobs = (self._logprobs or []) + tokens
            self._delta(delta, out, tuple(tokens) if isinstance(tokens, list) and tokens else None)
            if choice.get("finish_reason"):
                self._finish = str(choice["finish_reason"])
                out.extend(self._flush_text())
                out.extend(self._end_calls())
        usage = payload.get("usage")
        if isinstance(usage, Mapping):
            details = usage.get("prompt_tokens_details") or {}
            self._usage = Usage(
                int(usage.get("prompt_tokens") or 0),
                int(usage.get("completion_tokens") or 0),
                int(details.get("cached_tokens") or 0) if isinstance(details, Mapping) else 0,
            )
        timings = payload.get("timings")
        if isinstance(timings, Mapping):
            self._timings = Timings.from_llamacpp(timings)
        verbose = payload.get("__verbose")  # llama.cpp, asked with "verbose": which stop string matched
        if isinstance(verbose, Mapping) and verbose.get("stop_type") == "word":
            word = verbose.get("stopping_word")
            self._stop_sequence = word if isinstance(word, str) and word in self._stop else None
        return out

    def usage_so_far(self) -> Usage | None:
        """The usage known before the end (llama.cpp's per-token timings), or None."""
        if self._usage is not None:
            return self._usage
        t = self._timings
        return Usage(t.prompt_tokens + t.cached_tokens, t.predicted_tokens, t.cached_tokens) if t else None

    def _delta(
        self, delta: Mapping[str, Any], out: list[StreamEvent], logprobs: tuple[Mapping[str, Any], ...] | None
    ) -> None:
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning and not self._ignore_reasoning:
            self._reasoning.append(reasoning)
            out.append(ReasoningDelta(reasoning))
        content = delta.get("content")
        if isinstance(content, str) and content:
            for kind, text in self._think.feed(content):
                self._text_event(kind, text, out, logprobs)
                logprobs = None  # given once, with the chunk's first text
        for i, tc in enumerate(delta.get("tool_calls") or ()):
            self._tool_delta(tc, i, out)

    def _text_event(
        self, kind: str, text: str, out: list[StreamEvent], logprobs: tuple[Mapping[str, Any], ...] | None = None
    ) -> None:
        if kind == "reasoning":
            self._reasoning.append(text)
            out.append(ReasoningDelta(text))
        else:
            self._content.append(text)
            out.append(ContentDelta(text, logprobs))

    def _flush_text(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for kind, text in self._think.flush():
            self._text_event(kind, text, out)
        return out

    def _tool_delta(self, tc: Any, position: int, out: list[StreamEvent]) -> None:
        if not isinstance(tc, Mapping):
            raise ResponseError(f"malformed tool call in chunk: {tc!r}", raw=repr(tc))
        index = tc.get("index", position)
        if not isinstance(index, int):
            raise ResponseError(f"tool call index is not an integer: {index!r}", raw=repr(tc))
        pending = self._calls.setdefault(index, _PendingCall())
        fn = tc.get("function") or {}
        call_id = tc.get("id")
        name = fn.get("name")
        args = fn.get("arguments")
        if args is not None and not isinstance(args, str):
            args = json.dumps(args)  # some servers send arguments as an object
        if call_id:
            pending.id = str(call_id)
        if name and not pending.name:
            pending.name = str(name)
        if args:
            pending.arguments.append(args)
        out.append(ToolCallDelta(index, call_id or None, name or None, args or ""))

    def _end_calls(self) -> list[StreamEvent]:
        """The calls, repaired and checked once the model has finished them: each callable one as a
        ToolCallEnd, the refused ones as text (see corral.toolcalls)."""
        good, refused = self._checked_calls()
        out: list[StreamEvent] = [ToolCallEnd(i, c) for i, c in enumerate(good)]
        if refused:
            text = ("\n" if self._content else "") + refusal_text(refused)
            self._content.append(text)
            out.append(ContentDelta(text))
        return out

    def _checked_calls(self) -> tuple[list[ToolCall], list[Refused]]:
        if self._checked is None:
            raw = [self._call(i, p) for i, p in sorted(self._calls.items())]
            self._checked = checked_calls(raw, self._tools, self._finish) if raw else ([], [])
        return self._checked

    def _call(self, index: int, pending: _PendingCall) -> ToolCall:
        if not pending.id:
            # The server sent no id (Ollama, some OpenAI-compatible hosts). A positional "call_0" would
            # repeat every turn, and Anthropic rejects a conversation whose tool_use ids repeat.
            pending.id = f"call_{uuid.uuid4().hex[:24]}"
        return ToolCall(pending.id, pending.name, "".join(pending.arguments))

    def finish(self) -> ChatResponse:
        if self._finish is None:
            raise ResponseError(
                "stream ended before the server sent a finish reason (connection cut or server crashed)",
                raw="".join(self._content)[-500:],
            )
        good, refused = self._checked_calls()
        calls = tuple(good)
        finish = self._finish
        if refused and not calls and finish == "tool_calls":
            finish = "stop"  # what the model meant as calls is text now: nothing to call
        usage = self._usage
        if usage is None and self._timings is not None:
            t = self._timings
            usage = Usage(t.prompt_tokens + t.cached_tokens, t.predicted_tokens, t.cached_tokens)
        content = "".join(self._content)
        parsed = None
        if self._format is not None and not calls:
            try:
                parsed = parse_structured(content, self._format, self._output_type)
            except StructuredOutputError as exc:
                if self._finish == "length":
                    raise StructuredOutputError(
                        f"{exc.message} (the output was cut at max_tokens; allow more tokens)", raw=exc.raw
                    ) from exc
                raise
        return ChatResponse(
            content=content,
            finish_reason=finish,
            usage=usage or Usage(),
            model=self._model,
            id=self._id,
            reasoning="".join(self._reasoning) or None,
            tool_calls=calls,
            timings=self._timings,
            provider=self.provider,
            parsed=parsed,
            stop_sequence=self._stop_sequence if finish == "stop" else None,
            logprobs=tuple(self._logprobs) if self._logprobs is not None else None,
        )
