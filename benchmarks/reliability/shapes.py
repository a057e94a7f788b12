"""What a client may expect on the wire: error bodies in its protocol's shape, and how a stream ended.

  openai      ``{"error": {"message": str, "type": str, "param": ..., "code": ...}}``
  anthropic   ``{"type": "error", "error": {"type": str, "message": str}}``
  ollama      ``{"error": str}``

A stream ends ``complete`` (OpenAI: a finish_reason and ``[DONE]``; Anthropic: ``message_stop``),
with an ``error`` event, ``truncated`` (neither: what a client SDK takes for a short answer), or
``malformed`` (an event that is not JSON was passed on: the client's parser fails, in no protocol).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any, Literal

__all__ = ["Protocol", "canary_forms", "error_shape_problem", "find_canaries", "protocol_for", "stream_outcome"]

Protocol = Literal["openai", "anthropic", "ollama"]
StreamEnd = Literal["complete", "error", "truncated", "malformed"]


def protocol_for(path: str) -> Protocol:
    """The protocol a route's caller speaks (llama-swap's /api/models/unload is OpenAI-shaped in corral)."""
    if path.startswith("/v1/messages"):
        return "anthropic"
    if path.startswith("/api/") and not path.startswith("/api/models/"):
        return "ollama"
    return "openai"


def error_shape_problem(protocol: Protocol, status: int, content_type: str, body: bytes) -> str | None:
    """None when ``body`` is an error in ``protocol``'s shape; else what is wrong with it."""
    if "json" not in content_type.lower():
        return f"content-type {content_type or 'missing'!r}, not JSON"
    try:
        data = json.loads(body)
    except ValueError:
        return "body is not JSON"
    if not isinstance(data, dict):
        return "body is not a JSON object"
    if protocol == "ollama":
        return None if isinstance(data.get("error"), str) else 'not {"error": "..."}'
    if protocol == "anthropic":
        err = data.get("error")
        if data.get("type") == "error" and isinstance(err, dict) and _strs(err, "type", "message"):
            return None
        return 'not {"type": "error", "error": {"type", "message"}}'
    err = data.get("error")
    if isinstance(err, dict) and _strs(err, "message", "type") and "param" in err and "code" in err:
        return None
    return 'not {"error": {"message", "type", "param", "code"}}'


def _strs(d: dict[str, Any], *keys: str) -> bool:
    return all(isinstance(d.get(k), str) for k in keys)


def sse_events(raw: bytes) -> list[tuple[str, str]]:
    """(event name, data) pairs of an SSE body (the last, unterminated event included)."""
    out: list[tuple[str, str]] = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        name, data = "", []
        for line in block.decode("utf-8", "replace").split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if name or data:
            out.append((name, "\n".join(data)))
    return out


def stream_outcome(protocol: Protocol, raw: bytes) -> tuple[StreamEnd, str]:
    """How a 200 stream ended, and a word on why."""
    events = sse_events(raw)
    finished = done = False
    for name, data in events:
        if name == "error":
            return "error", data[:200]
        if data == "[DONE]":
            done = True
            continue
        try:
            obj = json.loads(data)
        except ValueError:
            return "malformed", f"an event that is not JSON, relayed: {data[:80]!r}"
        if not isinstance(obj, dict):
            continue
        if "error" in obj or obj.get("type") == "error":
            return "error", data[:200]
        if protocol == "anthropic":
            finished |= obj.get("type") == "message_stop"
        else:
            for choice in obj.get("choices") or []:
                if isinstance(choice, dict) and choice.get("finish_reason"):
                    finished = True
    if protocol == "anthropic":
        return ("complete", "message_stop") if finished else ("truncated", "no message_stop, no error event")
    if finished and done:
        return "complete", "finish_reason and [DONE]"
    return "truncated", f"finish_reason={'yes' if finished else 'no'}, [DONE]={'yes' if done else 'no'}, no error"


def canary_forms(secrets: Iterable[str], basic: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    """Every form a secret may leak in -> a label: the value, and for ``user:password`` pairs the
    password and the Basic-auth base64 of the pair."""
    forms: dict[str, str] = {}
    for s in secrets:
        forms[s] = s
    for user, password in basic:
        pair = f"{user}:{password}"
        forms[password] = f"password of {user}"
        forms[base64.b64encode(pair.encode()).decode()] = f"base64({user}:***)"
    return forms


def find_canaries(text: str | bytes, forms: dict[str, str]) -> list[str]:
    """Labels of the canaries present in ``text``."""
    s = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return sorted({label for form, label in forms.items() if form and form in s})
