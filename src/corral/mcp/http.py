"""Streamable HTTP: the SDK's app, its DNS-rebinding protection switched on explicitly, and a
static bearer key in front of it.

A browser page can reach a loopback server; the Host and Origin checks (the SDK's
``TransportSecuritySettings``: 421 for a foreign Host, 403 for a foreign Origin) stop a page on
another site, or a rebound DNS name, from driving the models. The key stops everything else.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Secret, is_loopback

__all__ = ["BearerKey", "OnShutdown", "http_app", "is_loopback", "security_settings"]

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def security_settings(
    host: str, allowed_hosts: Sequence[str] = (), allowed_origins: Sequence[str] = ()
) -> TransportSecuritySettings:
    """Loopback names on any port (as the SDK's own default), the bound address, and what the
    config adds (``[mcp] allowed_hosts`` / ``allowed_origins``, ``name:*`` for any port)."""
    bound = f"[{host}]" if ":" in host and not host.startswith("[") else host
    hosts = {*_LOOPBACK_HOSTS, bound}
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*(f"{h}:*" for h in sorted(hosts)), *sorted(hosts), *allowed_hosts],
        allowed_origins=[*(f"http://{h}:*" for h in sorted(hosts)), *allowed_origins],
    )


class BearerKey:
    """ASGI middleware: HTTP requests need ``Authorization: Bearer <key>``, else 401."""

    def __init__(self, app: ASGIApp, key: Secret) -> None:
        self.app = app
        self._expected = f"Bearer {key.get()}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._authorized(scope):
            body = json.dumps({"error": "unauthorized", "message": "missing or wrong bearer key"}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"www-authenticate", b'Bearer realm="corral-mcp"'),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        given = next((v for k, v in headers if k == b"authorization"), b"")
        return hmac.compare_digest(given, self._expected)  # constant time: no guessing byte by byte


class OnShutdown:
    """ASGI middleware: run ``hook`` when the server shuts down, before it reports it has.

    uvicorn re-raises SIGTERM/SIGINT once its graceful shutdown is over, so code after ``serve()``
    never runs on a signal; the lifespan's shutdown is the last moment that is sure to."""

    def __init__(self, app: ASGIApp, hook: Callable[[], Awaitable[None]]) -> None:
        self.app = app
        self.hook = hook

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.hook()
            await send(message)

        await self.app(scope, receive, sending)


def http_app(
    server: MCPServer[Any],
    *,
    host: str,
    api_key: Secret | None,
    allowed_hosts: Sequence[str] = (),
    allowed_origins: Sequence[str] = (),
) -> ASGIApp:
    """The MCP endpoint is ``/mcp``."""
    app: ASGIApp = server.streamable_http_app(
        transport_security=security_settings(host, allowed_hosts, allowed_origins), host=host
    )
    return BearerKey(app, api_key) if api_key else app
