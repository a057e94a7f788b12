"""corral Messages -> OpenAI chat wire format."""

from __future__ import annotations

from typing import Any

from ...types import ImagePart, Message, TextPart

__all__ = ["message_to_openai"]


def message_to_openai(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role}
    if m.content is None or isinstance(m.content, str):
        out["content"] = m.content if m.content is not None else ("" if not m.tool_calls else None)
    else:
        parts: list[dict[str, Any]] = []
        for p in m.content:
            if isinstance(p, TextPart):
                parts.append({"type": "text", "text": p.text})
            elif isinstance(p, ImagePart):
                image: dict[str, Any] = {"url": p.url}
                if p.detail:
                    image["detail"] = p.detail
                parts.append({"type": "image_url", "image_url": image})
        out["content"] = parts
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if m.name is not None:
        out["name"] = m.name
    return out
