"""Where a request goes: a model name (or alias) to a provider client and an upstream model name,
managed models started (or waited for) through the model manager and held for the request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..async_client import AsyncClient
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

    async def aclose(self) -> None:
        clients = list(self._clients.values()) + [c for _, c in self._managed.values()]
        self._clients, self._managed = {}, {}
        for c in clients:
            await c.aclose()

    async def target(self, model: Any, rec: RequestRecord) -> Resolved:
        """resolve(), plus the model manager: a managed model is started (or waited for) here and
        held until the request finishes (``rec.on_finish``), so it is never swapped out mid-answer."""
        if self.manager is not None and isinstance(model, str) and self.manager.model_for(model) is not None:
            lease = await self.manager.acquire(model)
            rec.on_finish.append(lease.release)
            name = lease.process.spec.name
            rec.label = name
            return Resolved(self._managed_client(name, lease.url, lease.api_key), ModelRoute(name, None, None),
                            frozenset({"llamacpp"}))  # fmt: skip
        resolved = self.resolve(model)
        rec.label = resolved.route.name if resolved.route.name != "*" else "default"
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
        client = self.client(route.provider)
        chain = [client.config.type]
        for name in client.routing.fallbacks.get(client.config.name, ()):
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
