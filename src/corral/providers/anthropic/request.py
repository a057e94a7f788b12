"""ChatRequest -> Anthropic Messages API request body.

Anthropic has no ``response_format``: structured output is asked for the usual way,
as a tool named :data:`JSON_TOOL` whose input schema is the wanted schema, which the
model is forced to call. Its input is then reported as the reply's text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...config import ProviderConfig
from ...errors import ConfigurationError
from ...structured import schema_of
from ..base import ChatRequest
from .messages import to_anthropic_messages

__all__ = ["DEFAULT_MAX_TOKENS", "JSON_TOOL", "build_body"]

JSON_TOOL = "json_output"
DEFAULT_MAX_TOKENS = 4096
_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def _max_tokens(req: ChatRequest, config: ProviderConfig) -> int:
    if req.max_tokens is not None:
        return req.max_tokens
    value = config.options.get("max_tokens", DEFAULT_MAX_TOKENS)
    try:
        n = int(value)  # a DSN query gives strings
    except (TypeError, ValueError):
        n = 0
    if n < 1 or isinstance(value, bool):
        raise ConfigurationError(
            f"provider {config.name!r}: max_tokens option must be a positive integer, got {value!r}"
        )
    return n


def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    fn = tool["function"]  # build_chat_request checked the OpenAI shape
    out: dict[str, Any] = {"name": fn["name"]}
    if fn.get("description"):
        out["description"] = fn["description"]
    params = fn.get("parameters")
    out["input_schema"] = dict(params) if isinstance(params, Mapping) else dict(_EMPTY_SCHEMA)
    return out


def _tool_choice(choice: Any) -> dict[str, Any]:
    if isinstance(choice, str):
        mapped = {"auto": "auto", "required": "any", "any": "any", "none": "none"}.get(choice)
        if mapped is None:
            raise ConfigurationError(f"tool_choice must be 'auto', 'required', 'none' or a function, got {choice!r}")
        return {"type": mapped}
    if isinstance(choice, Mapping):
        fn = choice.get("function")
        if choice.get("type") == "function" and isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
            return {"type": "tool", "name": fn["name"]}
        if choice.get("type") in ("auto", "any", "tool", "none"):  # already in Anthropic's form
            return dict(choice)
    raise ConfigurationError(
        f"tool_choice must be 'auto', 'required', 'none' or {{'type': 'function', 'function': {{'name': ...}}}}, "
        f"got {choice!r}"
    )


# OpenAI's reasoning efforts as Anthropic thinking budgets (1024 is the API's least).
EFFORT_BUDGET = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}


def _thinking(req: ChatRequest, max_tokens: int) -> dict[str, Any] | None:
    """Anthropic's ``thinking`` for the request's thinking fields (None: leave it out)."""
    if req.thinking is False or req.reasoning_effort == "none" or req.thinking_budget == 0:
        return {"type": "disabled"}
    budget = req.thinking_budget or EFFORT_BUDGET.get(req.reasoning_effort or "")
    if budget is None and req.thinking:
        budget = EFFORT_BUDGET["low"]
    if budget is None:
        return None
    if max_tokens <= 1024:  # the API wants 1024 <= budget_tokens < max_tokens: no room to think
        return {"type": "disabled"}
    return {"type": "enabled", "budget_tokens": max(1024, min(budget, max_tokens - 1))}


def _thinking_on(req: ChatRequest) -> bool:
    extra = req.extra_body.get("thinking")
    if isinstance(extra, Mapping):
        return extra.get("type") not in (None, "disabled")
    return bool(req.thinking or req.thinking_budget or req.reasoning_effort not in (None, "none"))


def _json_tool(fmt: Mapping[str, Any]) -> dict[str, Any]:
    schema = schema_of(fmt) or {"type": "object"}
    if schema.get("type", "object") != "object":
        raise ConfigurationError(
            f"anthropic structured output needs a JSON object schema (top-level type 'object'), "
            f"got type {schema.get('type')!r}"
        )
    return {
        "name": JSON_TOOL,
        "description": "Give the final answer as JSON matching this schema.",
        "input_schema": schema,
    }


def _structured_choice(req: ChatRequest) -> dict[str, Any]:
    if _thinking_on(req):
        # The API refuses forced tool use with extended thinking; a JSON text answer is parsed instead.
        return {"type": "auto"}
    if req.tools and req.tool_choice not in (None, "auto", "none"):
        return _tool_choice(req.tool_choice)
    if req.tools and req.tool_choice != "none":
        return {"type": "any"}  # a real tool, or the final JSON answer
    return {"type": "tool", "name": JSON_TOOL}


def build_body(req: ChatRequest, config: ProviderConfig, *, stream: bool) -> dict[str, Any]:
    model = req.model or config.model
    if not model:
        raise ConfigurationError("anthropic needs a model: pass model= or set it in the provider's configuration")
    system, messages = to_anthropic_messages(req.messages)
    body: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(req, config), "messages": messages}
    if system is not None:
        body["system"] = system
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop:
        body["stop_sequences"] = list(req.stop)
    # seed has no Anthropic equivalent and is not sent.
    tools = [_tool(t) for t in req.tools]
    if req.response_format is not None:
        tools.append(_json_tool(req.response_format))
        body["tool_choice"] = _structured_choice(req)
    elif req.tool_choice is not None:
        body["tool_choice"] = _tool_choice(req.tool_choice)
    if tools:
        body["tools"] = tools
    thinking = _thinking(req, body["max_tokens"])
    if thinking is not None:
        body["thinking"] = thinking
    if stream:
        body["stream"] = True
    body.update(req.extra_body)
    return body
