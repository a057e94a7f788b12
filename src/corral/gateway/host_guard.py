"""DNS-rebinding protection for a gateway on loopback with no API keys.

Without keys, anything that can reach 127.0.0.1 may call the gateway, and a web page can: it
points a name it controls at 127.0.0.1 (DNS rebinding), or posts from its own origin. So then a
request must name a loopback host (or one in ``[gateway] allowed_hosts``) in ``Host`` (else 421),
and an ``Origin``, when a browser sends one, must be such a host too (else 403). A browser that says
the request is ``Sec-Fetch-Site: cross-site`` is refused too (403), Origin or not: an ``<img>`` or a
link on another site sends no Origin on a GET, and must not make the gateway load or swap a model.
With keys, a page cannot authenticate, and these checks step aside. (Starlette's TestClient sends ``Host: testserver``:
give it ``base_url="http://127.0.0.1"``.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import is_loopback
from .wire_errors import WireProtocol, error_response, protocol_for_path

__all__ = ["HostGuard"]


_NETLOC = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")


def _hostname(netloc: str) -> str:
    """``host[:port]`` (IPv6 in brackets) → host, lower-cased; "" for anything else ("a:1@b", spaces…)."""
    if not _NETLOC.fullmatch(netloc):
        return ""
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
            host = origin = fetch_site = None
            hosts = 0
            for name, value in scope["headers"]:
                if name == b"host":
                    host = value
                    hosts += 1
                elif name == b"origin":
                    origin = value
                elif name == b"sec-fetch-site":
                    fetch_site = value
            refusal = None
            if hosts > 1:
                refusal = (400, "more than one Host header")
            elif host is not None and not self._host_ok(host):
                refusal = (421, f"Host {host.decode('latin-1')!r} is not this gateway's (loopback, or [gateway] "
                           "allowed_hosts): refused as a possible DNS-rebinding attack")  # fmt: skip
            elif origin is not None and not self._host_ok_origin(origin):
                refusal = (403, f"Origin {origin.decode('latin-1')!r} may not call this gateway (loopback, or "
                           "[gateway] allowed_hosts; or configure api_keys)")  # fmt: skip
            elif fetch_site == b"cross-site" and origin is None:
                refusal = (403, "a cross-site browser request may not call this gateway (configure api_keys "
                           "to serve other sites)")  # fmt: skip
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
