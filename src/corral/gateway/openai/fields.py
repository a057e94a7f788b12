"""What OpenAI's wire routes share: field checks that raise a 400 naming the field (as OpenAI's API
reports it), compact JSON for frames, usage and llama.cpp timings in OpenAI's shape. No I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ...types import Timings, Usage
from ..wire_errors import WireError

__all__ = [
    "bad",
    "common_fields",
    "is_int",
    "json_object",
    "need",
    "number",
    "positive_int",
    "sse_json",
    "stop_list",
    "timings_dict",
    "typed",
    "usage_dict",
]


def sse_json(obj: Any) -> str:
    """Compact JSON for a wire frame, non-ASCII kept as is."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


_TIMINGS = (
    ("prompt_n", "prompt_tokens"), ("prompt_ms", "prompt_ms"), ("prompt_per_second", "prompt_per_second"),
    ("predicted_n", "predicted_tokens"), ("predicted_ms", "predicted_ms"),
    ("predicted_per_second", "predicted_per_second"), ("cache_n", "cached_tokens"),
)  # fmt: skip


def timings_dict(t: Timings) -> dict[str, Any]:
    """llama.cpp's ``timings`` object, with its own key names."""
    return {key: getattr(t, attr) for key, attr in _TIMINGS}


# -- validation helpers --------------------------------------------------------------------------------------
def need(ok: bool, message: str, param: str | None) -> None:
    if not ok:
        raise WireError(400, message, param=param)


def bad(message: str, param: str | None) -> WireError:
    return WireError(400, message, param=param)


# The checks on every request's path raise with ``bad`` only once a value fails: an f-string
# message built eagerly for ``need`` costs more than the check itself.


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def json_object(body: Any) -> Mapping[str, Any]:
    need(isinstance(body, Mapping), "the request body must be a JSON object", None)
    return body  # type: ignore[no-any-return]


def number(b: Mapping[str, Any], key: str, lo: float, hi: float) -> float | None:
    v = b.get(key)
    if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi):
        return v
    raise bad(f"{key} must be a number between {lo:g} and {hi:g}, got {v!r}", key)


def positive_int(b: Mapping[str, Any], key: str) -> int | None:
    v = b.get(key)
    if v is None or (is_int(v) and v >= 1):
        return v
    raise bad(f"{key} must be a positive integer, got {v!r}", key)


def typed(b: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    v = b.get(key)
    if v is None or (isinstance(v, kind) and (kind is bool or not isinstance(v, bool))):
        return v
    raise bad(f"{key} must be {what}, got {v!r}", key)


def stop_list(b: Mapping[str, Any]) -> list[str]:
    v = b.get("stop")
    if v is None or isinstance(v, str):
        return [v] if v else []
    ok = isinstance(v, list) and all(isinstance(s, str) for s in v)
    need(ok, "stop must be a string or an array of strings", "stop")
    return list(v)


def common_fields(b: Mapping[str, Any]) -> None:
    """Fields every generating route checks the same way."""
    typed(b, "model", str, "a string")
    n = b.get("n")
    if not (n is None or (is_int(n) and 1 <= n <= 16)):
        raise bad(f"n must be an integer from 1 to 16, got {n!r}", "n")
    typed(b, "stream", bool, "a boolean")


def usage_dict(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    }
