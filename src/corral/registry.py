"""Provider type name -> provider class, imported lazily; and resolving what a Client talks to.

Built-in providers are registered exactly like third-party ones would be:
``register("name", "module.path:ClassName")``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import (
    DEFAULT_TIMEOUT,
    DEFAULT_URLS,
    PROVIDER_TYPES,
    ProviderConfig,
    Secret,
    Settings,
    find_provider,
    load_settings,
    parse_dsn,
    type_for_name,
    with_conventional_key,
)
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .providers.base import Provider

__all__ = ["ZERO_SETUP", "available_types", "create_provider", "register", "resolve", "resolve_with_settings"]

_REGISTRY: dict[str, str] = {
    "llamacpp": "corral.providers.llamacpp:LlamaCppProvider",
    "openai": "corral.providers.openai_compat:OpenAICompatProvider",
    # embedded runs llama-server's code in a child process and talks to it as llamacpp
    "embedded": "corral.providers.llamacpp:LlamaCppProvider",
    "anthropic": "corral.providers.anthropic:AnthropicProvider",
    "ollama": "corral.providers.ollama:OllamaProvider",
    "llama-swap": "corral.providers.llamaswap:LlamaSwapProvider",
}

ZERO_SETUP = ProviderConfig("default", "zero-setup", None, None, None, DEFAULT_TIMEOUT)


def register(type_name: str, target: str) -> None:
    """Register a provider class by import path, ``"package.module:Class"``."""
    _REGISTRY[type_name] = target


def available_types() -> list[str]:
    return sorted(_REGISTRY)


def create_provider(config: ProviderConfig) -> Provider:
    target = _REGISTRY.get(config.type)
    if target is None:
        if config.type in PROVIDER_TYPES:
            raise ConfigurationError(
                f"provider {config.name!r}: type {config.type!r} is not available in this version of corral "
                f"(available: {', '.join(available_types())})"
            )
        raise ConfigurationError(f"provider {config.name!r}: unknown type {config.type!r}")
    module, _, cls = target.partition(":")
    try:
        provider_cls: type[Provider] = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"provider type {config.type!r} cannot be loaded from {target}: {exc}") from exc
    if not config.base_url and config.type in DEFAULT_URLS:
        config = replace(config, base_url=DEFAULT_URLS[config.type])
    if config.type != "embedded" and not config.base_url:
        raise ConfigurationError(f"provider {config.name!r} ({config.type}) needs a base_url")
    return provider_cls(config)


def resolve(
    target: str | None = None,
    *,
    provider: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    model: str | None = None,
    timeout: Any = None,
    timeout_given: bool = False,
    config: str | Path | Settings | Mapping[str, Any] | None = None,
) -> ProviderConfig:
    """Decide which provider a Client uses. Reads the config file and environment (not at import).
    Returns :data:`ZERO_SETUP` when nothing is configured."""
    return resolve_with_settings(
        target,
        provider=provider,
        base_url=base_url,
        api_key=api_key,
        model=model,
        timeout=timeout,
        timeout_given=timeout_given,
        config=config,
    )[0]


def resolve_with_settings(
    target: str | None = None,
    *,
    provider: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    model: str | None = None,
    timeout: Any = None,
    timeout_given: bool = False,
    config: str | Path | Settings | Mapping[str, Any] | None = None,
) -> tuple[ProviderConfig, Settings | None]:
    """:func:`resolve`, plus the settings it read (None for a DSN: no config file is involved)."""
    settings: Settings | None = None
    if target is not None and "://" in target:
        resolved = parse_dsn(target)
    else:
        name = target or provider
        settings = _settings(config)
        if name is not None:
            found = find_provider(settings, name) or _first_replica(settings, name)
            if found is None:
                ptype = type_for_name(name)
                if ptype is None:
                    known = ", ".join(sorted(settings.providers)) or "none configured"
                    raise ConfigurationError(
                        f"unknown provider {name!r}: not configured ({known}) and not a provider type "
                        f"({', '.join(PROVIDER_TYPES)})"
                    )
                found = ProviderConfig(
                    name, ptype, None, None, None, None if ptype == "llama-swap" else DEFAULT_TIMEOUT
                )
            resolved = found
        elif settings.default_provider:
            resolved = settings.provider(settings.default_provider)
        elif len(settings.providers) == 1:
            resolved = next(iter(settings.providers.values()))
        else:
            resolved = ZERO_SETUP
    if resolved is ZERO_SETUP and base_url:
        resolved = replace(ZERO_SETUP, name="llamacpp", type="llamacpp")
    changes: dict[str, Any] = {}
    if base_url:
        changes["base_url"] = base_url.rstrip("/")
    if api_key:
        changes["api_key"] = Secret(api_key)
    if model:
        changes["model"] = model
    if timeout_given:
        changes["timeout"] = timeout
    resolved = replace(resolved, **changes) if changes else resolved
    return with_conventional_key(resolved, os.environ), settings


def _settings(config: str | Path | Settings | Mapping[str, Any] | None) -> Settings:
    if isinstance(config, Settings):
        return config
    if isinstance(config, Mapping):
        return load_settings(data=config)
    return load_settings(config)


def _first_replica(settings: Settings, name: str) -> ProviderConfig | None:
    """A ``[models.<name>]`` with replicas (``provider = ["a", "b"]``): its first replica stands for the
    client's configuration (the driver balances over all of them), asking for the model's ``upstream``."""
    from .balance import replicas_of

    models = settings.raw.get("models")
    spec = models.get(name) if isinstance(models, Mapping) else None
    if not isinstance(spec, Mapping):
        return None
    first, replicas = replicas_of(spec, f"models.{name}", set(settings.providers))
    if not replicas or first is None:
        return None
    config = settings.provider(first)
    upstream = spec.get("upstream")
    return replace(config, model=upstream) if isinstance(upstream, str) else config
