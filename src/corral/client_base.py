"""What Client and AsyncClient share, with no I/O: resolving the provider, the fallback chain,
the retry policy, argument checks. The two drivers differ only in how they wait and send."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .capabilities import Capability
from .config import DEFAULT_LLAMACPP_URL, ProviderConfig, Secret, Settings
from .errors import ConfigurationError, CorralError, UnsupportedCapability
from .providers.base import UNSET, check_sampling
from .registry import create_provider, resolve_with_settings
from .retry import RetryPolicy, Routing, falls_back

if TYPE_CHECKING:
    from .manager.engine import EngineProcess
    from .providers.base import Provider

__all__ = ["ClientBase", "completion_params", "embed_inputs"]


class ClientBase:
    def __init__(
        self,
        target: str | None = None,
        *,
        provider: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float | None = UNSET,
        max_retries: int | None = None,
        config: str | Path | Settings | Mapping[str, Any] | None = None,
    ) -> None:
        self.config, self.settings = resolve_with_settings(
            target,
            provider=provider,
            base_url=base_url,
            api_key=api_key,
            model=model,
            timeout=timeout,
            timeout_given=timeout is not UNSET,
            config=config,
        )
        known = list(self.settings.providers) if self.settings else []
        self.routing = Routing.from_table(self.settings.raw.get("routing") if self.settings else None, known)
        self._max_retries = max_retries
        self._provider: Provider | None = None
        self._others: dict[str, Provider] = {}
        self._engine: EngineProcess | None = None

    @property
    def started(self) -> bool:
        """Whether the primary provider is resolved (for zero-setup/embedded: the engine chosen or
        running). Reading it never starts anything."""
        return self._provider is not None

    @property
    def engine_pid(self) -> int | None:
        """The PID of the embedded llama.cpp engine this client runs, if any."""
        return self._engine.pid if self._engine is not None else None

    # -- the chain of providers a call may use ---------------------------------------------------------------
    def _candidates(self) -> list[str | None]:
        """None is the primary provider; then its configured fallbacks, by name."""
        return [None, *self.routing.fallbacks.get(self.config.name, ())]

    def _next_after(self, candidates: list[str | None], index: int, error: CorralError) -> bool:
        """Decide whether a failed attempt moves on to another provider (possibly adding the
        capability's fallbacks to the chain). False: re-raise."""
        if isinstance(error, UnsupportedCapability):
            try:
                cap = Capability(error.capability)
            except ValueError:
                return False
            extra = [n for n in self.routing.capability_fallbacks.get(cap, ()) if n not in candidates]
            if not extra:
                return False
            candidates[index + 1 : index + 1] = extra
            return True
        return falls_back(error) and index + 1 < len(candidates)

    def _other(self, name: str) -> Provider:
        if name not in self._others:
            assert self.settings is not None  # fallbacks only exist in a config
            self._others[name] = create_provider(self.settings.provider(name))
        return self._others[name]

    def _retry_policy(self, provider: Provider) -> RetryPolicy:
        configured = provider.config.options.get("max_retries")
        for value in (self._max_retries, configured, self.routing.max_retries):
            if value is not None:
                if not isinstance(value, int) or value < 0:
                    raise ConfigurationError(f"max_retries must be a non-negative integer, got {value!r}")
                return RetryPolicy(max_retries=value)
        return RetryPolicy()

    @property
    def demo_model(self) -> bool:
        """Whether this client runs the bundled demo model (zero-setup, nothing else configured)."""
        from .manager.bundled import is_bundled

        return self._engine is not None and self._engine.model is not None and is_bundled(self._engine.model)

    # -- the embedded engine / zero-setup ----------------------------------------------------------------------
    def _pulled_model(self) -> bool:
        """Zero-setup asked for a model by name (``--model org/repo:Q4_K_M``, ``hf://…``) that is a
        pulled model: run it in the embedded engine, whatever answers on 127.0.0.1:8080."""
        name = self.config.model
        if self.config.type != "zero-setup" or not name:
            return False
        from .hub import find_local, is_hub_ref

        return name.startswith("hf://") or (is_hub_ref(name) and find_local(name) is not None)

    def _engine_spec(self) -> tuple[str, tuple[str, ...]]:
        """(GGUF path, engine arguments) for the embedded engine: the configured GGUF (a path, an
        ``hf://`` reference, a pulled model's name), the model named by ``model``, else the bundled one."""
        from .manager.engine import DEFAULT_ENGINE_ARGS

        gguf = self.config.options.get("gguf")
        args = self.config.options.get("args")
        extra = tuple(str(a) for a in args) if isinstance(args, list) else DEFAULT_ENGINE_ARGS
        if not gguf and self._pulled_model():
            gguf = self.config.model
        if gguf:
            from .hub import resolve_model

            path, pulled = resolve_model(str(gguf))
            if pulled is not None:  # answers to its name; its projector comes along
                named = "--alias" in extra or "-a" in extra
                extra = (*extra, *(() if named else ("--alias", pulled.name)))
                if pulled.mmproj is not None and "--mmproj" not in extra and "-mm" not in extra:
                    extra = (*extra, "--mmproj", str(pulled.mmproj))
            return str(path), extra
        from .manager.bundled import bundled_engine_args, bundled_model_path

        return str(bundled_model_path()), bundled_engine_args()

    def _engine_config(self, engine: EngineProcess) -> ProviderConfig:
        return replace(
            self.config,
            name=self.config.name if self.config.type == "embedded" else "embedded",
            type="embedded",
            base_url=engine.url,
            api_key=Secret(engine.api_key),
        )

    def _zero_setup_probe(self) -> Provider:
        return create_provider(replace(self.config, name="llamacpp", type="llamacpp", base_url=DEFAULT_LLAMACPP_URL))


def embed_inputs(inputs: str | Sequence[str]) -> list[str]:
    items = [inputs] if isinstance(inputs, str) else list(inputs)
    if not items:
        raise ConfigurationError("embed() needs at least one input")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise ConfigurationError(f"inputs[{i}] must be a string, got {type(item).__name__}")
    return items


def rerank_inputs(query: str, documents: Sequence[str], top_n: int | None) -> list[str]:
    if not isinstance(query, str):
        raise ConfigurationError(f"query must be a string, got {type(query).__name__}")
    if isinstance(documents, str):
        raise ConfigurationError("documents must be a list of strings, not one string")
    docs = list(documents)
    if not docs:
        raise ConfigurationError("rerank() needs at least one document")
    for i, doc in enumerate(docs):
        if not isinstance(doc, str):
            raise ConfigurationError(f"documents[{i}] must be a string, got {type(doc).__name__}")
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise ConfigurationError(f"top_n must be a positive integer, got {top_n!r}")
    return docs


def completion_params(
    max_tokens: int | None,
    temperature: float | None,
    stop: str | Sequence[str] | None,
    seed: int | None,
    grammar: str | None,
    extra_body: Mapping[str, Any] | None,
) -> dict[str, Any]:
    check_sampling(max_tokens, temperature)
    params: dict[str, Any] = {}
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    if temperature is not None:
        params["temperature"] = temperature
    if stop:
        params["stop"] = [stop] if isinstance(stop, str) else list(stop)
    if seed is not None:
        params["seed"] = seed
    if grammar is not None:
        params["grammar"] = grammar
    params.update(extra_body or {})
    return params


def image_params(model: str | None, n: int, size: str | None, extra_body: Mapping[str, Any] | None) -> dict[str, Any]:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigurationError(f"n must be a positive integer, got {n!r}")
    params: dict[str, Any] = {"n": n, "response_format": "b64_json"}
    if model:
        params["model"] = model
    if size:
        params["size"] = size
    params.update(extra_body or {})
    return params
