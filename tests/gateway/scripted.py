"""Scripted backends for agent tests: one loopback server that answers OpenAI chat completions,
Anthropic messages and Ollama chat, whole or streamed, each request with the next turn of a script (a
text answer or a tool call), so an agent loop (call a tool, then answer) runs without a model that can
call tools. Every request is recorded (see :class:`~.canned.Canned`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .canned import Canned, Reply, json_reply, sse, sse_reply

__all__ = ["Call", "Scripted", "Text"]

USAGE = {"prompt": 11, "completion": 5}


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Call:
    name: str
    arguments: dict[str, Any]
    id: str = "call_scripted_1"


Turn = Text | Call


class Scripted:
    """``Scripted([Call("get_weather", {"city": "Paris"}), Text("Sunny.")])``: the n-th chat request is
    answered with the n-th turn (the last one repeats). ``routes`` adds or replaces routes (e.g. a
    native /v1/responses)."""

    def __init__(self, turns: list[Turn], routes: dict[str, Callable[[dict[str, Any]], Reply]] | None = None) -> None:
        self.turns = turns
        self.served = 0
        self.server = Canned(
            {
                "/v1/chat/completions": self._openai,
                "/v1/messages": self._anthropic,
                "/api/chat": self._ollama,
                **(routes or {}),
            }
        )
        self.url = self.server.url

    def _turn(self) -> Turn:
        turn = self.turns[min(self.served, len(self.turns) - 1)]
        self.served += 1
        return turn

    # -- OpenAI chat completions -------------------------------------------------------------------------------
    def _openai(self, body: dict[str, Any]) -> Reply:
        turn = self._turn()
        usage = {"prompt_tokens": USAGE["prompt"], "completion_tokens": USAGE["completion"],
                 "total_tokens": USAGE["prompt"] + USAGE["completion"]}  # fmt: skip
        head = {"id": "chatcmpl-s", "created": 1, "model": body.get("model", "m")}
        if isinstance(turn, Text):
            message: dict[str, Any] = {"role": "assistant", "content": turn.text}
            finish = "stop"
        else:
            fn = {"name": turn.name, "arguments": json.dumps(turn.arguments)}
            message = {"role": "assistant", "content": None,
                       "tool_calls": [{"id": turn.id, "type": "function", "function": fn}]}  # fmt: skip
            finish = "tool_calls"
        if not body.get("stream"):
            choice = {"index": 0, "message": message, "finish_reason": finish}
            return json_reply({**head, "object": "chat.completion", "choices": [choice], "usage": usage})

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            return {**head, "object": "chat.completion.chunk", "choices": [choice]}

        if isinstance(turn, Text):
            words = turn.text.split(" ")
            deltas = [chunk({"content": w if i == 0 else " " + w}) for i, w in enumerate(words)]
        else:
            call = message["tool_calls"][0]
            deltas = [chunk({"tool_calls": [{"index": 0, **call}]})]
        tail = {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage}
        return sse_reply(sse(chunk({"role": "assistant"}), *deltas, chunk({}, finish), tail))

    # -- Anthropic messages --------------------------------------------------------------------------------------
    def _anthropic(self, body: dict[str, Any]) -> Reply:
        turn = self._turn()
        if isinstance(turn, Text):
            block: dict[str, Any] = {"type": "text", "text": turn.text}
            stop = "end_turn"
        else:
            block = {"type": "tool_use", "id": "toolu_scripted_1", "name": turn.name, "input": turn.arguments}
            stop = "tool_use"
        usage = {"input_tokens": USAGE["prompt"], "output_tokens": USAGE["completion"]}
        message = {"id": "msg_s", "type": "message", "role": "assistant", "model": body.get("model", "m"),
                   "stop_reason": stop, "stop_sequence": None}  # fmt: skip
        if not body.get("stream"):
            return json_reply({**message, "content": [block], "usage": usage})
        start_usage = {"input_tokens": USAGE["prompt"], "output_tokens": 0}
        start = {**message, "content": [], "stop_reason": None, "usage": start_usage}
        if isinstance(turn, Text):
            first, delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": turn.text}
        else:
            first = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(turn.arguments)}
        events = [
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": first}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                               "usage": usage}),
            ("message_stop", {"type": "message_stop"}),
        ]  # fmt: skip
        return sse_reply([f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events])

    # -- Ollama chat ---------------------------------------------------------------------------------------------
    def _ollama(self, body: dict[str, Any]) -> Reply:
        turn = self._turn()
        head = {"model": body.get("model", "m"), "created_at": "2026-01-01T00:00:00Z"}
        if isinstance(turn, Text):
            message: dict[str, Any] = {"role": "assistant", "content": turn.text}
        else:
            message = {"role": "assistant", "content": "",
                       "tool_calls": [{"function": {"name": turn.name, "arguments": turn.arguments}}]}  # fmt: skip
        end = {"done": True, "done_reason": "stop", "prompt_eval_count": USAGE["prompt"],
               "eval_count": USAGE["completion"], "total_duration": 1000}  # fmt: skip
        if body.get("stream") is False:
            return json_reply({**head, "message": message, **end})
        last = {**head, "message": {"role": "assistant", "content": ""}, **end}
        lines = [{**head, "message": message, "done": False}, last]
        return 200, "application/x-ndjson", [json.dumps(line).encode() + b"\n" for line in lines]

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return self.server.bodies(path)

    def close(self) -> None:
        self.server.close()
