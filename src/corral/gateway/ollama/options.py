"""Ollama's ``options``, ``think`` and ``keep_alive`` on the server side: what every provider gets
(num_predict, temperature, top_p, seed, stop) and what only some can take, named their way.

An option a provider cannot take is not an error (Ollama itself ignores unknown options): it is left
out and named in the answer's ``x-corral-not-applied`` header. Load-time options (``num_ctx``,
``num_gpu``, ``num_thread``…) are fixed when llama-server starts, so they are never applied per
request: a managed model's context is its ``args = ["-c", "8192"]``. No I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..wire_errors import WireError

__all__ = [
    "NOT_APPLIED_HEADER",
    "OllamaOptions",
    "parse_keep_alive",
    "parse_options",
    "parse_think",
    "provider_extras",
    "thinking_fields",
]

NOT_APPLIED_HEADER = "x-corral-not-applied"

# Sampling options llama-server takes, by Ollama's name -> llama.cpp's name.
_LLAMACPP = {
    "top_k": "top_k", "min_p": "min_p", "typical_p": "typical_p", "repeat_penalty": "repeat_penalty",
    "repeat_last_n": "repeat_last_n", "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty", "mirostat": "mirostat", "mirostat_tau": "mirostat_tau",
    "mirostat_eta": "mirostat_eta", "num_keep": "n_keep",
}  # fmt: skip
_LLAMACPP_TYPES = frozenset({"llamacpp", "embedded", "zero-setup", "llama-swap"})
# The same, for providers that take fewer.
_BY_TYPE: dict[str, dict[str, str]] = {
    "llamacpp": _LLAMACPP, "embedded": _LLAMACPP, "zero-setup": _LLAMACPP, "llama-swap": _LLAMACPP,
    "openai": {"presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty"},
    "anthropic": {"top_k": "top_k"},
}  # fmt: skip
_INTS = frozenset({"num_predict", "seed", "top_k", "repeat_last_n", "mirostat", "num_keep", "num_ctx", "num_batch",
                   "num_gpu", "main_gpu", "num_thread"})  # fmt: skip
_FLOATS = frozenset({"temperature", "top_p", "min_p", "typical_p", "tfs_z", "repeat_penalty", "presence_penalty",
                     "frequency_penalty", "mirostat_tau", "mirostat_eta"})  # fmt: skip
_BOOLS = frozenset({"numa", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mmap", "use_mlock",
                    "embedding_only", "penalize_newline"})  # fmt: skip
#: Ollama's option names: only these are named back in the header
_KNOWN = _INTS | _FLOATS | _BOOLS | frozenset(_LLAMACPP)
_THINK_LEVELS = ("low", "medium", "high")
# A Go duration: "1h30m", "-1s", "300ms", "1.5h".
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _bad(message: str, param: str) -> WireError:
    return WireError(400, message, param=param)


@dataclass(slots=True)
class OllamaOptions:
    """A request's ``options`` checked: the fields every provider takes, and the rest as given."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    other: dict[str, Any] = field(default_factory=dict)  # every other option, by Ollama's name


def _typed(key: str, value: Any) -> Any:
    at = f"options.{key}"
    if key in _INTS and not (isinstance(value, int) and not isinstance(value, bool)):
        if isinstance(value, float) and value.is_integer():  # JSON clients may write 40.0
            return int(value)
        raise _bad(f"{at} must be an integer, got {value!r}", at)
    if key in _FLOATS and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
        raise _bad(f"{at} must be a number, got {value!r}", at)
    if key in _BOOLS and not isinstance(value, bool):
        raise _bad(f"{at} must be a boolean, got {value!r}", at)
    return value


def parse_options(value: Any) -> OllamaOptions:
    """``options`` checked (400 naming ``options.<key>``); values of unknown keys are kept as given."""
    if value is None:
        return OllamaOptions()
    if not isinstance(value, Mapping):
        raise _bad("options must be an object of model options, e.g. {'temperature': 0.2}", "options")
    out = OllamaOptions()
    for key, raw in value.items():
        if raw is None:
            continue
        v = _typed(key, raw)
        if key == "num_predict":
            if v == 0 or v < -2:
                raise _bad(f"options.num_predict must be positive, -1 (no limit) or -2 (fill the context), got {v}",
                           "options.num_predict")  # fmt: skip
            out.max_tokens = v if v > 0 else None
        elif key == "temperature":
            if not 0 <= v <= 2:
                raise _bad(f"options.temperature must be between 0 and 2, got {v!r}", "options.temperature")
            out.temperature = v
        elif key == "top_p":
            if not 0 <= v <= 1:
                raise _bad(f"options.top_p must be between 0 and 1, got {v!r}", "options.top_p")
            out.top_p = v
        elif key == "seed":
            out.seed = v
        elif key == "stop":
            stops = [v] if isinstance(v, str) else v
            if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
                raise _bad("options.stop must be an array of strings", "options.stop")
            out.stop = tuple(s for s in stops if s)
        else:
            out.other[key] = v
    return out


def parse_think(value: Any) -> bool | str | None:
    """``think``: true, false, or a level ('low', 'medium', 'high')."""
    if value is None or isinstance(value, bool) or value in _THINK_LEVELS:
        return value  # type: ignore[no-any-return]
    raise _bad(f"think must be true, false, 'low', 'medium' or 'high', got {value!r}", "think")


def parse_keep_alive(value: Any) -> float | None:
    """``keep_alive`` in seconds: a number of seconds or a Go duration ('5m', '1h30m', '-1s').
    Negative means keep loaded; 0 means unload when the request is over."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)  # "300": seconds, as some clients write it
        except ValueError:
            pass
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        parts = _GO_PART.findall(body)
        if parts and "".join(n + u for n, u in parts) == body:
            return sign * sum(float(n) * _GO_UNIT[u] for n, u in parts)
    raise _bad(f"keep_alive must be seconds or a duration like '5m', '1h' or '-1', got {value!r}", "keep_alive")


def provider_extras(
    opts: OllamaOptions, think: bool | str | None, keep_alive: Any, types: frozenset[str], *, managed: bool
) -> tuple[dict[str, Any], list[str]]:
    """(extra_body for the provider, what it cannot apply) for a provider chain of ``types``.

    A chain of one provider type gets each option in that type's words; a mixed chain (fallbacks of
    other types) gets only what every provider takes: the neutral fields. ``think`` travels in the
    request's thinking fields (see :func:`thinking_fields`); OpenAI's wire has no on/off switch, only
    levels. ``keep_alive`` is applied by the model manager for a managed model. (An Ollama upstream
    gets the request as it came.)"""
    kind = next(iter(types)) if len(types) == 1 else ""
    extra: dict[str, Any] = {}
    skipped: list[str] = []
    names = _BY_TYPE.get(kind, {})
    unknown = 0
    for key, value in opts.other.items():
        if key in names:
            extra[names[key]] = value
        elif key in _KNOWN:
            skipped.append(f"options.{key}")
        else:
            unknown += 1  # a client's own string never goes into a header (it may not even be Latin-1)
    if unknown:
        skipped.append(f"{unknown} unknown option{'s' if unknown > 1 else ''}")
    if isinstance(think, bool) and kind == "openai":
        skipped.append("think")
    if keep_alive is not None and not managed:
        skipped.append("keep_alive")
    return extra, skipped


def thinking_fields(think: bool | str | None) -> dict[str, Any]:
    """Ollama's ``think`` as corral's thinking fields (each provider says them its own way: llama.cpp's
    ``enable_thinking`` template flag, OpenAI's ``reasoning_effort``, Anthropic's budget)."""
    if think is None:
        return {}
    if isinstance(think, str):
        return {"thinking": True, "reasoning_effort": think}
    return {"thinking": think}
