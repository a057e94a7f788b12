"""The pluggable I/O under AsyncClient: httpx by default; the gateway plugs in aiohttp, which
keeps its throughput under concurrency (httpx's async pool does not, see httpx issue #3215).

A transport moves bytes and reports failures as :class:`TransportFailure`; turning those into
corral errors (with the provider's wording) stays in one place, transport.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    import httpx

__all__ = [
    "AsyncTransport",
    "HttpxTransport",
    "OpenStream",
    "RawJSON",
    "RawResponse",
    "Timeouts",
    "TransportFailure",
]


class RawJSON(bytes):
    """A request body that is JSON already, as ``HTTPRequest.json``: AsyncClient sends these bytes
    as they are instead of encoding the value (the gateway's pass-through of a body it left unchanged)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float | None
    read: float | None  # between bytes; for a whole (non-streamed) answer, the wait for it


class TransportFailure(Exception):
    """No usable HTTP exchange: ``kind`` is "connect" (nothing answered), "timeout" or "protocol"
    (the peer broke the exchange, e.g. closed a stream early)."""

    def __init__(self, kind: Literal["connect", "timeout", "protocol"], detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}")


@dataclass(frozen=True, slots=True)
class RawResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


class OpenStream(Protocol):
    """A response whose body has not been read yet."""

    status: int
    headers: Mapping[str, str]

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...
    async def aread(self) -> bytes: ...
    async def aclose(self) -> None: ...


class AsyncTransport(Protocol):
    async def request(
        self, method: str, url: str, *, content: bytes | None, headers: Mapping[str, str], timeouts: Timeouts
    ) -> RawResponse: ...

    async def open_stream(
        self, method: str, url: str, *, content: bytes | None, headers: Mapping[str, str], timeouts: Timeouts
    ) -> OpenStream: ...

    async def aclose(self) -> None: ...


def _httpx_failure(exc: Exception) -> TransportFailure:
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return TransportFailure("timeout", str(exc) or type(exc).__name__)
    if isinstance(exc, httpx.ConnectError):
        return TransportFailure("connect", str(exc) or type(exc).__name__)
    return TransportFailure("protocol", str(exc) or type(exc).__name__)


class _HttpxStream:
    def __init__(self, cm: object, response: httpx.Response) -> None:
        self._cm = cm
        self._response = response
        self.status = response.status_code
        self.headers: Mapping[str, str] = response.headers

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        import httpx

        try:
            async for chunk in self._response.aiter_bytes():
                yield chunk
        except httpx.HTTPError as exc:
            raise _httpx_failure(exc) from exc

    async def aread(self) -> bytes:
        import httpx

        try:
            return await self._response.aread()
        except httpx.HTTPError as exc:
            raise _httpx_failure(exc) from exc

    async def aclose(self) -> None:
        await self._cm.__aexit__(None, None, None)  # type: ignore[attr-defined]


class HttpxTransport:
    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._client = client
        self._own = client is None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(timeout=None, follow_redirects=False)
        return self._client

    @staticmethod
    def _timeout(t: Timeouts) -> httpx.Timeout:
        import httpx

        return httpx.Timeout(t.read, connect=t.connect)

    async def request(
        self, method: str, url: str, *, content: bytes | None, headers: Mapping[str, str], timeouts: Timeouts
    ) -> RawResponse:
        import httpx

        try:
            r = await self._http().request(
                method, url, content=content, headers=headers, timeout=self._timeout(timeouts)
            )
        except httpx.HTTPError as exc:
            raise _httpx_failure(exc) from exc
        return RawResponse(r.status_code, r.headers, r.content)

    async def open_stream(
        self, method: str, url: str, *, content: bytes | None, headers: Mapping[str, str], timeouts: Timeouts
    ) -> OpenStream:
        import httpx

        cm = self._http().stream(method, url, content=content, headers=headers, timeout=self._timeout(timeouts))
        try:
            response = await cm.__aenter__()
        except httpx.HTTPError as exc:
            raise _httpx_failure(exc) from exc
        return _HttpxStream(cm, response)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._own:
            await client.aclose()
