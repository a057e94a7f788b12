"""DNS-rebinding protection for a gateway on loopback with no API keys.

Without keys, anything that can reach 127.0.0.1 may call the gateway, and a web page can: it
points a name it controls at 127.0.0.1 (DNS rebinding), or posts from its own origin. So then a
request must name a loopback host (or one in ``[gateway] allowed_hosts``) in ``Host`` (else 421),
and an ``Origin``, when a browser sends one, must be such a host too (else 403). With keys, a page
cannot authenticate, and these checks step aside. (Starlette's TestClient sends ``Host: testserver``:
give it ``base_url="http://127.0.0.1"``.)
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import is_loopback
from .wire_errors import WireProtocol, error_response, protocol_for_path

__all__ = ["HostGuard"]


def _hostname(netloc: str) -> str:
    """``host[:port]`` (IPv6 in brackets) → host, lower-cased."""
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")].lower() if "]" in netloc else ""
    return netloc.rsplit(":", 1)[0].lower() if netloc.count(":") == 1 else netloc.lower()


class HostGuard:
    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self._allowed = frozenset(h.lower() for h in allowed_hosts)
        self._seen: dict[bytes, bool] = {}  # Host values already judged: a handful per process

    def _ok(self, host: str) -> bool:
        return host in self._allowed or is_loopback(host)

    def _host_ok(self, value: bytes) -> bool:
        known = self._seen.get(value)
        if known is None:
            if len(self._seen) > 256:
                self._seen.clear()
            known = self._seen[value] = self._ok(_hostname(value.decode("latin-1")))
        return known

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = origin = None
            for name, value in scope["headers"]:
                if name == b"host":
                    host = value
                elif name == b"origin":
                    origin = value
            refusal = None
            if host is not None and not self._host_ok(host):
                refusal = (421, f"Host {host.decode('latin-1')!r} is not this gateway's (loopback, or [gateway] "
                           "allowed_hosts): refused as a possible DNS-rebinding attack")  # fmt: skip
            elif origin is not None and not self._host_ok_origin(origin):
                refusal = (403, f"Origin {origin.decode('latin-1')!r} may not call this gateway (loopback, or "
                           "[gateway] allowed_hosts; or configure api_keys)")  # fmt: skip
            if refusal is not None:
                path: str = scope.get("path", "")
                protocol: WireProtocol = protocol_for_path(path)
                kind = "permission_error" if refusal[0] == 403 else "invalid_request_error"
                await error_response(protocol, refusal[0], kind, refusal[1])(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _host_ok_origin(self, value: bytes) -> bool:
        parts = urlsplit(value.decode("latin-1"))
        return parts.scheme in ("http", "https") and self._ok((parts.hostname or "").lower())
