"""``[manager]``: which GGUF models corral may run, how, and how many at once.

[manager]
max_loaded = 1                  # children alive at once
groups = [["qwen", "embed"]]    # optional: models that may run together (others run alone)
models_dirs = ["~/models"]      # GGUF discovery (corral scan)
load_timeout = 120              # seconds from spawn to healthy
engine = "/opt/llama.cpp/llama-server"   # optional; else llama-server on PATH, else the embedded engine
[manager.models.qwen]
gguf = "~/models/qwen2.5-7b-instruct-q4_k_m.gguf"   # or "hf://bartowski/Qwen2.5-7B-Instruct-GGUF:Q4_K_M"
args = ["-c", "8192", "--jinja"]   # extra llama-server arguments (an argv list, never a shell string)
ttl = 300                        # idle seconds before unload; 0 = never
aliases = ["gpt-4o-mini"]
draft = "hf://bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M"   # optional: speculative decoding (-md)
replicas = 2                     # optional: N children of this model, balanced (corral.balance)
concurrency = 4                  # optional: requests at once; beyond it they wait (queue) or get 429
queue = 16                       # requests that may wait (default 0: 429 at once); queue_timeout = 30

A ``gguf`` or ``draft`` given as ``hf://org/repo:QUANT`` (or a pulled model's name) is pulled on
first use; the gateway answers 503 with Retry-After meanwhile (see pulling.py).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import ConfigurationError

__all__ = ["ManagerSettings", "ModelSpec", "check_engine_args", "engine_argv"]

# The child's address and key are the manager's to choose: user args may not move them.
_RESERVED = ("--host", "--port", "--api-key", "--api-key-file", "--path", "--api-prefix")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    gguf: Path
    args: tuple[str, ...] = ()
    ttl: float = 0.0  # seconds idle before unload; 0 = never
    aliases: tuple[str, ...] = ()
    engine: tuple[str, ...] | None = None  # argv prefix; None = the manager's default
    source: str | None = None  # the Hub reference ``gguf`` was given as; gguf is its cached path once pulled
    draft: str | None = None  # draft model for speculative decoding: a path or a Hub reference
    concurrency: int | None = None  # requests at once (the gateway queues the rest, see corral.balance)
    queue: int = 0  # requests that may wait beyond concurrency; more get 429 at once
    queue_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class ManagerSettings:
    models: Mapping[str, ModelSpec] = field(default_factory=dict)
    max_loaded: int = 1
    models_dirs: tuple[Path, ...] = ()
    load_timeout: float = 120.0
    stop_grace: float = 5.0
    drain_timeout: float = 60.0  # how long an unload or a shutdown waits for in-flight requests
    queue_timeout: float = 300.0  # how long a request may wait for its model (then 503 + Retry-After)
    max_queue: int = 64  # requests waiting for a model at once (more: 429 + Retry-After)
    engine: tuple[str, ...] | None = None
    state_dir: Path | None = None  # slot files, logs; default: the corral cache
    # Sets of models that may run together. With groups, a model outside every group of a running
    # child swaps it out (llama-swap's exclusive groups); without, only max_loaded limits.
    groups: tuple[frozenset[str], ...] = ()
    # ``replicas = N``: the model name -> its N children's names ("name#1" …), each a model of its own
    # here; the gateway balances requests for the name over them (corral.balance).
    replica_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def compatible(self, a: str, b: str) -> bool:
        """May models ``a`` and ``b`` be loaded at the same time?"""
        if a == b or not self.groups:
            return True
        return any(a in g and b in g for g in self.groups)

    @property
    def enabled(self) -> bool:
        return bool(self.models)

    def names(self) -> dict[str, str]:
        """Every routable name (model names and aliases) -> the model name (for a model with replicas:
        its own name, which :attr:`replica_groups` maps to its children)."""
        out: dict[str, str] = {}
        children = {c: group for group, cs in self.replica_groups.items() for c in cs}
        for spec in self.models.values():
            group = children.get(spec.name)
            for n in (group, *spec.aliases) if group is not None else (spec.name, *spec.aliases):
                if group is not None and n == group and out.get(n) == group:
                    continue  # the group's name, from its first child
                if n in out:
                    raise ConfigurationError(f"manager: the name {n!r} is used by two models")
                out[n] = group if group is not None else spec.name
        return out

    @classmethod
    def from_settings(cls, settings: Settings | None, *, discovered: Sequence[Any] = ()) -> ManagerSettings:
        raw = settings.raw if settings else {}
        table = raw.get("manager") or {}
        if not isinstance(table, Mapping):
            raise ConfigurationError("[manager] must be a table")
        max_loaded = table.get("max_loaded", 1)
        if not isinstance(max_loaded, int) or isinstance(max_loaded, bool) or max_loaded < 1:
            raise ConfigurationError("manager.max_loaded must be a positive integer")
        engine = _engine(table.get("engine"), "manager.engine")
        models: dict[str, ModelSpec] = {}
        for info in discovered:  # corral.manager.scan.GGUFInfo, readable ones only
            if getattr(info, "error", None) is None:
                models[info.name] = ModelSpec(info.name, Path(info.path))
        specs = table.get("models") or {}
        if not isinstance(specs, Mapping):
            raise ConfigurationError("[manager.models] must be a table of model tables")
        replica_groups: dict[str, tuple[str, ...]] = {}
        for name, spec in specs.items():
            one = _spec(str(name), spec)
            count = spec.get("replicas", 1) if isinstance(spec, Mapping) else 1
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ConfigurationError(f"manager.models.{name}.replicas must be a positive integer, got {count!r}")
            if count == 1:
                models[str(name)] = one
                continue
            # N children of one model, each on a port corral picks; the aliases stay with the group name
            children = tuple(f"{name}#{i}" for i in range(1, count + 1))
            for i, child in enumerate(children):
                models[child] = replace(one, name=child, aliases=one.aliases if i == 0 else ())
            replica_groups[str(name)] = children
        dirs = table.get("models_dirs") or []
        if isinstance(dirs, str):
            dirs = [dirs]
        timeouts = {k: _seconds(table.get(k, d), f"manager.{k}") for k, d in
                    (("load_timeout", 120.0), ("stop_grace", 5.0), ("drain_timeout", 60.0),
                     ("queue_timeout", 300.0))}  # fmt: skip
        max_queue = table.get("max_queue", 64)
        if not isinstance(max_queue, int) or isinstance(max_queue, bool) or max_queue < 1:
            raise ConfigurationError("manager.max_queue must be a positive integer")
        state_dir = table.get("state_dir")
        groups = _groups(table.get("groups"), models)
        if groups and replica_groups:  # a model's replicas always run together
            groups = (*groups, *(frozenset(cs) for cs in replica_groups.values()))
        if groups and "max_loaded" not in table:
            max_loaded = max(len(g) for g in groups)  # groups alone decide what runs together
        elif replica_groups and "max_loaded" not in table:
            max_loaded = max(max_loaded, *(len(cs) for cs in replica_groups.values()))
        return cls(
            models=models,
            max_loaded=max_loaded,
            groups=groups,
            models_dirs=tuple(Path(d).expanduser() for d in dirs),
            engine=engine,
            state_dir=Path(state_dir).expanduser() if state_dir else None,
            max_queue=max_queue,
            replica_groups=replica_groups,
            **timeouts,
        )


def _groups(value: Any, models: Mapping[str, ModelSpec]) -> tuple[frozenset[str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
        isinstance(g, list) and g and all(isinstance(m, str) for m in g) for g in value
    ):
        raise ConfigurationError('manager.groups must be a list of lists of model names, e.g. [["a", "b"]]')
    by_alias = {a: spec.name for spec in models.values() for a in (spec.name, *spec.aliases)}
    out = []
    for group in value:
        unknown = [m for m in group if m not in by_alias]
        if unknown:
            raise ConfigurationError(f"manager.groups names unknown models: {', '.join(map(repr, unknown))}")
        out.append(frozenset(by_alias[m] for m in group))
    return tuple(out)


def _seconds(value: Any, where: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ConfigurationError(f"{where} must be a number of seconds")
    return float(value)


def _engine(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (str(Path(value).expanduser()),)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigurationError(f"{where} must be a path or an argv list")


def _spec(name: str, spec: Any) -> ModelSpec:
    where = f"manager.models.{name}"
    if not isinstance(spec, Mapping):
        raise ConfigurationError(f"{where} must be a table")
    gguf = spec.get("gguf")
    if not isinstance(gguf, str) or not gguf:
        raise ConfigurationError(f"{where}.gguf must be the path of a GGUF file or hf://org/repo:QUANT")
    draft = spec.get("draft")
    if draft is not None and (not isinstance(draft, str) or not draft):
        raise ConfigurationError(f"{where}.draft must be the path of a GGUF file or hf://org/repo:QUANT")
    args = spec.get("args") or []
    if isinstance(args, str):
        raise ConfigurationError(f"{where}.args must be a list of arguments, not a shell string")
    if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) for a in args):
        raise ConfigurationError(f"{where}.args must be a list of arguments")
    argv = tuple(str(a) for a in args)
    for a in argv:
        if a.split("=", 1)[0] in _RESERVED:
            raise ConfigurationError(
                f"{where}.args may not set {a.split('=', 1)[0]}: corral chooses the child's address and key"
            )
    aliases = spec.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise ConfigurationError(f"{where}.aliases must be a list of names")
    path, source = model_source(gguf)
    from ..balance import model_policy

    limits = model_policy({k: v for k, v in spec.items() if k in _LIMIT_KEYS}, where)
    return ModelSpec(
        name=name,
        gguf=path,
        args=argv,
        ttl=_seconds(spec.get("ttl", 0), f"{where}.ttl"),
        aliases=tuple(aliases),
        engine=_engine(spec.get("engine"), f"{where}.engine"),
        source=source,
        draft=draft,
        concurrency=limits.concurrency,
        queue=limits.queue,
        queue_timeout=limits.queue_timeout,
    )


_LIMIT_KEYS = ("concurrency", "queue", "queue_timeout")


def model_source(gguf: str) -> tuple[Path, str | None]:
    """(path, Hub reference): a path as it is; ``hf://…`` (or a pulled model's name that is no file)
    as the reference, with the path it has in the cache if it is pulled already (else a placeholder)."""
    from ..hub.refs import is_hub_ref

    path = Path(gguf).expanduser()
    if not gguf.startswith("hf://") and (path.exists() or not is_hub_ref(gguf)):
        return path, None
    from ..hub.cache import find_local

    found = find_local(gguf)
    return (found.path if found else Path(gguf.removeprefix("hf://").replace(":", "-") + ".gguf")), gguf


def engine_argv(configured: tuple[str, ...] | None) -> tuple[tuple[str, ...], bool]:
    """(argv prefix, embedded?) : the configured engine, else llama-server on PATH, else xllamacpp."""
    if configured:
        return configured, False
    found = shutil.which("llama-server")
    if found:
        return (found,), False
    return (sys.executable, "-m", "corral.manager.engine_child"), True


def check_engine_args(settings: ManagerSettings) -> None:
    """Models run by the embedded engine must use flags it knows: said at startup, not on the first
    request. (The real llama-server binary checks its own flags.)"""
    from .engine_flags import EngineFlagError, parse_engine_args

    for name, spec in settings.models.items():
        if engine_argv(spec.engine or settings.engine)[1]:
            try:
                parse_engine_args(spec.args)
            except EngineFlagError as exc:
                raise ConfigurationError(f"manager.models.{name}.args: {exc}") from None
