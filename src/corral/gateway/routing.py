"""Where a request goes: a model name (or alias) to a provider client and an upstream model name,
managed models started (or waited for) through the model manager and held for the request."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..async_client import AsyncClient
from ..balance import Balancer, Gate, Refused, prefix_chain
from ..config import ProviderConfig, Secret, Settings
from .settings import GatewaySettings, ModelRoute
from .wire_errors import WireError

if TYPE_CHECKING:
    from ..manager.scheduler import Scheduler
    from .aiohttp_transport import AiohttpTransport
    from .observe import RequestRecord

__all__ = ["LLAMACPP_TYPES", "OPENAI_SHAPED", "STREAM_ONLY_CANCEL", "Resolved", "Router"]

# Provider types whose wire is OpenAI's: requests in OpenAI shape pass through to them untouched.
OPENAI_SHAPED = frozenset({"llamacpp", "openai", "llama-swap", "embedded", "zero-setup"})
# llama-server notices a vanished client only while it streams tokens (llama.cpp #24496): a
# non-streamed request to it is sent streamed and assembled here, so a disconnect still frees the slot.
STREAM_ONLY_CANCEL = frozenset({"llamacpp", "embedded", "zero-setup"})
LLAMACPP_TYPES = STREAM_ONLY_CANCEL


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where one request goes."""

    client: AsyncClient
    route: ModelRoute
    types: frozenset[str]  # the provider types of the whole fallback chain

    def upstream_model(self, requested: str | None) -> str | None:
        return self.route.upstream if self.route.upstream is not None else requested


class Router:
    def __init__(
        self,
        settings: Settings,
        config: GatewaySettings,
        transport: AiohttpTransport,
        manager: Scheduler | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.transport = transport
        self.manager = manager
        self._clients: dict[str | None, AsyncClient] = {}
        self._managed: dict[str, tuple[str, AsyncClient]] = {}
        self._replicated: dict[str, AsyncClient] = {}  # route name -> the client balancing its replicas
        self.gates: dict[str, Gate] = {}  # route name -> its concurrency limit and queue
        self.managed_balancers: dict[str, Balancer] = {}  # a managed model with replicas -> its balancer
        self._poller: asyncio.Task[None] | None = None
        self._first_polls: dict[str, asyncio.Future[Any]] = {}  # each replicated route's first poll
        self.poll_interval = 1.0

    async def aclose(self) -> None:
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        clients = list(self._clients.values()) + [c for _, c in self._managed.values()]
        clients += list(self._replicated.values())
        self._clients, self._managed, self._replicated = {}, {}, {}
        for c in clients:
            await c.aclose()

    # -- replicas ---------------------------------------------------------------------------------------------
    def _replica_client(self, route: ModelRoute) -> AsyncClient:
        client = self._replicated.get(route.name)
        if client is None:
            client = AsyncClient(
                route.name, config=self.settings, transport=self.transport, max_retries=self.config.upstream_retries
            )
            self._replicated[route.name] = client
            if self._poller is None:
                with contextlib.suppress(RuntimeError):  # no loop (a synchronous caller): no background poll
                    self._poller = asyncio.get_running_loop().create_task(self._poll_forever())
        return client

    async def _poll_forever(self) -> None:
        """Each replica's /slots (or health) every poll_interval, off every request's path: the balancer's
        view of load beyond corral's own count, and how ejected replicas come back."""
        while True:
            for client in list(self._replicated.values()):
                with contextlib.suppress(Exception):  # a poll that fails is the replica's failure, noted there
                    await client.poll_replicas(timeout=max(0.5, self.poll_interval))
            await asyncio.sleep(self.poll_interval)

    def replica_state(self) -> dict[str, dict[str, Any]]:
        """Per replicated or limited model: its replicas' state and its queue (for /metrics, the dashboard, MCP)."""
        out: dict[str, dict[str, Any]] = {}
        for group, balancer in self.managed_balancers.items():
            gate = self.gates.get(group)
            out[group] = {"balance": balancer.strategy, "replicas": balancer.snapshot(),
                          "queue": gate.snapshot() if gate is not None else None}  # fmt: skip
        for name, gate in self.gates.items():
            if name not in out and not any(r.name == name for r in self.config.models):
                out[name] = {"balance": None, "replicas": {}, "queue": gate.snapshot()}  # a managed model's limit
        for route in self.config.models:
            if route.policy is None:
                continue
            client = self._replicated.get(route.name)
            routed = client.balancer if client is not None else None
            gate = self.gates.get(route.name)
            out[route.name] = {
                "balance": route.policy.balance if route.replicas else None,
                # before its first request: the replicas, not yet asked
                "replicas": routed.snapshot()
                if routed is not None
                else {n: {"state": "healthy"} for n in route.replicas},
                "queue": gate.snapshot() if gate is not None else None,
            }
        return out

    def _managed_replica(self, group: str, affinity: Sequence[Any], rec: RequestRecord) -> str:
        """The child of a managed model with replicas (``replicas = N``) that takes this request, chosen
        cache-aware by its messages; the model's own name when it has no replicas."""
        assert self.manager is not None
        children = self.manager.settings.replica_groups.get(group)
        if not children:
            return group
        balancer = self.managed_balancers.get(group)
        if balancer is None:
            balancer = self.managed_balancers[group] = Balancer(children)
        chosen = balancer.pick(prefix_chain(affinity) if affinity else ()) or children[0]
        rec.on_finish.append(lambda: balancer.end(chosen, "failed" if rec.status >= 500 else "ok"))
        return chosen

    async def _admit_managed(self, name: str, rec: RequestRecord) -> None:
        assert self.manager is not None
        children = self.manager.settings.replica_groups.get(name)
        spec = self.manager.settings.models[children[0] if children else name]
        if spec.concurrency is not None:
            await self._wait_gate(name, spec.concurrency, spec.queue, spec.queue_timeout, rec)

    async def _admit(self, route: ModelRoute, rec: RequestRecord) -> None:
        """The model's concurrency limit: wait in its queue, or 429 with Retry-After."""
        policy = route.policy
        limit = policy.limit if policy is not None else None
        if policy is None or limit is None:
            return
        await self._wait_gate(route.name, limit, policy.queue, policy.queue_timeout, rec)

    async def _wait_gate(self, name: str, limit: int, queue: int, timeout: float, rec: RequestRecord) -> None:
        gate = self.gates.get(name)
        if gate is None:
            gate = self.gates[name] = Gate(limit, queue, timeout)
        route_name = name
        try:
            await gate.acquire()
        except Refused as exc:
            raise WireError(
                429, f"model {route_name!r} is busy: {exc.reason}; retry in {exc.retry_after} s",
                headers={"retry-after": str(exc.retry_after)},
            ) from None  # fmt: skip
        started = time.perf_counter()
        rec.on_finish.append(lambda: gate.release(time.perf_counter() - started))

    async def target(self, model: Any, rec: RequestRecord, affinity: Sequence[Any] = ()) -> Resolved:
        """resolve(), plus the model manager: a managed model is started (or waited for) here and
        held until the request finishes (``rec.on_finish``), so it is never swapped out mid-answer.
        ``affinity``: the request's messages, for the choice among a managed model's replicas."""
        managed = self.manager.model_for(model) if self.manager is not None and isinstance(model, str) else None
        if self.manager is not None and managed is not None:
            await self._admit_managed(managed, rec)
            child = self._managed_replica(managed, affinity, rec)
            lease = await self.manager.acquire(child)
            rec.on_finish.append(lease.release)
            name = lease.process.spec.name
            rec.label = managed
            return Resolved(self._managed_client(name, lease.url, lease.api_key), ModelRoute(name, None, None),
                            frozenset({"llamacpp"}))  # fmt: skip
        resolved = self.resolve(model)
        rec.label = resolved.route.name if resolved.route.name != "*" else "default"
        if resolved.route.replicas:
            # Once, before the model's first requests: the replicas' slots and health, so that even the
            # first conversations get their own llama-server slot (later polls run in the background).
            first = self._first_polls.get(resolved.route.name)
            if first is None:
                poll = resolved.client.poll_replicas(timeout=2.0)
                first = self._first_polls[resolved.route.name] = asyncio.ensure_future(poll)
            if not first.done():
                with contextlib.suppress(Exception):
                    await asyncio.shield(first)
        await self._admit(resolved.route, rec)
        return resolved

    def _managed_client(self, name: str, url: str, key: str) -> AsyncClient:
        cached = self._managed.get(name)
        if cached is not None and cached[0] == url:
            return cached[1]
        config = ProviderConfig(name, "llamacpp", url, Secret(key), None, 600.0, {"max_retries": 0})
        client = AsyncClient(name, config=Settings(name, {name: config}), transport=self.transport)
        self._managed[name] = (url, client)
        return client

    def client(self, provider: str | None) -> AsyncClient:
        if provider not in self._clients:
            client = AsyncClient(provider, config=self.settings, transport=self.transport)
            if client.config.options.get("max_retries") is None and client.routing.max_retries is None:
                # The gateway's callers retry 429/5xx themselves (the SDKs do, twice): retrying here too
                # would multiply upstream calls. One attempt per provider, fallbacks still apply, and the
                # upstream's status and Retry-After go back to the caller. Configured retries win.
                client = AsyncClient(
                    provider, config=self.settings, transport=self.transport, max_retries=self.config.upstream_retries
                )
            self._clients[provider] = client
        return self._clients[provider]

    def resolve(self, model: Any) -> Resolved:
        if model is not None and not isinstance(model, str):
            raise WireError(400, "model must be a string", param="model")
        route = self.config.route(model)
        if route is None:
            raise WireError(404, f"model {model!r} is not served here (models: {self.known()})", param="model")
        if route.replicas:
            client = self._replica_client(route)
            chain = [self.settings.provider(n).type for n in route.replicas]
            first = route.name
        else:
            client = self.client(route.provider)
            chain, first = [client.config.type], client.config.name
        for name in client.routing.fallbacks.get(first, ()):
            chain.append(self.settings.provider(name).type)
        return Resolved(client, route, frozenset(chain))

    def known(self, limit: int = 20, width: int = 400) -> str:
        """The names a caller may use, for an error message: configured routes, then managed models,
        at most ``limit`` names and about ``width`` characters."""
        names = sorted(self.config.routes)
        if self.manager is not None:
            names += sorted(n for n in self.manager.names if n not in self.config.routes)
        shown: list[str] = []
        size = 0
        for name in names[:limit]:
            size += len(name) + 2
            if shown and size > width:
                break
            shown.append(name)
        if not shown:
            return "none"
        more = len(names) - len(shown)
        return ", ".join(shown) + (f" and {more} more" if more else "")

    def model_names(self) -> list[str]:
        names = [name for route in self.config.models for name in (route.name, *route.aliases)]
        if self.manager is not None:
            names += [n for n in self.manager.names if n not in names]
        return names
