"""corral Messages -> Ollama's native /api/chat message objects.

Ollama differs from OpenAI in three ways that matter here: images travel as bare
base64 strings in ``images`` (never URLs), tool-call arguments are JSON objects
(not JSON text), and a tool result names its tool with ``tool_name``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...errors import ConfigurationError
from ...types import ImagePart, Message, TextPart, ToolCall

__all__ = ["inline_image", "messages_to_ollama"]


def inline_image(url: str, where: str) -> str:
    """The base64 payload of a ``data:...;base64,`` URL; Ollama cannot fetch images by URL."""
    if not url.startswith("data:"):
        shown = url if len(url) <= 80 else url[:80] + "…"
        raise ConfigurationError(
            f"{where}: ollama needs inline images (a data:image/...;base64,... URL), got {shown!r}; "
            "download the image and pass its bytes as base64"
        )
    header, sep, data = url.partition(",")
    if not sep or not header.endswith(";base64") or not data:
        raise ConfigurationError(f"{where}: a data: URL for ollama must be base64-encoded (data:<type>;base64,<data>)")
    return data


def _arguments(call: ToolCall, where: str) -> dict[str, Any]:
    text = call.arguments.strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise ConfigurationError(f"{where}.arguments is not valid JSON: {text[:200]!r}") from None
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where}.arguments must be a JSON object for ollama, got {text[:200]!r}")
    return value


def _message(m: Message, i: int, tool_names: dict[str, str]) -> dict[str, Any]:
    where = f"messages[{i}]"
    out: dict[str, Any] = {"role": m.role}
    if m.content is None or isinstance(m.content, str):
        out["content"] = m.content or ""
    else:
        texts: list[str] = []
        images: list[str] = []
        for j, part in enumerate(m.content):
            if isinstance(part, TextPart):
                texts.append(part.text)
            elif isinstance(part, ImagePart):
                images.append(inline_image(part.url, f"{where}.content[{j}]"))
        out["content"] = "".join(texts)
        if images:
            out["images"] = images
    if m.role == "assistant" and m.reasoning:
        out["thinking"] = m.reasoning
    if m.tool_calls:
        calls: list[dict[str, Any]] = []
        for j, c in enumerate(m.tool_calls):
            call: dict[str, Any] = {
                "function": {"name": c.name, "arguments": _arguments(c, f"{where}.tool_calls[{j}]")}
            }
            if c.id:
                call["id"] = c.id  # recent Ollama versions keep ids; older ones ignore the field
            calls.append(call)
        out["tool_calls"] = calls
    if m.role == "tool":
        name = m.name or (tool_names.get(m.tool_call_id) if m.tool_call_id else None)
        if name:
            out["tool_name"] = name
        if m.tool_call_id:
            out["tool_call_id"] = m.tool_call_id
    return out


def messages_to_ollama(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Translate a conversation; a tool result's ``tool_name`` comes from the call it answers."""
    tool_names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        for c in m.tool_calls:
            if c.id:
                tool_names[c.id] = c.name
        out.append(_message(m, i, tool_names))
    return out
