"""Tool calls a model wrote, made safe to hand to an agent: arguments repaired where the damage is
mechanical, then checked against the tool's JSON schema. A call that cannot be made valid is never
passed on as callable: the caller gets its text instead (see :func:`checked_calls`).

Repairs, in order, each tried only if the text does not parse as it is: a Markdown code fence
around the JSON, text before the first ``{`` or after the last ``}``, trailing commas, and an object
cut short (an unclosed string, array or object closed at the end). A call is refused when its
arguments still do not parse to an object, its name is not one of the tools offered, its arguments
do not validate against that tool's schema, or the model was cut off (finish reason "length") while
writing it: llama.cpp closes a cut call's JSON for you, so it parses, but says what it did not mean.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from .types import ToolCall

__all__ = ["Refused", "checked_calls", "refusal_text", "repair_arguments"]

_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.S)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


class Refused:
    """A tool call that could not be made valid, and why."""

    __slots__ = ("call", "reason")

    def __init__(self, call: ToolCall, reason: str) -> None:
        self.call = call
        self.reason = reason

    def __repr__(self) -> str:
        return f"Refused({self.call.name!r}, {self.reason!r})"


def _loads_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _close(text: str) -> str:
    """Close what a cut-off JSON text left open: a string, then arrays and objects, innermost first."""
    stack: list[str] = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack and stack[-1] == ch:
            stack.pop()
    if in_string:
        text = (text[:-1] if escaped else text) + '"'  # a dangling backslash cannot be completed
    text = text.rstrip()
    if text.endswith(","):
        text = text[:-1]
    elif text.endswith(":"):
        text += " null"
    return text + "".join(reversed(stack))


def repair_arguments(text: str) -> dict[str, Any] | None:
    """The arguments as an object, repaired if need be; None if they cannot be."""
    if not text.strip():
        return {}
    found = _loads_object(text)
    if found is not None:
        return found
    candidate = text
    fenced = _FENCE.match(candidate)
    if fenced:
        candidate = fenced.group(1)
    start = candidate.find("{")
    if start < 0:
        return None
    end = candidate.rfind("}")
    trimmed = candidate[start : end + 1] if end > start else candidate[start:]
    for attempt in (trimmed, _TRAILING_COMMA.sub(r"\1", trimmed)):
        found = _loads_object(attempt)
        if found is not None:
            return found
    # Cut short: close what is open (from the first brace to the end, not to the last brace).
    opened = _TRAILING_COMMA.sub(r"\1", candidate[start:])
    return _loads_object(_close(opened))


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    import jsonschema  # lazily: only calls that carry tools need it

    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


def _schema_problem(arguments: dict[str, Any], schema: Mapping[str, Any]) -> str | None:
    import jsonschema

    try:
        validator = _validator(json.dumps(schema, sort_keys=True))
    except (jsonschema.SchemaError, TypeError, ValueError):
        return None  # a schema the validator cannot read: the server enforced what it could
    error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where + ': ' if where else ''}{error.message}"[:300]


def _schemas(tools: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any] | None]:
    out: dict[str, Mapping[str, Any] | None] = {}
    for tool in tools:
        fn = tool.get("function")
        if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
            params = fn.get("parameters")
            out[fn["name"]] = params if isinstance(params, Mapping) else None
    return out


def checked_calls(
    calls: Sequence[ToolCall], tools: Sequence[Mapping[str, Any]], finish_reason: str | None
) -> tuple[list[ToolCall], list[Refused]]:
    """(callable calls, arguments normalised to compact JSON; refused calls with the reason).
    With no ``tools`` given, names and schemas are not checked (a library call that did not send them)."""
    schemas = _schemas(tools)
    good: list[ToolCall] = []
    refused: list[Refused] = []
    for call in calls:
        if finish_reason == "length":
            refused.append(Refused(call, "the model was cut off at max_tokens while writing this call"))
            continue
        if schemas and call.name not in schemas:
            refused.append(Refused(call, f"no tool named {call.name!r} was offered"))
            continue
        args = repair_arguments(call.arguments)
        if args is None:
            refused.append(Refused(call, "its arguments are not a JSON object and could not be repaired"))
            continue
        schema = schemas.get(call.name)
        problem = _schema_problem(args, schema) if schema else None
        if problem is not None:
            refused.append(Refused(call, f"its arguments do not match the tool's schema ({problem})"))
            continue
        text = call.arguments if _loads_object(call.arguments) == args else json.dumps(args, ensure_ascii=False)
        good.append(ToolCall(call.id, call.name, text))
    return good, refused


def refusal_text(refused: Sequence[Refused]) -> str:
    """What the caller reads instead of refused calls: each call's name, raw arguments and the reason."""
    return "\n".join(
        f"[corral: tool call {r.call.name!r} not passed on: {r.reason}] {r.call.arguments}" for r in refused
    )
