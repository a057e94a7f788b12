"""Structured output: normalise what the caller asked for, then parse and validate the answer.

Accepted ``response_format`` values: ``{"type": "json_object"}``,
``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}``,
a bare JSON schema (a dict with "properties" or "$schema"), or a pydantic model
class, whose schema is sent and into which the answer is validated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .errors import ConfigurationError, StructuredOutputError

__all__ = ["normalize_response_format", "parse_structured", "schema_of"]


def _is_pydantic_model(obj: Any) -> bool:
    return isinstance(obj, type) and hasattr(obj, "model_json_schema") and hasattr(obj, "model_validate_json")


def normalize_response_format(value: Any) -> tuple[dict[str, Any] | None, Any]:
    """-> (OpenAI wire form or None, pydantic model class or None)."""
    if value is None:
        return None, None
    if _is_pydantic_model(value):
        schema = value.model_json_schema()
        wire = {"type": "json_schema", "json_schema": {"name": value.__name__, "schema": schema, "strict": True}}
        return wire, value
    if not isinstance(value, Mapping):
        raise ConfigurationError("response_format must be a dict or a pydantic model class")
    kind = value.get("type")
    if kind in ("text", "json_object"):
        return ({"type": kind} if kind == "json_object" else None), None
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("schema"), Mapping):
            raise ConfigurationError("response_format.json_schema.schema must be a JSON schema object")
        return {"type": "json_schema", "json_schema": dict(spec)}, None
    if "properties" in value or "$schema" in value or kind in ("object", "array"):
        return {"type": "json_schema", "json_schema": {"name": "output", "schema": dict(value)}}, None
    raise ConfigurationError(f"response_format.type must be 'text', 'json_object' or 'json_schema', got {kind!r}")


def schema_of(wire: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON schema inside an OpenAI response_format (None for json_object)."""
    if wire.get("type") == "json_schema":
        return dict(wire["json_schema"]["schema"])
    return None


def parse_structured(text: str, wire: Mapping[str, Any], output_type: Any) -> Any:
    """Decode the model's text; validate into ``output_type`` when one was given."""
    if output_type is not None:
        try:
            return output_type.model_validate_json(text)
        except ValueError as exc:  # pydantic.ValidationError is a ValueError
            raise StructuredOutputError(
                f"model output does not validate as {output_type.__name__}: {exc}", raw=text
            ) from exc
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise StructuredOutputError(f"model output is not valid JSON: {text[:200]!r}", raw=text) from exc
    schema = schema_of(wire)
    if schema is not None:
        _check_required(value, schema, text)
    return value


def _check_required(value: Any, schema: Mapping[str, Any], raw: str) -> None:
    # Full JSON-schema validation needs a validator library; the grammar the server
    # compiled from the schema already constrains the shape, so check the top level
    # the way a caller would notice: the type and the required keys.
    want = schema.get("type")
    if want == "object":
        if not isinstance(value, dict):
            raise StructuredOutputError("model output is not a JSON object", raw=raw)
        missing = [k for k in schema.get("required", ()) if k not in value]
        if missing:
            raise StructuredOutputError(f"model output lacks required keys: {', '.join(missing)}", raw=raw)
    elif want == "array" and not isinstance(value, list):
        raise StructuredOutputError("model output is not a JSON array", raw=raw)
