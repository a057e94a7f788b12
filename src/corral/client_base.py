"""What Client and AsyncClient share, with no I/O: resolving the provider, the fallback chain,
the retry policy, argument checks. The two drivers differ only in how they wait and send."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .capabilities import Capability
from .config import DEFAULT_LLAMACPP_URL, ProviderConfig, Secret, Settings
from .errors import ConfigurationError, CorralError, ProviderError, ServerError, UnsupportedCapability
from .providers.base import UNSET, Call, HTTPRequest, check_sampling
from .registry import create_provider, resolve_with_settings
from .retry import RetryPolicy, Routing, falls_back

if TYPE_CHECKING:
    from .balance import Balancer, ModelPolicy
    from .manager.engine import EngineProcess
    from .providers.base import Provider

__all__ = ["ClientBase", "Plan", "completion_params", "embed_inputs"]


class _Sends(Protocol):
    @property
    def request(self) -> HTTPRequest: ...


C = TypeVar("C", bound=_Sends)  # a Call or a StreamCall


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
        #: a ``[models.<name>]`` with replicas named as the target: its policy and balancer (else None)
        self.policy: ModelPolicy | None = _replica_policy(self.settings, target or provider)
        self.balancer: Balancer | None = self.policy.balancer() if self.policy is not None else None
        self._route_name = (target or provider or self.config.name) if self.balancer else self.config.name
        self._no_slots: set[str] = set()
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
        return [None, *self.routing.fallbacks.get(self._route_name, ())]

    def _plan(self, messages: Sequence[Any] = ()) -> Plan:
        """The way one call goes: a replica chosen by the balancer (by ``messages``' prefix), the
        others on failure, then the fallbacks; or the primary provider and its fallbacks."""
        return Plan(self, messages)

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

    # -- replicas: what a background poll asks and how its answer is read -------------------------------------
    def _poll_calls(self) -> list[tuple[str, Provider, Call[Any]]]:
        """Per replica, the cheap call that tells its load and health: llama-server's ``/slots``, else
        the provider's health check. Providers with neither are not polled (their load is corral's count)."""
        out: list[tuple[str, Provider, Call[Any]]] = []
        for name in self.balancer.replicas if self.balancer else ():
            provider = self._other(name)
            slots = getattr(provider, "slots", None)  # llama.cpp's providers have it
            for make in (None if name in self._no_slots else slots, provider.health):
                if make is None:
                    continue
                try:
                    out.append((name, provider, make()))
                    break
                except UnsupportedCapability:
                    continue
        return out

    def _polled(self, name: str, result: Any) -> None:
        """Feed one poll's answer (or the CorralError it raised) to the balancer."""
        from .types import Health, SlotInfo

        assert self.balancer is not None
        if isinstance(result, list) and all(isinstance(s, SlotInfo) for s in result):
            self.balancer.observe_slots(name, sum(s.is_processing for s in result), len(result))
            self.balancer.probe(name, True)
        elif isinstance(result, Health):
            self.balancer.probe(name, result.status == "ok")
        elif isinstance(result, UnsupportedCapability) or (
            isinstance(result, ProviderError) and (result.status < 500 or result.status == 501)
        ):
            self._no_slots.add(name)  # the server answers but has no /slots (disabled, or not llama-server)
            self.balancer.probe(name, True)
        elif isinstance(result, CorralError):
            self.balancer.probe(name, not falls_back(result))

    def _retry_policy(self, provider: Provider) -> RetryPolicy:
        if self.balancer is not None and provider.name in self.balancer.replicas:
            return RetryPolicy(max_retries=0)  # a failing replica is not asked again: the next one is
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


def _replica_policy(settings: Settings | None, name: str | None) -> ModelPolicy | None:
    """The policy of ``[models.<name>]`` when it lists replicas and ``name`` is no provider of its own."""
    if settings is None or not name or name in settings.providers:
        return None
    models = settings.raw.get("models")
    spec = models.get(name) if isinstance(models, Mapping) else None
    if not isinstance(spec, Mapping) or not isinstance(spec.get("provider"), list):
        return None
    from .balance import model_policy

    policy = model_policy(spec, f"models.{name}", set(settings.providers))
    return policy if policy.replicas else None


class Plan:
    """One call's way through a model's replicas, then its fallbacks. The drivers ask :attr:`name` (the
    provider to use; None: the primary), report each attempt's end (:meth:`ended`) and ask whether to go
    on after an error (:meth:`advance`). Replicas are counted in flight from their choice to ``ended``."""

    __slots__ = ("_base", "_chain", "_live", "_tried", "candidates", "index", "slot")

    def __init__(self, base: ClientBase, messages: Sequence[Any]) -> None:
        self._base = base
        self.index = 0
        self._live: str | None = None  # the replica this attempt counts against
        self._tried: set[str] = set()
        self.slot: int | None = None  # the llama-server slot the attempt is pinned to (id_slot)
        balancer = base.balancer
        if balancer is None:
            self._chain: tuple[int, ...] = ()
            self.candidates = base._candidates()
            return
        from .balance import prefix_chain

        self._chain = prefix_chain(messages) if messages else ()
        fallbacks: list[str | None] = list(base.routing.fallbacks.get(base._route_name, ()))
        first = balancer.pick(self._chain)
        if first is None and not fallbacks:
            wait = balancer.retry_in()
            raise ServerError(
                f"every replica of {base._route_name!r} is ejected after failures (next probe in {wait:.0f} s)",
                status=503, provider=base._route_name, retry_after=max(1.0, wait),
            )  # fmt: skip
        self._live = first
        self.slot = balancer.slot_for(first, self._chain) if first is not None else None
        self.candidates = [first, *fallbacks] if first is not None else fallbacks

    @property
    def name(self) -> str | None:
        return self.candidates[self.index]

    def ended(self, error: BaseException | None) -> None:
        """The current attempt is over: fine (None), failed (a CorralError), or cut short (anything else)."""
        live, self._live = self._live, None
        slot, self.slot = self.slot, None
        if live is None or self._base.balancer is None:
            return
        self._tried.add(live)
        if error is None:
            self._base.balancer.end(live, "ok", slot)
        elif isinstance(error, CorralError) and falls_back(error):
            self._base.balancer.end(live, "failed", slot)
        else:
            self._base.balancer.end(live, "other", slot)

    def release(self) -> Callable[[bool], None]:
        """For a stream that opened: what ends its attempt when the stream closes (once); ``failed``:
        the connection broke mid-stream (the replica died), which counts against it."""
        live, self._live = self._live, None
        slot, self.slot = self.slot, None
        balancer = self._base.balancer
        done = False

        def end(failed: bool = False) -> None:
            nonlocal done
            if not done and live is not None and balancer is not None:
                done = True
                balancer.end(live, "failed" if failed else "ok", slot)

        return end

    def pinned(self, call: C) -> C:
        """``call`` with the slot this attempt is pinned to (llama-server's ``id_slot``), when it has one:
        in a JSON object body, or in front of a pass-through's bytes (a client's own id_slot, later in
        the object, still wins)."""
        slot = self.slot
        body = call.request.json
        if slot is None:
            return call
        if isinstance(body, dict):
            if "id_slot" in body:
                return call
            body = {**body, "id_slot": slot}
        elif isinstance(body, bytes) and body[:1] == b"{":
            rest = body[1:]
            joined = b"{" + b'"id_slot":%d' % slot + (b"" if rest.lstrip()[:1] == b"}" else b",") + rest
            body = type(body)(joined)  # a RawJSON stays one
        else:
            return call
        return replace(call, request=replace(call.request, json=body))  # type: ignore[type-var]

    def advance(self, error: CorralError) -> bool:
        """After a failed attempt: whether to try again elsewhere (another replica, then the fallbacks)."""
        balancer = self._base.balancer
        current = self.name
        if balancer is not None and current in balancer.replicas and falls_back(error):
            nxt = balancer.pick(self._chain, exclude=self._tried)
            if nxt is not None:
                self._live = nxt
                self.slot = balancer.slot_for(nxt, self._chain)
                self.candidates.insert(self.index + 1, nxt)
                self.index += 1
                return True
        if self._base._next_after(self.candidates, self.index, error):
            self.index += 1
            return True
        return False


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
