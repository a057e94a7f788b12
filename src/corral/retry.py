"""When to try again, and when to ask another provider. Pure policy, no sleeping here."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .capabilities import Capability
from .errors import ConfigurationError, ConnectionFailed, CorralError, ModelLoading, RateLimited, ServerError

__all__ = ["RetryPolicy", "Routing", "falls_back"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter for transient errors (connect failures, 408, 409, 429, 5xx),
    bounded in count and in total time. 4xx other than those are never retried."""

    max_retries: int = 2
    base_delay: float = 0.25
    max_delay: float = 8.0
    max_total: float = 30.0

    def delay(self, attempt: int, error: CorralError, elapsed: float) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up now (the error then
        carries the server's ``retry_after`` for the caller). A ``Retry-After`` is honoured but never
        shortens the backoff (``Retry-After: 0`` must not mean three calls in a millisecond), and a
        wait that would pass ``max_total`` is not started."""
        if attempt >= self.max_retries or not error.retryable:
            return None
        wait = min(self.max_delay, self.base_delay * 2**attempt) * random.uniform(0.5, 1.0)
        asked = getattr(error, "retry_after", None)
        if isinstance(error, (RateLimited, ServerError, ModelLoading)) and asked is not None:
            wait = max(wait, asked)
        return wait if elapsed + wait <= self.max_total else None


def falls_back(error: CorralError) -> bool:
    """Errors after which the next provider in a fallback chain is tried: no answer, timeouts,
    5xx, a model still loading. Never a 4xx: the next provider would reject it too."""
    return isinstance(error, (ConnectionFailed, ServerError, ModelLoading))


def _capability(key: str) -> Capability:
    norm = key.strip().lower().replace("-", "_").replace(" ", "_")
    for cap in Capability:
        if norm in (cap.name.lower(), cap.value.replace(" ", "_").lower()):
            return cap
    valid = ", ".join(c.name.lower() for c in Capability)
    raise ConfigurationError(f"routing.capability_fallbacks: unknown capability {key!r} (one of {valid})")


def _names(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigurationError(f"{where} must be a list of provider names")


@dataclass(frozen=True, slots=True)
class Routing:
    """``[routing]``: ``fallbacks = {local = ["cloud"]}``, ``capability_fallbacks = {embeddings = ["cloud"]}``,
    ``max_retries = 2``."""

    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    capability_fallbacks: Mapping[Capability, tuple[str, ...]] = field(default_factory=dict)
    max_retries: int | None = None

    @classmethod
    def from_table(cls, table: Any, known: Sequence[str]) -> Routing:
        if not table:
            return cls()
        if not isinstance(table, Mapping):
            raise ConfigurationError("[routing] must be a table")
        fallbacks = {str(k): _names(v, f"routing.fallbacks.{k}") for k, v in (table.get("fallbacks") or {}).items()}
        by_cap = {
            _capability(str(k)): _names(v, f"routing.capability_fallbacks.{k}")
            for k, v in (table.get("capability_fallbacks") or {}).items()
        }
        for name in {n for chain in (*fallbacks.values(), *by_cap.values()) for n in chain}:
            if name not in known:
                raise ConfigurationError(
                    f"routing names provider {name!r}, which is not configured ({', '.join(sorted(known))})"
                )
        retries = table.get("max_retries")
        if retries is not None and (not isinstance(retries, int) or retries < 0):
            raise ConfigurationError("routing.max_retries must be a non-negative integer")
        return cls(fallbacks, by_cap, retries)
