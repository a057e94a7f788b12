"""One corral client per provider, created on first use and closed when the server stops.

The async client serves chat, streams, model lists and health on the event loop; the probe
functions (benchmark, validate) are synchronous and get a sync client in a worker thread. Both
kinds share a zero-setup engine (``acquire_engine`` counts references), and closing them reaps it.
"""

from __future__ import annotations

import logging
import threading

import anyio

from ..async_client import AsyncClient
from ..client import Client
from ..config import Settings, find_provider
from ..registry import ZERO_SETUP, resolve_with_settings

__all__ = ["ArgumentError", "ClientPool"]

logger = logging.getLogger(__name__)

ZERO_SETUP_NAME = ZERO_SETUP.name  # "default": the zero-setup provider when nothing is configured


class ArgumentError(ValueError):
    """A tool argument is wrong; the message starts with the argument's name."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}")


class ClientPool:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        default = resolve_with_settings(None, config=settings)[0]
        self.zero_setup = default is ZERO_SETUP
        self.default = default.name
        self.names = list(settings.providers)
        if self.default not in self.names:
            self.names.append(self.default)
        self._async: dict[str, AsyncClient] = {}
        self._sync: dict[str, Client] = {}
        self._sync_lock = threading.Lock()
        self._closed = False

    def type_of(self, name: str) -> str:
        found = find_provider(self.settings, name)
        return found.type if found is not None else "zero-setup"

    def resolve(self, provider: str | None) -> str:
        """The canonical provider name for a tool's ``provider`` argument (None: the default).
        Only configured providers are offered: a DSN or a bare type here would let a client
        point the server at any host."""
        if provider is None or provider == "":
            return self.default
        if provider in self.names:
            return provider
        found = find_provider(self.settings, provider)
        if found is not None:
            return found.name
        raise ArgumentError("provider", f"unknown provider {provider!r} (configured: {', '.join(self.names)})")

    def _target(self, name: str) -> str | None:
        # The zero-setup default is what Client() with no name resolves to; a configured one by name.
        return None if name == ZERO_SETUP_NAME and self.zero_setup else name

    def client(self, name: str) -> AsyncClient:
        if self._closed:
            raise RuntimeError("the MCP server is shutting down")
        if name not in self._async:
            self._async[name] = AsyncClient(self._target(name), config=self.settings)
        return self._async[name]

    def sync_client(self, name: str) -> Client:
        """For worker threads (the probes)."""
        with self._sync_lock:
            if self._closed:
                raise RuntimeError("the MCP server is shutting down")
            if name not in self._sync:
                self._sync[name] = Client(self._target(name), config=self.settings)
            return self._sync[name]

    async def aclose(self) -> None:
        with self._sync_lock:
            self._closed = True
            sync, self._sync = list(self._sync.values()), {}
        clients, self._async = list(self._async.values()), {}
        with anyio.CancelScope(shield=True):  # shutting down: finish closing even when cancelled
            for c in clients:
                await c.aclose()
            for s in sync:
                await anyio.to_thread.run_sync(s.close)
        if clients or sync:
            logger.info("corral mcp: closed %d provider client(s)", len(clients) + len(sync))
