"""corral Messages -> Anthropic Messages API ``system`` + ``messages``.

The API has no system role (the system prompt is a top-level field), wants tool
results as ``tool_result`` blocks inside a user turn, and requires user and
assistant turns to alternate: consecutive turns of one role are merged into one
message with several content blocks.
"""

from __future__ import annotations

import json
from typing import Any

from ...errors import ConfigurationError
from ...types import ContentPart, ImagePart, Message, TextPart

__all__ = ["image_block", "to_anthropic_messages"]


def image_block(part: ImagePart, where: str) -> dict[str, Any]:
    """An image part as an Anthropic ``image`` block: inline base64 for data: URLs, else by URL."""
    url = part.url
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding.lower() != "base64" or not media_type:
            raise ConfigurationError(f"{where}: a data: image URL must be data:<media type>;base64,<data>")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise ConfigurationError(f"{where}: image URL must be a data: URL or an http(s) URL, got {url[:40]!r}")


def _part_blocks(parts: tuple[ContentPart, ...], where: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for j, p in enumerate(parts):
        if isinstance(p, TextPart):
            if p.text:  # the API rejects empty text blocks
                blocks.append({"type": "text", "text": p.text})
        elif isinstance(p, ImagePart):
            blocks.append(image_block(p, f"{where}.content[{j}]"))
    return blocks


def _content_blocks(m: Message, where: str) -> list[dict[str, Any]]:
    if m.content is None:
        return []
    if isinstance(m.content, str):
        return [{"type": "text", "text": m.content}] if m.content else []
    return _part_blocks(m.content, where)


def _tool_use(m: Message, where: str) -> list[dict[str, Any]]:
    blocks = []
    for j, call in enumerate(m.tool_calls):
        try:
            args = json.loads(call.arguments) if call.arguments.strip() else {}
        except ValueError:
            raise ConfigurationError(
                f"{where}.tool_calls[{j}]: arguments of {call.name!r} are not valid JSON: {call.arguments[:100]!r}"
            ) from None
        if not isinstance(args, dict):
            raise ConfigurationError(f"{where}.tool_calls[{j}]: arguments of {call.name!r} must be a JSON object")
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": args})
    return blocks


def _tool_result(m: Message, where: str) -> dict[str, Any]:
    if not m.tool_call_id:
        raise ConfigurationError(f"{where}: a tool message needs tool_call_id (the id of the tool_use it answers)")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": m.tool_call_id}
    if isinstance(m.content, str):
        if m.content:
            block["content"] = m.content
    elif m.content:
        block["content"] = _part_blocks(m.content, where)
    return block


def to_anthropic_messages(messages: tuple[Message, ...]) -> tuple[str | None, list[dict[str, Any]]]:
    """-> (system prompt or None, alternating user/assistant messages)."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if m.role == "system":
            if m.text:
                system.append(m.text)
            continue
        if m.role == "tool":
            role, blocks = "user", [_tool_result(m, where)]
        elif m.role == "assistant":
            # Earlier reasoning is not sent back: the API only accepts signed thinking blocks.
            role, blocks = "assistant", _content_blocks(m, where) + _tool_use(m, where)
        else:
            role, blocks = "user", _content_blocks(m, where)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":
            # tool_result blocks must come before any other content of the user turn
            turn["content"].sort(key=lambda b: b["type"] != "tool_result")
        if not turn["content"]:
            turn["content"] = [{"type": "text", "text": ""}]  # let the API say what is wrong with it
    return ("\n\n".join(system) or None), turns
