"""What a ``[models.<name>]`` table says about replicas, balancing and queueing:

[models.fast]
provider = ["gpu1", "gpu2"]     # replicas: configured providers serving the same model
balance = "cache-aware"         # or "least-loaded", "round-robin"
imbalance = 2                   # requests a cache holder may carry beyond the least-loaded replica
concurrency = 8                 # requests at once for this model (the gateway queues the rest)
replica_concurrency = 4         # requests at once per replica
queue = 32                      # requests that may wait; beyond it: 429
queue_timeout = 30              # seconds a request may wait; then 429
eject_after = 1                 # consecutive failures (refused, timed out, 5xx) that eject a replica
cooldown = 5                    # seconds an ejected replica rests before a probe
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError
from .balancer import STRATEGIES, Balancer, Strategy
from .prefix import PrefixIndex

__all__ = ["ModelPolicy", "model_policy", "replicas_of"]


@dataclass(frozen=True, slots=True)
class ModelPolicy:
    replicas: tuple[str, ...] = ()  # empty: one provider, no balancing
    balance: Strategy = "cache-aware"
    imbalance: int = 2
    concurrency: int | None = None
    replica_concurrency: int | None = None
    queue: int = 0
    queue_timeout: float = 30.0
    eject_after: int = 1
    cooldown: float = 5.0
    index_capacity: int = 100_000
    index_ttl: float = 1800.0
    slot_affinity: bool = True

    @property
    def limit(self) -> int | None:
        """The model's concurrency: its own, else what its replicas' limits add up to."""
        if self.concurrency is not None:
            return self.concurrency
        if self.replica_concurrency is not None and self.replicas:
            return self.replica_concurrency * len(self.replicas)
        return None

    def balancer(self) -> Balancer:
        return Balancer(
            self.replicas,
            self.balance,
            imbalance=self.imbalance,
            replica_limit=self.replica_concurrency,
            eject_after=self.eject_after,
            cooldown=self.cooldown,
            index=PrefixIndex(self.index_capacity, self.index_ttl),
            slot_affinity=self.slot_affinity,
        )


def replicas_of(spec: Mapping[str, Any], where: str, known: set[str] | None) -> tuple[str | None, tuple[str, ...]]:
    """(provider, replicas) of a model table: ``provider = "a"`` is one provider, a list of two or more
    is replicas (a list of one is that provider)."""
    provider = spec.get("provider")
    names = provider if isinstance(provider, list) else ([] if provider is None else [provider])
    if not all(isinstance(n, str) and n for n in names):
        raise ConfigurationError(f"{where}.provider must be a provider name or a list of them")
    if len(set(names)) != len(names):
        raise ConfigurationError(f"{where}.provider names a provider twice")
    if known is not None:
        for n in names:
            if n not in known:
                raise ConfigurationError(f"{where}.provider {n!r} is not configured ({', '.join(sorted(known))})")
    if isinstance(provider, list) and len(names) > 1:
        return names[0], tuple(names)
    return (names[0] if names else None), ()


def _int(spec: Mapping[str, Any], key: str, where: str, default: int | None, least: int) -> int | None:
    value = spec.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigurationError(f"{where}.{key} must be an integer ≥ {least}, got {value!r}")
    return value


def _seconds(spec: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigurationError(f"{where}.{key} must be a number of seconds, got {value!r}")
    return float(value)


def model_policy(spec: Mapping[str, Any], where: str, known: set[str] | None = None) -> ModelPolicy:
    _, replicas = replicas_of(spec, where, known)
    balance = spec.get("balance", "cache-aware")
    if balance not in STRATEGIES:
        raise ConfigurationError(f"{where}.balance must be one of {', '.join(STRATEGIES)}, got {balance!r}")
    return ModelPolicy(
        replicas=replicas,
        balance=balance,
        imbalance=_int(spec, "imbalance", where, 2, 0) or 0,
        concurrency=_int(spec, "concurrency", where, None, 1),
        replica_concurrency=_int(spec, "replica_concurrency", where, None, 1),
        queue=_int(spec, "queue", where, 0, 0) or 0,
        queue_timeout=_seconds(spec, "queue_timeout", where, 30.0),
        eject_after=_int(spec, "eject_after", where, 1, 1) or 1,
        cooldown=_seconds(spec, "cooldown", where, 5.0),
        index_capacity=_int(spec, "prefix_index_size", where, 100_000, 1) or 100_000,
        index_ttl=_seconds(spec, "prefix_index_ttl", where, 1800.0),
        slot_affinity=_flag(spec, "slot_affinity", where, True),
    )


def _flag(spec: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise ConfigurationError(f"{where}.{key} must be true or false, got {value!r}")
    return value
