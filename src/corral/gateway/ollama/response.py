"""corral's answers in Ollama's shape: whole (/api/chat ``message``, /api/generate ``response``) and
streamed as NDJSON lines, the last with ``done: true``, ``done_reason`` and the statistics.

Statistics are nanoseconds: ``total_duration`` from the request's arrival, ``load_duration`` the
time routing took (a managed model's start included), and the prompt and generation times from
llama.cpp's own ``timings`` when the backend sent them; else, for a stream, the wall clock split
at the first token (a whole answer without timings gets ``eval_duration`` only). No I/O.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from ...events import ContentDelta, Done, ReasoningDelta, StreamEvent, ToolCallEnd
from ...types import ChatResponse, Completion, ToolCall, Usage
from ..anthropic.wire import tool_input

__all__ = ["OllamaLineWriter", "created_at", "done_reason", "ndjson", "ollama_chat", "ollama_generate", "statistics"]


def ndjson(obj: Mapping[str, Any]) -> bytes:
    # backslashreplace: a lone surrogate an upstream decoded from "\ud800" goes back out as that escape
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "backslashreplace") + b"\n"


_SECOND: list[Any] = [-1, ""]  # the last second formatted: strftime is most of the cost, once a second


def created_at() -> str:
    """Now, as Ollama writes it: RFC 3339 in UTC with microseconds."""
    now = time.time()
    second = int(now)
    if second != _SECOND[0]:
        _SECOND[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_SECOND[1]}.{int((now - second) * 1e6):06d}Z"


def done_reason(finish: str) -> str:
    return "length" if finish == "length" else "stop"  # tool calls end with "stop" in Ollama too


def statistics(
    options: Mapping[str, Any], usage: Usage, timings: Any, first_token_ns: int | None = None
) -> dict[str, int]:
    """The final object's counts and durations (see the module notes)."""
    now = time.perf_counter_ns()
    started = options["started"]
    routed = options.get("routed", started)
    out = {
        "total_duration": now - started,
        "load_duration": routed - started,
        "prompt_eval_count": usage.prompt_tokens,
    }
    if timings is not None:
        out["prompt_eval_duration"] = int(timings.prompt_ms * 1e6)
        out["eval_count"] = usage.completion_tokens
        out["eval_duration"] = int(timings.predicted_ms * 1e6)
    elif first_token_ns is not None:
        out["prompt_eval_duration"] = first_token_ns - routed
        out["eval_count"] = usage.completion_tokens
        out["eval_duration"] = now - first_token_ns
    else:
        out["eval_count"] = usage.completion_tokens
        out["eval_duration"] = now - routed
    return out


def _call(call: ToolCall, index: int) -> dict[str, Any]:
    fn = {"index": index, "name": call.name, "arguments": tool_input(call.arguments)}
    return {"id": call.id, "function": fn} if call.id else {"function": fn}


def ollama_chat(resp: ChatResponse, options: Mapping[str, Any], model: str) -> dict[str, Any]:
    """A whole /api/chat answer."""
    message: dict[str, Any] = {"role": "assistant", "content": resp.content}
    if resp.reasoning:
        message["thinking"] = resp.reasoning
    if resp.tool_calls:
        message["tool_calls"] = [_call(c, i) for i, c in enumerate(resp.tool_calls)]
    out = {"model": model, "created_at": created_at(), "message": message, "done": True,
           "done_reason": done_reason(resp.finish_reason), **statistics(options, resp.usage, resp.timings)}  # fmt: skip
    if resp.logprobs:
        out["logprobs"] = list(resp.logprobs)  # OpenAI's items are Ollama's: token, logprob, bytes, top_logprobs
    return out


def ollama_generate(resp: ChatResponse | Completion, options: Mapping[str, Any], model: str) -> dict[str, Any]:
    """A whole /api/generate answer (from a chat, or a raw or fill-in-the-middle completion)."""
    out: dict[str, Any] = {"model": model, "created_at": created_at()}
    if isinstance(resp, Completion):
        out["response"] = resp.text
    else:
        out["response"] = resp.content
        if resp.reasoning:
            out["thinking"] = resp.reasoning
        if resp.logprobs:
            out["logprobs"] = list(resp.logprobs)
    return out | {"done": True, "done_reason": done_reason(resp.finish_reason),
                  **statistics(options, resp.usage, resp.timings)}  # fmt: skip


class OllamaLineWriter:
    """corral stream events -> /api/chat or /api/generate NDJSON lines. Text and thinking go out as
    they come; a tool call goes out whole when it ends (Ollama sends calls whole, arguments as an
    object). ``event(Done(r))`` first sends what of ``r`` was never streamed, then the final line."""

    media_type = "application/x-ndjson"

    def __init__(self, model: str, options: Mapping[str, Any]) -> None:
        self.model = model
        self.options = options
        self.chat = options["kind"] == "chat"
        self._first: int | None = None
        self._seen: set[str] = set()
        self._sent: Counter[ToolCall] = Counter()
        self._calls = 0
        self._finished = False
        # A text line is the hot path (one per token): its fixed parts are encoded once.
        head = '{"model":' + json.dumps(model, ensure_ascii=False) + ',"created_at":"'
        into = '","message":{"role":"assistant","content":' if self.chat else '","response":'
        self._text_head, self._text_into = head, into
        self._text_tail = '},"done":false}\n' if self.chat else ',"done":false}\n'

    def _line(self, content: str = "", thinking: str | None = None, calls: list[dict[str, Any]] | None = None,
              last: Mapping[str, Any] | None = None, logprobs: Any = None) -> bytes:  # fmt: skip
        out: dict[str, Any] = {"model": self.model, "created_at": created_at()}
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if thinking is not None:
                message["thinking"] = thinking
            if calls:
                message["tool_calls"] = calls
            out["message"] = message
        else:
            out["response"] = content
            if thinking is not None:
                out["thinking"] = thinking
        if logprobs:
            out["logprobs"] = list(logprobs)
        if last is None:
            out["done"] = False
            return ndjson(out)
        return ndjson(out | {"done": True, **last})

    def _mark(self) -> None:
        if self._first is None:
            self._first = time.perf_counter_ns()

    def _tool(self, call: ToolCall) -> bytes:
        self._mark()
        line = self._line(calls=[_call(call, self._calls)])
        self._calls += 1
        return line

    def start(self) -> bytes:
        return b""

    def event(self, e: StreamEvent) -> bytes:
        if self._finished:
            return b""
        if isinstance(e, ContentDelta) and e.text:
            self._mark()
            self._seen.add("content")
            if e.logprobs:
                return self._line(e.text, logprobs=e.logprobs)
            text = json.dumps(e.text, ensure_ascii=False)
            line = f"{self._text_head}{created_at()}{self._text_into}{text}{self._text_tail}"
            return line.encode("utf-8", "backslashreplace")
        if isinstance(e, ReasoningDelta) and e.text:
            self._mark()
            self._seen.add("thinking")
            return self._line(thinking=e.text)
        if isinstance(e, ToolCallEnd):
            self._sent[e.call] += 1
            return self._tool(e.call)
        if isinstance(e, Done):
            return self.finish(e.response)
        return b""  # ToolCallDelta: the call goes out whole when it ends

    def finish(self, resp: ChatResponse) -> bytes:
        out = b""
        if resp.reasoning and "thinking" not in self._seen:
            out += self._line(thinking=resp.reasoning)
        if resp.content and "content" not in self._seen:
            out += self._line(resp.content)
        for call in resp.tool_calls:
            if self._sent[call] > 0:
                self._sent[call] -= 1
            else:
                out += self._tool(call)
        self._finished = True
        last = {"done_reason": done_reason(resp.finish_reason),
                **statistics(self.options, resp.usage, resp.timings, self._first)}  # fmt: skip
        return out + self._line(last=last)

    def end(self) -> bytes:
        return b""  # the final line went out with Done

    def error(self, status: int, kind: str, message: str) -> bytes:
        """A failure after the stream started: Ollama's ``{"error": "..."}`` line."""
        return ndjson({"error": message})
