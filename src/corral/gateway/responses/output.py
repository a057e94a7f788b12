"""corral's answer as a Responses API ``response`` object, whole or as the streamed events the openai
SDK's ``ResponseStream`` and Codex accept. Pure translation, no I/O.

One writer builds both: a stream sends each output item as it forms (``response.output_item.added``,
its content part, deltas, ``.done`` events, ``response.output_item.done``), numbered by
``sequence_number``; a whole answer is the same writer fed only the final response, with no frames.

* Reasoning is the model's own text, so it goes out as a ``reasoning`` item's ``reasoning_text``
  content (as gpt-oss does), not as a summary; text as a ``message`` item's ``output_text``.
* A tool call goes out whole when it ends (one arguments delta): partial arguments cannot be taken
  back. Function tools become ``function_call`` items (``namespace`` restored), custom tools
  ``custom_tool_call`` items whose ``input`` is the call's ``input`` argument.
* ``finish_reason`` "length" makes the response ``incomplete`` (``incomplete_details.reason`` =
  "max_output_tokens") and its last item ``incomplete``; the final event is then
  ``response.incomplete``, as OpenAI sends it, else ``response.completed``.
* corral does not keep responses: ``store`` is always false in the answer.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...events import ContentDelta, Done, ReasoningDelta, StreamEvent, ToolCallEnd
from ...types import ChatResponse, ToolCall, Usage
from ..openai.fields import sse_json
from .request import ToolName

__all__ = ["ResponseMeta", "ResponsesEventWriter", "error_code", "new_id", "response_object", "responses_usage"]

#: request fields a response object repeats, with the value it shows when the request left one out
ECHOED: dict[str, Any] = {
    "instructions": None,
    "max_output_tokens": None,
    "max_tool_calls": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "temperature": None,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_p": None,
    "truncation": "disabled",
    "user": None,
}
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(16).hex()}"  # as unique as a uuid4, at a third of the cost


def error_code(status: int) -> str:
    """A ``response.error.code`` for a failure with this HTTP status."""
    if status == 429:
        return "rate_limit_exceeded"
    return "invalid_prompt" if 400 <= status < 500 else "server_error"


@dataclass(slots=True)
class ResponseMeta:
    """What every event and the final object say about the response."""

    model: str
    echo: dict[str, Any] = field(default_factory=dict)  # the request's ECHOED fields as sent
    tools: Mapping[str, ToolName] = field(default_factory=dict)
    id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = 0


def responses_usage(u: Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": u.completion_tokens,
        # No backend corral translates from counts reasoning tokens apart (OpenAI itself passes through).
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.total_tokens,
    }


def _tool_item(call: ToolCall, tools: Mapping[str, ToolName]) -> dict[str, Any]:
    known = tools.get(call.name)
    call_id = call.id or new_id("call")
    if known is not None and known.kind == "custom":
        try:
            args = json.loads(call.arguments) if call.arguments.strip() else {}
        except ValueError:
            args = None
        text = args.get("input") if isinstance(args, dict) else None
        item = {"id": new_id("ctc"), "type": "custom_tool_call", "status": "completed", "call_id": call_id,
                "name": known.name, "input": text if isinstance(text, str) else call.arguments}  # fmt: skip
    else:
        name = known.name if known is not None else call.name
        item = {"id": new_id("fc"), "type": "function_call", "status": "completed", "call_id": call_id,
                "name": name, "arguments": call.arguments}  # fmt: skip
    if known is not None and known.namespace:
        item["namespace"] = known.namespace
    return item


class _Open:
    """A message or reasoning item being streamed."""

    __slots__ = ("head", "id", "index", "kind", "mid", "tail", "texts")

    def __init__(self, kind: str, index: int) -> None:
        self.kind = kind  # "message" or "reasoning"
        self.index = index
        self.id = new_id("msg" if kind == "message" else "rs")
        self.texts: list[str] = []
        # A delta frame is head + sequence number + mid + the JSON string + tail (see _text).
        event = "response.output_text.delta" if kind == "message" else "response.reasoning_text.delta"
        self.head = f'event: {event}\ndata: {{"type":"{event}","sequence_number":'.encode()
        self.mid = f',"item_id":"{self.id}","output_index":{index},"content_index":0,"delta":'.encode()
        self.tail = b',"logprobs":[]}\n\n' if kind == "message" else b"}\n\n"

    def part(self, text: str) -> dict[str, Any]:
        if self.kind == "message":
            return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
        return {"type": "reasoning_text", "text": text}

    def item(self, status: str, text: str | None = None) -> dict[str, Any]:
        content = [] if text is None else [self.part(text)]
        if self.kind == "message":
            return {"id": self.id, "type": "message", "status": status, "role": "assistant", "content": content}
        return {"id": self.id, "type": "reasoning", "status": status, "summary": [], "content": content}


class ResponsesEventWriter:
    """corral stream events -> Responses API SSE events (see the module notes). ``event(Done(r))`` is
    ``finish(r)``; after it, ``final`` holds the response object."""

    media_type = "text/event-stream"

    def __init__(self, meta: ResponseMeta, *, frames: bool = True, hold_text: bool = False) -> None:
        self.meta = meta
        self._frames = frames
        #: a forced tool call: text the model writes first is held back and sent after the calls
        self._hold_text = hold_text
        self._seq = 0
        self._items: list[dict[str, Any]] = []
        self._open: _Open | None = None
        self._started = False
        self._finished = False
        self._seen: set[str] = set()
        self._calls_sent: Counter[ToolCall] = Counter()
        self.final: dict[str, Any] | None = None

    # -- frames --------------------------------------------------------------------------------------------------
    def _emit(self, kind: str, fields: dict[str, Any]) -> bytes:
        seq = self._seq
        self._seq += 1
        if not self._frames:
            return b""
        payload = sse_json({"type": kind, "sequence_number": seq, **fields})
        return f"event: {kind}\ndata: {payload}\n\n".encode()

    def response(self, status: str, **fields: Any) -> dict[str, Any]:
        m = self.meta
        echo = {key: m.echo.get(key, default) for key, default in ECHOED.items()}
        effort = m.echo.get("reasoning")
        out: dict[str, Any] = {
            "id": m.id, "object": "response", "created_at": m.created_at, "status": status, "background": False,
            "error": None, "incomplete_details": None, "model": m.model, "output": list(self._items),
            "previous_response_id": None, "reasoning": dict(effort) if isinstance(effort, Mapping) else
            {"effort": None, "summary": None}, "store": False, "usage": None, **echo,
        }  # fmt: skip
        out.update(fields)
        return out

    def start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        head = self.response("in_progress")
        return self._emit("response.created", {"response": head}) + self._emit(
            "response.in_progress", {"response": head}
        )

    # -- items ---------------------------------------------------------------------------------------------------
    def _close(self, status: str = "completed") -> bytes:
        o = self._open
        if o is None:
            return b""
        self._open = None
        text = "".join(o.texts)
        where = {"item_id": o.id, "output_index": o.index, "content_index": 0}
        if o.kind == "message":
            out = self._emit("response.output_text.done", {**where, "text": text, "logprobs": []})
        else:
            out = self._emit("response.reasoning_text.done", {**where, "text": text})
        out += self._emit("response.content_part.done", {**where, "part": o.part(text)})
        item = o.item(status, text)
        self._items.append(item)
        return out + self._emit("response.output_item.done", {"output_index": o.index, "item": item})

    def _text(self, kind: str, text: str) -> bytes:
        self._seen.add(kind)
        out = b""
        if self._open is None or self._open.kind != kind:
            out = self._close()
            o = self._open = _Open(kind, len(self._items))
            out += self._emit("response.output_item.added", {"output_index": o.index, "item": o.item("in_progress")})
            where = {"item_id": o.id, "output_index": o.index, "content_index": 0}
            out += self._emit("response.content_part.added", {**where, "part": o.part("")})
        o = self._open
        o.texts.append(text)
        # The hot path (a frame per token): the frame around the delta is the same for the whole item,
        # so only the sequence number and the delta are encoded here.
        seq = self._seq
        self._seq += 1
        if not self._frames:
            return out
        return out + b"".join((o.head, str(seq).encode(), o.mid, json.dumps(text, ensure_ascii=False).encode(), o.tail))

    def _tool(self, call: ToolCall) -> bytes:
        out = self._close()
        item = _tool_item(call, self.meta.tools)
        index = len(self._items)
        custom = item["type"] == "custom_tool_call"
        key, event = (
            ("input", "response.custom_tool_call_input")
            if custom
            else ("arguments", "response.function_call_arguments")
        )
        out += self._emit(
            "response.output_item.added", {"output_index": index, "item": {**item, "status": "in_progress", key: ""}}
        )
        where = {"item_id": item["id"], "output_index": index}
        out += self._emit(f"{event}.delta", {**where, "delta": item[key]})
        done = {**where, key: item[key]} | ({} if custom else {"name": item["name"]})
        out += self._emit(f"{event}.done", done)
        self._items.append(item)
        return out + self._emit("response.output_item.done", {"output_index": index, "item": item})

    # -- EventWriter -----------------------------------------------------------------------------------------------
    def event(self, e: StreamEvent) -> bytes:
        if self._finished:
            return b""
        head = self.start()
        if isinstance(e, ContentDelta) and e.text and not self._hold_text:
            return head + self._text("message", e.text)
        if isinstance(e, ReasoningDelta) and e.text:
            return head + self._text("reasoning", e.text)
        if isinstance(e, ToolCallEnd):
            self._calls_sent[e.call] += 1
            return head + self._tool(e.call)
        if isinstance(e, Done):
            return head + self.finish(e.response)
        return head  # ToolCallDelta: the call goes out whole when it ends

    def finish(self, resp: ChatResponse) -> bytes:
        """What of ``resp`` was not streamed, then the final ``response.completed`` (or
        ``response.incomplete``) event."""
        if self._finished:
            return b""
        out = self.start()
        if resp.reasoning and "reasoning" not in self._seen:
            out += self._text("reasoning", resp.reasoning)
        if resp.content and "message" not in self._seen:
            out += self._text("message", resp.content)
        if not resp.tool_calls and not self._items and (self._open is None or self._open.kind != "message"):
            out += self._text("message", "")  # an empty answer is still a message
        reason = _INCOMPLETE.get(resp.finish_reason) if not resp.tool_calls else None
        for call in resp.tool_calls:
            if self._calls_sent[call] > 0:
                self._calls_sent[call] -= 1
            else:
                out += self._tool(call)
        out += self._close("incomplete" if reason else "completed")
        self._finished = True
        status = "incomplete" if reason else "completed"
        self.final = self.response(
            status,
            usage=responses_usage(resp.usage),
            incomplete_details={"reason": reason} if reason else None,
            completed_at=self.meta.created_at if not reason else None,
        )
        return out + self._emit(f"response.{status}", {"response": self.final})

    def end(self) -> bytes:
        return b""  # the final event went out with Done

    def error(self, status: int, kind: str, message: str) -> bytes:
        """``response.failed`` for a failure after the stream started, with the items so far."""
        out = self.start() + self._close("incomplete")
        self._finished = True
        failed = self.response("failed", error={"code": error_code(status), "message": message})
        return out + self._emit("response.failed", {"response": failed})


def response_object(resp: ChatResponse, meta: ResponseMeta) -> dict[str, Any]:
    """A whole ``response`` object."""
    writer = ResponsesEventWriter(meta, frames=False)
    writer.finish(resp)
    assert writer.final is not None
    return writer.final
