"""aiohttp under AsyncClient for the gateway: it keeps throughput under concurrency and closes an
upstream connection the moment a client goes away, which is what frees a llama-server slot."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Mapping
from urllib.parse import unquote, urlsplit

import aiohttp

from ..async_transport import OpenStream, RawResponse, Timeouts, TransportFailure
from ..config import public_url

__all__ = ["AiohttpTransport"]


def _failure(exc: BaseException) -> TransportFailure:
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return TransportFailure("timeout", str(exc) or type(exc).__name__)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransportFailure("connect", str(exc) or type(exc).__name__)
    return TransportFailure("protocol", str(exc) or type(exc).__name__)


_TIMEOUTS: dict[Timeouts, aiohttp.ClientTimeout] = {}


def _timeout(t: Timeouts) -> aiohttp.ClientTimeout:
    # A handful of distinct values per process (one per provider timeout): made once each.
    found = _TIMEOUTS.get(t)
    if found is None:
        if len(_TIMEOUTS) >= 64:
            _TIMEOUTS.clear()
        found = _TIMEOUTS[t] = aiohttp.ClientTimeout(total=None, sock_connect=t.connect, sock_read=t.read)
    return found


def _with_credentials(url: str, headers: Mapping[str, str]) -> tuple[str, Mapping[str, str]]:
    """user:password in a base URL becomes Basic auth, as httpx does for corral's own clients (it
    wins over a bearer key); aiohttp refuses a URL with credentials next to an Authorization header."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, headers
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    return public_url(url) or url, {**headers, "Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}


class _Stream:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers
        self._finished = False

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _failure(exc) from exc
        self._finished = True

    async def aread(self) -> bytes:
        try:
            body = await self._response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _failure(exc) from exc
        self._finished = True
        return body

    async def aclose(self) -> None:
        # An unfinished body means the caller gave up: close the connection so the server stops
        # generating, rather than release it to the pool (which would wait to drain it).
        if self._finished:
            self._response.release()
        else:
            self._response.close()


class AiohttpTransport:
    def __init__(self, *, limit: int = 256) -> None:
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=self._limit, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True, trust_env=False)
        return self._session

    async def request(
        self, method: str, url: str, *, content: bytes | None, headers: Mapping[str, str], timeouts: Timeouts
    ) -> RawResponse:
        if "@" in url:
            url, headers = _with_credentials(url, headers)
        try:
            async with self._http().request(
                method, url, data=content, headers=headers, timeout=_timeout(timeouts), allow_redirects=False
            ) as response:
                body = await response.read()
                return RawResponse(response.status, response.headers, body)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _failure(exc) from exc

    async def open_stream(
        self, method: str, url: str, *, content: bytes | None, headers: Mapping[str, str], timeouts: Timeouts
    ) -> OpenStream:
        if "@" in url:
            url, headers = _with_credentials(url, headers)
        try:
            response = await self._http().request(
                method, url, data=content, headers=headers, timeout=_timeout(timeouts), allow_redirects=False
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _failure(exc) from exc
        return _Stream(response)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
