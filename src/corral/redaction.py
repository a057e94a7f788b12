"""Masking every configured secret in text that leaves the process (errors relayed from an upstream,
the dashboard, MCP results). By value, not by shape: a key without an ``sk-`` prefix, a base URL's
password, and its HTTP Basic encoding are all found, because they are known."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from .config import Settings

__all__ = ["Redactor"]

MASK = "***"
_MIN_SECRET = 4  # shorter values would mask ordinary words


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        found = {s for s in secrets if s and len(s) >= _MIN_SECRET}
        self._pattern = (
            re.compile("|".join(re.escape(s) for s in sorted(found, key=len, reverse=True))) if found else None
        )

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None else text

    @classmethod
    def from_settings(cls, settings: Settings | None, extra: Iterable[str] = ()) -> Redactor:
        secrets: list[str] = list(extra)
        for config in settings.providers.values() if settings is not None else ():
            if config.api_key:
                secrets.append(config.api_key.get())
            secrets += _url_secrets(config.base_url)
        return cls(secrets)


def _url_secrets(url: str | None) -> list[str]:
    """A base URL's password, and the Basic-auth forms of its user:password (as sent, and unquoted)."""
    if not url or "@" not in url:
        return []
    parts = urlsplit(url)
    if parts.password is None:
        return [parts.username] if parts.username and len(parts.username) >= 16 else []  # a token as user
    out = [parts.password, unquote(parts.password)]
    user = parts.username or ""
    for pair in (f"{user}:{parts.password}", f"{unquote(user)}:{unquote(parts.password)}"):
        out.append(base64.b64encode(pair.encode()).decode("ascii"))
    return out
