"""ChatStream and AsyncChatStream: iterate typed events, then ``final()``; always closed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx

from .async_transport import TransportFailure
from .errors import CorralError
from .events import Done, StreamEvent
from .sse import DONE, StreamDecoder
from .transport import failure_error, translate_error
from .types import ChatResponse, Usage

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from .async_transport import OpenStream
    from .providers.base import Provider, StreamCall

__all__ = ["AsyncChatStream", "ChatStream"]


class _EventPump:
    """Bytes -> events, shared by both stream kinds (no I/O)."""

    __slots__ = ("_decoder", "_done_seen", "_state", "response")

    def __init__(self, call: StreamCall) -> None:
        self._decoder = StreamDecoder(call.decoder)
        self._state = call.new_state()
        self._done_seen = False
        self.response: ChatResponse | None = None

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        return self._payloads(self._decoder.feed(chunk))

    def end(self) -> list[StreamEvent]:
        events = self._payloads(self._decoder.close())
        self.response = self._state.finish()
        events.append(Done(self.response))
        return events

    def _payloads(self, payloads: list[Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for p in payloads:
            if p is DONE:
                self._done_seen = True
                continue
            out.extend(self._state.feed(p))
        return out


class ChatStream:
    """``with client.stream(...) as s: for event in s: ...; s.final()``

    ``opener`` sends the request (with the client's retries and fallbacks) and returns the
    provider that answered, its StreamCall, and the open response."""

    def __init__(
        self,
        opener: Callable[[], tuple[Provider, StreamCall, AbstractContextManager[httpx.Response], httpx.Response]],
    ) -> None:
        self._opener = opener
        self._cm: AbstractContextManager[httpx.Response] | None = None
        self._http: httpx.Response | None = None
        self._provider: Provider | None = None
        self._pump: _EventPump | None = None
        self._iter: Iterator[StreamEvent] | None = None
        self._closed = False

    def __enter__(self) -> ChatStream:
        self._open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def provider(self) -> str:
        """Name of the provider that is answering (after the stream opened)."""
        return self._provider.name if self._provider else ""

    def _open(self) -> None:
        if self._http is not None or self._closed:
            return
        self._provider, call, self._cm, self._http = self._opener()
        self._pump = _EventPump(call)

    def __iter__(self) -> Iterator[StreamEvent]:
        if self._iter is None:
            self._iter = self._events()
        return self._iter

    def _events(self) -> Iterator[StreamEvent]:
        self._open()
        if self._http is None or self._pump is None or self._provider is None:
            raise CorralError("stream was closed before it started")
        try:
            try:
                for chunk in self._http.iter_bytes():
                    yield from self._pump.feed(chunk)
            except httpx.HTTPError as exc:
                raise translate_error(exc, self._provider, streaming=True) from exc
            yield from self._pump.end()
        finally:
            self.close()

    def final(self) -> ChatResponse:
        """Read the rest of the stream and return the whole response, as chat() would."""
        for _ in self:
            pass
        if self._pump is None or self._pump.response is None:
            raise CorralError("stream was closed before it finished")
        return self._pump.response

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        cm, self._cm = self._cm, None
        if cm is not None:
            cm.__exit__(None, None, None)


class AsyncChatStream:
    """``async with client.stream(...) as s: async for event in s: ...; await s.final()``

    Opening (resolving the provider, sending the request, retries and fallbacks) happens on
    ``__aenter__`` or on the first iteration."""

    def __init__(self, opener: Callable[[], Awaitable[tuple[Provider, StreamCall, OpenStream]]]) -> None:
        self._opener = opener
        self._http: OpenStream | None = None
        self._provider: Provider | None = None
        self._pump: _EventPump | None = None
        self._iter: AsyncIterator[StreamEvent] | None = None
        self._closed = False

    async def __aenter__(self) -> AsyncChatStream:
        await self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def provider(self) -> str:
        """Name of the provider that is answering (after the stream opened)."""
        return self._provider.name if self._provider else ""

    async def _open(self) -> None:
        if self._http is not None or self._closed:
            return
        self._provider, call, self._http = await self._opener()
        self._pump = _EventPump(call)

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        if self._iter is None:
            self._iter = self._events()
        return self._iter

    async def _events(self) -> AsyncIterator[StreamEvent]:
        await self._open()
        if self._http is None or self._pump is None or self._provider is None:
            raise CorralError("stream was closed before it started")
        try:
            try:
                async for chunk in self._http.aiter_bytes():
                    for event in self._pump.feed(chunk):
                        yield event
            except TransportFailure as exc:
                raise failure_error(exc, self._provider, streaming=True) from exc
            for event in self._pump.end():
                yield event
        finally:
            await self.aclose()

    async def final(self) -> ChatResponse:
        """Read the rest of the stream and return the whole response, as chat() would."""
        async for _ in self:
            pass
        if self._pump is None or self._pump.response is None:
            raise CorralError("stream was closed before it finished")
        return self._pump.response

    def usage_so_far(self) -> Usage | None:
        """The usage known before the stream ends (llama.cpp's per-token timings), or None."""
        state = self._pump._state if self._pump is not None else None
        known = getattr(state, "usage_so_far", None)
        return known() if known is not None else None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        stream, self._http = self._http, None
        if stream is not None:
            await stream.aclose()
