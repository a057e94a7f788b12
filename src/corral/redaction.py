"""Masking every configured secret in text that leaves the process (errors relayed from an upstream,
the dashboard, MCP results, the wire log). By value, not by shape: a key without an ``sk-`` prefix, a
base URL's password, and that URL's HTTP Basic encoding are all found, because they are known; and
the user:password part of any URL in the text is masked too."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from .config import Secret, Settings

__all__ = ["MASK", "Redactor"]

MASK = "****"
_MIN_SECRET = 4  # shorter values would mask ordinary words
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")


class Redactor:
    def __init__(self, secrets: Iterable[str | Secret | None] = ()) -> None:
        values = {s if isinstance(s, str) else s.get() for s in secrets if s}
        found = {v for v in values if len(v) >= _MIN_SECRET}
        self._pattern = (
            re.compile("|".join(re.escape(s) for s in sorted(found, key=len, reverse=True))) if found else None
        )

    def __call__(self, text: str) -> str:
        if "://" in text and "@" in text:
            text = _USERINFO.sub(rf"\1{MASK}@", text)
        return self._pattern.sub(MASK, text) if self._pattern is not None else text

    @classmethod
    def from_settings(cls, settings: Settings | None, extra: Iterable[str | Secret | None] = ()) -> Redactor:
        """Every provider's key, every base URL's password and its Basic-auth forms, and ``extra``."""
        secrets: list[str | Secret | None] = list(extra)
        for config in settings.providers.values() if settings is not None else ():
            secrets.append(config.api_key)
            secrets += url_secrets(config.base_url)
        return cls(secrets)


def url_secrets(url: str | None) -> list[str]:
    """A base URL's password (as written and unquoted), and the Basic-auth forms of its user:password."""
    if not url or "@" not in url:
        return []
    parts = urlsplit(url)
    if parts.password is None:
        return [parts.username] if parts.username and len(parts.username) >= 16 else []  # a token as the user
    user = parts.username or ""
    out = [parts.password, unquote(parts.password)]
    for pair in (f"{user}:{parts.password}", f"{unquote(user)}:{unquote(parts.password)}"):
        out.append(base64.b64encode(pair.encode()).decode("ascii"))
    return out
