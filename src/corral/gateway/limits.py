"""Output limits: how many tokens one answer may ask for.

A client's ``max_tokens`` is clamped to the smallest of: the model's ``max_output_tokens``
(``[models.<name>]``, else ``[gateway]``), and, for a llama.cpp backend, the context a slot has left
after the prompt (``/props``: ``n_ctx`` per slot). Claude Code, for one, always asks for 32,000 tokens
and a 31,999-token thinking budget; a small local model rarely stops on its own, so without a clamp a
turn can generate for hours. A clamp is reported in the ``x-corral-max-tokens`` response header
(``requested=32000; applied=4096; by=max_output_tokens``); the answer itself is unchanged in kind:
an answer cut at the limit says so with its finish reason ("length" / "max_tokens").

Cheap on the hot path: ``n_ctx`` is asked once per backend; the prompt is counted exactly (template
and tokenizer, two local calls) only when the request could not fit otherwise, i.e. when its bytes
plus the requested tokens exceed the context (a token is at least a byte of text).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import CorralError

if TYPE_CHECKING:
    from ..async_client import AsyncClient
    from .routing import Resolved

__all__ = ["Clamp", "OutputLimits"]

log = logging.getLogger("corral.gateway")

_PROPS_TIMEOUT = 5.0
_SLACK = 64  # tokens a template may add around a request's text


@dataclass(frozen=True, slots=True)
class Clamp:
    requested: int | None
    applied: int
    by: str  # "max_output_tokens" or "context"

    def header(self) -> dict[str, str]:
        asked = "none" if self.requested is None else str(self.requested)
        return {"x-corral-max-tokens": f"requested={asked}; applied={self.applied}; by={self.by}"}


class OutputLimits:
    def __init__(self, default: int | None) -> None:
        self.default = default
        self._n_ctx: dict[str, int | None] = {}  # per backend endpoint: a slot's context, None if unknown
        self._locks: dict[str, asyncio.Lock] = {}

    async def slot_context(self, client: AsyncClient) -> int | None:
        """A llama.cpp slot's context size, asked once per backend (None if it will not say)."""
        key = client.config.base_url or client.config.name
        if key in self._n_ctx:
            return self._n_ctx[key]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._n_ctx:
                n_ctx: int | None = None
                try:
                    props = await client.props(timeout=_PROPS_TIMEOUT)
                    found = (props.get("default_generation_settings") or {}).get("n_ctx")
                    n_ctx = found if isinstance(found, int) and found > 0 else None
                except CorralError as exc:
                    log.debug("no /props from %s: %s", client.config.name, exc)
                self._n_ctx[key] = n_ctx
        return self._n_ctx[key]

    async def clamp(
        self, target: Resolved, requested: int | None, prompt_bytes: int, count_prompt: Any, *, llamacpp: bool
    ) -> Clamp | None:
        """The clamp for one request, or None when its ``requested`` limit stands.
        ``count_prompt()`` is awaited for the exact prompt size, only when it matters."""
        configured = target.route.max_output_tokens or self.default
        limit, by = configured, "max_output_tokens"
        if llamacpp:
            ask = requested if requested is not None else configured
            n_ctx = await self.slot_context(target.client)
            if n_ctx is not None and ask is not None and ask + prompt_bytes + _SLACK > n_ctx:
                try:
                    prompt = await count_prompt()
                except CorralError:
                    prompt = None
                left = n_ctx - prompt if prompt is not None else None
                if left is not None and left >= 1 and (limit is None or left < limit):
                    limit, by = left, "context"
        if limit is None or (requested is not None and requested <= limit):
            return None
        return Clamp(requested, limit, by)
