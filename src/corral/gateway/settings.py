"""The ``[gateway]`` and ``[models.*]`` sections: who may call, how much they may send, where each
model name goes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..balance import ModelPolicy, model_policy, replicas_of
from ..config import Secret, Settings
from ..errors import ConfigurationError

__all__ = ["GatewaySettings", "ModelRoute"]

DEFAULT_MAX_BODY = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """A public model name: which configured provider serves it, as which upstream model."""

    name: str
    provider: str | None  # None: the default provider
    upstream: str | None  # None: pass the requested name through
    aliases: tuple[str, ...] = ()
    max_output_tokens: int | None = None  # the most tokens one answer may ask for (see limits.py)
    #: replicas, balancing, concurrency and queue (see corral.balance.config); None: none of them set
    policy: ModelPolicy | None = None

    @property
    def replicas(self) -> tuple[str, ...]:
        return self.policy.replicas if self.policy is not None else ()


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    api_keys: tuple[Secret, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY
    routes: Mapping[str, ModelRoute] = field(default_factory=dict)  # every name and alias -> its route
    models: tuple[ModelRoute, ...] = ()
    default_route: ModelRoute | None = None  # for names no route claims; None with routes: 404
    host: str = "127.0.0.1"
    port: int = 4000
    allowed_hosts: tuple[str, ...] = ()  # names besides loopback a keyless gateway answers to
    max_output_tokens: int | None = None  # for models without their own
    wire_log: bool = False  # log every request and answer, bodies included (secrets masked)
    upstream_retries: int = 0  # retries of a failed upstream call, for providers that set none (see routing)
    shutdown_timeout: float = 30.0  # seconds answers in flight get to finish when the gateway stops
    max_messages: int = 10_000  # messages one request may carry (413 above, before parsing)

    @classmethod
    def from_settings(cls, settings: Settings | None) -> GatewaySettings:
        raw: Mapping[str, Any] = settings.raw if settings else {}
        table = raw.get("gateway") or {}
        if not isinstance(table, Mapping):
            raise ConfigurationError("[gateway] must be a table")
        known = set(settings.providers) if settings else set()
        keys = table.get("api_keys") or []
        if isinstance(keys, str):
            keys = [keys]
        if not isinstance(keys, Sequence) or not all(isinstance(k, str) for k in keys):
            raise ConfigurationError("gateway.api_keys must be a list of strings")
        max_body = table.get("max_body_bytes", DEFAULT_MAX_BODY)
        if not isinstance(max_body, int) or max_body <= 0:
            raise ConfigurationError("gateway.max_body_bytes must be a positive integer")
        models = _routes(raw.get("models") or {}, known)
        names: dict[str, ModelRoute] = {}
        for route in models:
            for name in (route.name, *route.aliases):
                if name in names:
                    raise ConfigurationError(f"model name {name!r} is claimed by two [models] entries")
                names[name] = route
        default_name = table.get("default_model")
        default: ModelRoute | None
        if default_name is not None:
            if default_name not in names:
                raise ConfigurationError(f"gateway.default_model {default_name!r} is not a [models] name or alias")
            default = names[default_name]
        else:
            # With no [models] at all, every name goes to the default provider unchanged.
            default = None if models else ModelRoute("*", None, None)
        allowed = table.get("allowed_hosts") or []
        if not isinstance(allowed, list) or not all(isinstance(h, str) and h for h in allowed):
            raise ConfigurationError("gateway.allowed_hosts must be a list of host names")
        max_output = _positive(table.get("max_output_tokens"), "gateway.max_output_tokens")
        port = table.get("port", 4000)
        if not isinstance(port, int) or not 0 <= port < 65536:
            raise ConfigurationError("gateway.port must be a port number")
        return cls(
            api_keys=tuple(Secret(k) for k in keys if k),
            max_body_bytes=max_body,
            routes=names,
            models=tuple(models),
            default_route=default,
            host=str(table.get("host", "127.0.0.1")),
            port=port,
            allowed_hosts=tuple(allowed),
            max_output_tokens=max_output,
            wire_log=_flag(table.get("wire_log", False), "gateway.wire_log"),
            upstream_retries=_count(table.get("upstream_retries", 0), "gateway.upstream_retries"),
            shutdown_timeout=_seconds(table.get("shutdown_timeout", 30.0), "gateway.shutdown_timeout"),
            max_messages=_count(table.get("max_messages", 10_000), "gateway.max_messages") or 1,
        )

    def route(self, model: str | None) -> ModelRoute | None:
        if model is not None and model in self.routes:
            return self.routes[model]
        return self.default_route


def _routes(table: Any, known: set[str]) -> list[ModelRoute]:
    if not isinstance(table, Mapping):
        raise ConfigurationError("[models] must be a table of model tables")
    out = []
    for name, spec in table.items():
        where = f"models.{name}"
        if not isinstance(spec, Mapping):
            raise ConfigurationError(f"{where} must be a table")
        provider, replicas = replicas_of(spec, where, known)
        if replicas and name in known:
            raise ConfigurationError(f"{where}: a model with replicas needs a name of its own, not a provider's")
        policy: ModelPolicy | None = model_policy(spec, where, known)
        if not replicas and policy is not None and policy.limit is None:
            policy = None  # nothing to balance or limit: the plain route
        aliases = spec.get("aliases") or []
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise ConfigurationError(f"{where}.aliases must be a list of strings")
        upstream = spec.get("upstream")
        if upstream is not None and not isinstance(upstream, str):
            raise ConfigurationError(f"{where}.upstream must be a string")
        max_output = _positive(spec.get("max_output_tokens"), f"{where}.max_output_tokens")
        out.append(ModelRoute(str(name), provider, upstream, tuple(aliases), max_output, policy))
    return out


def _positive(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"{where} must be a positive integer, got {value!r}")
    return value


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{where} must be true or false, got {value!r}")
    return value


def _count(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigurationError(f"{where} must be a non-negative integer, got {value!r}")
    return value


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigurationError(f"{where} must be a number of seconds, got {value!r}")
    return float(value)
