"""Ollama's /api/chat answers (NDJSON lines, or one object) -> events and one ChatResponse.

Each Ollama object is rewritten as an OpenAI-shaped chunk and fed to the shared
:class:`ChunkAssembler`, so think-tag splitting, tool-call assembly, structured
output and ``chat()`` == ``stream().final()`` behave exactly as for every other
provider.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import ResponseError, error_from_response
from ...events import StreamEvent
from ...types import ChatResponse, Usage
from ..openai_compat.stream import ChunkAssembler

__all__ = ["OllamaStreamState", "ollama_timings"]

_NS_PER_MS = 1e6
_NS_PER_S = 1e9
_METRICS = ("prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration")


def _count(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def ollama_timings(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """Ollama's counts and nanosecond durations in llama.cpp's ``timings`` shape (None if absent)."""
    if not any(k in payload for k in _METRICS):
        return None
    prompt_n, prompt_ns = _count(payload.get("prompt_eval_count")), _count(payload.get("prompt_eval_duration"))
    eval_n, eval_ns = _count(payload.get("eval_count")), _count(payload.get("eval_duration"))
    return {
        "prompt_n": prompt_n,
        "prompt_ms": prompt_ns / _NS_PER_MS,
        "prompt_per_second": prompt_n / (prompt_ns / _NS_PER_S) if prompt_ns else 0.0,
        "predicted_n": eval_n,
        "predicted_ms": eval_ns / _NS_PER_MS,
        "predicted_per_second": eval_n / (eval_ns / _NS_PER_S) if eval_ns else 0.0,
    }


class OllamaStreamState:
    """Feed Ollama chat objects; ``finish()`` once the ``done: true`` object has arrived."""

    def __init__(
        self,
        provider: str,
        *,
        response_format: Mapping[str, Any] | None = None,
        output_type: Any = None,
        tools: Sequence[Mapping[str, Any]] = (),
    ):
        self.provider = provider
        self._asm = ChunkAssembler(provider, response_format=response_format, output_type=output_type, tools=tools)
        self._calls = 0  # tool calls seen so far: Ollama sends each one whole, without an index
        self._done = False

    def feed(self, payload: dict[str, Any]) -> list[StreamEvent]:
        if "error" in payload:
            # Ollama reports a failure after the 200 status as {"error": "..."}; the status is lost,
            # so it can only be a server error.
            raise error_from_response(500, json.dumps(payload), provider=self.provider)
        if self._done:
            return []
        message = payload.get("message") or {}
        if not isinstance(message, Mapping):
            raise ResponseError(f"malformed message in ollama chunk: {message!r}", raw=repr(payload))
        choice: dict[str, Any] = {"index": 0, "delta": self._delta(message, payload), "finish_reason": None}
        chunk: dict[str, Any] = {"model": payload.get("model") or "", "choices": [choice]}
        if payload.get("done") is True:
            self._done = True
            choice["finish_reason"] = "tool_calls" if self._calls else str(payload.get("done_reason") or "stop")
            chunk["usage"] = {
                "prompt_tokens": _count(payload.get("prompt_eval_count")),
                "completion_tokens": _count(payload.get("eval_count")),
            }
            timings = ollama_timings(payload)
            if timings is not None:
                chunk["timings"] = timings
        return self._asm.feed(chunk)

    def _delta(self, message: Mapping[str, Any], payload: Mapping[str, Any]) -> dict[str, Any]:
        delta: dict[str, Any] = {}
        thinking = message.get("thinking")
        if isinstance(thinking, str) and thinking:
            delta["reasoning_content"] = thinking
        content = message.get("content")
        if isinstance(content, str) and content:
            delta["content"] = content
        calls = message.get("tool_calls") or []
        if not isinstance(calls, list):
            raise ResponseError(f"malformed tool_calls in ollama chunk: {calls!r}", raw=repr(payload))
        converted = []
        for tc in calls:
            fn = tc.get("function") if isinstance(tc, Mapping) else None
            if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
                raise ResponseError(f"malformed tool call in ollama chunk: {tc!r}", raw=repr(payload))
            args = fn.get("arguments")
            text = args if isinstance(args, str) else json.dumps(args if args is not None else {})
            converted.append(
                {"index": self._calls, "id": tc.get("id") or None, "function": {"name": fn["name"], "arguments": text}}
            )
            self._calls += 1
        if converted:
            delta["tool_calls"] = converted
        return delta

    def finish(self) -> ChatResponse:
        if not self._done:
            raise ResponseError(
                "ollama stream ended before its final message (done: true) arrived (connection cut or server crashed)",
                raw=None,
            )
        return self._asm.finish()

    def usage_so_far(self) -> Usage | None:
        return self._asm.usage_so_far()
