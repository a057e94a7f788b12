"""/v1/completions on the server side: request checks and the ``text_completion`` answer. No I/O."""

from __future__ import annotations

import uuid
from typing import Any

from ...types import Completion
from ..wire_errors import WireError
from .fields import common_fields, json_object, need, number, positive_int, stop_list, timings_dict, typed, usage_dict

__all__ = ["completion_request_from_openai", "openai_completion_response"]

_COMPLETION_FIELDS = frozenset({"prompt", "model", "stream", "stream_options", "n"})


# -- /v1/completions -----------------------------------------------------------------------------------------
def completion_request_from_openai(body: Any) -> tuple[str, dict[str, Any]]:
    """(prompt, params for Provider.complete); ``model`` is left out of params: the gateway routes on
    it and sets the upstream model itself. Streaming is refused (corral's complete() does not stream)."""
    b = json_object(body)
    prompt = b.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise WireError(
            400, "prompt must be a string (arrays of prompts and token arrays are not supported)", param="prompt"
        )
    common_fields(b)
    need(b.get("stream") is not True, "stream is not supported on /v1/completions by this gateway", "stream")
    params: dict[str, Any] = {}
    for key, value in (
        ("max_tokens", positive_int(b, "max_tokens")),
        ("temperature", number(b, "temperature", 0, 2)),
        ("stop", stop_list(b) or None),
        ("seed", typed(b, "seed", int, "an integer")),
    ):
        if value is not None:
            params[key] = value
    params.update((k, v) for k, v in b.items() if k not in _COMPLETION_FIELDS and k not in params and v is not None)
    return prompt, params


def openai_completion_response(c: Completion, *, model: str, created: int) -> dict[str, Any]:
    """A ``text_completion`` object."""
    finish = c.finish_reason if c.finish_reason in ("stop", "length", "content_filter") else "stop"
    out: dict[str, Any] = {
        "id": "cmpl-" + uuid.uuid4().hex[:24],
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"text": c.text, "index": 0, "logprobs": None, "finish_reason": finish}],
        "usage": usage_dict(c.usage),
    }
    if c.timings is not None:
        out["timings"] = timings_dict(c.timings)
    return out


