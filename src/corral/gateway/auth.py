"""The gateway's own clients' keys: ``Authorization: Bearer`` or ``x-api-key``, compared in
constant time. No keys configured: every caller is let in (loopback only, see host_guard)."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.requests import Request

from ..config import Secret

__all__ = ["Keys"]


class Keys:
    def __init__(self, keys: Iterable[Secret]) -> None:
        self._keys = [k.get().encode() for k in keys]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def authorized(self, request: Request) -> bool:
        if not self._keys:
            return True
        given = request.headers.get("x-api-key", "")
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        raw = given.encode("utf-8", "surrogateescape")
        return any(hmac.compare_digest(raw, k) for k in self._keys)
