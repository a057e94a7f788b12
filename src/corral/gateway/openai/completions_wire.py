"""/v1/completions on the server side: request checks and the ``text_completion`` answer. No I/O."""

from __future__ import annotations

import uuid
from typing import Any

from ...types import Completion
from ..wire_errors import WireError
from .fields import is_int, json_object, number, positive_int, stop_list, timings_dict, typed, usage_dict

__all__ = ["CompletionAssembler", "completion_request_from_openai", "openai_completion_response"]

_COMPLETION_FIELDS = frozenset({"prompt", "model", "stream", "stream_options", "n"})


# -- /v1/completions -----------------------------------------------------------------------------------------
def completion_request_from_openai(body: Any) -> tuple[str, dict[str, Any]]:
    """(prompt, params for Provider.complete); ``model``, ``stream`` and ``n`` are left out of params:
    the gateway routes on the model, and streams or asks for several choices by passing the body
    through to an OpenAI-shaped backend (corral's own complete() gives one whole choice)."""
    b = json_object(body)
    prompt = b.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise WireError(
            400, "prompt must be a string (arrays of prompts and token arrays are not supported)", param="prompt"
        )
    typed(b, "model", str, "a string")
    typed(b, "stream", bool, "a boolean")
    n = b.get("n")
    if not (n is None or (is_int(n) and 1 <= n <= 16)):
        raise WireError(400, f"n must be an integer from 1 to 16, got {n!r}", param="n")
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


class CompletionAssembler:
    """``text_completion`` stream chunks (as an OpenAI-shaped server sends them) -> one whole answer,
    so a non-streamed request can be streamed upstream and a client leaving still stops it."""

    def __init__(self) -> None:
        self.texts: dict[int, list[str]] = {}
        self.finish: dict[int, str] = {}
        self.usage: dict[str, Any] | None = None
        self.timings: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.head: dict[str, Any] = {}

    def feed(self, payload: Any) -> None:
        if not isinstance(payload, dict):
            return
        if "error" in payload:
            self.error = payload
            return
        if not self.head:
            self.head = {k: payload[k] for k in ("id", "created", "model") if k in payload}
        for choice in payload.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            index = index if is_int(index) else 0
            if isinstance(choice.get("text"), str):
                self.texts.setdefault(index, []).append(choice["text"])
            if isinstance(choice.get("finish_reason"), str):
                self.finish[index] = choice["finish_reason"]
        if isinstance(payload.get("usage"), dict):
            self.usage = payload["usage"]
        if isinstance(payload.get("timings"), dict):
            self.timings = payload["timings"]

    @property
    def complete(self) -> bool:
        return bool(self.finish) and set(self.finish) >= set(self.texts)

    def answer(self, model: str) -> dict[str, Any]:
        indexes = sorted(set(self.texts) | set(self.finish))
        choices = [{"text": "".join(self.texts.get(i, ())), "index": i, "logprobs": None,
                    "finish_reason": self.finish.get(i, "stop")} for i in indexes]  # fmt: skip
        out: dict[str, Any] = {
            "id": self.head.get("id") or "cmpl-" + uuid.uuid4().hex[:24],
            "object": "text_completion",
            "created": self.head.get("created") or 0,
            "model": model or self.head.get("model", ""),
            "choices": choices,
            "usage": self.usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }
        if self.timings is not None:
            out["timings"] = self.timings
        return out


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
