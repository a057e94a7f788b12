"""Answers that take time: a whole answer abandoned when its client leaves, a pass-through stream
relayed event by event (watched for a proper end, the model named as the client asked), and a
translated stream written by a protocol's writer. Every wire protocol uses these; none copies them.

Cancellation: a client that goes away cancels the handler (Starlette watches for ``http.disconnect``
while streaming; :func:`until_disconnect` does it for whole answers), which closes the upstream
connection rather than draining it, so llama-server frees the slot."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from ..async_transport import OpenStream, TransportFailure
from ..errors import CorralError
from ..events import Done, StreamEvent
from .wire_errors import from_corral_error

if TYPE_CHECKING:
    from ..stream import AsyncChatStream
    from ..types import ChatResponse
    from .observe import RequestRecord
    from .state import Gateway

__all__ = [
    "NDJSON_MALFORMED",
    "SSE_MALFORMED",
    "STREAM_HEADERS",
    "EventWriter",
    "RelayCheck",
    "StreamFramer",
    "WireJSON",
    "assembled",
    "relay_stream",
    "rename_model",
    "translated_stream",
    "until_disconnect",
]

T = TypeVar("T")

STREAM_HEADERS = {"x-accel-buffering": "no", "cache-control": "no-cache"}

# A data line whose payload is not one whole JSON object or array (or [DONE]): it must open with { or [
# and close with } or ] on its line. An NDJSON line likewise. A cheap look at each end, not a parse.
SSE_MALFORMED = re.compile(rb"(?m)^data:(?! ?(?:[{\[][^\r\n]*[}\]])?\r?$)")
NDJSON_MALFORMED = re.compile(rb"(?m)^(?!(?:\{[^\r\n]*\})?\s*$)")
# A "model" key up to its string value's opening quote, not inside another string (there its quote
# is escaped). The look-behind comes after the literal so that the search can skip ahead to each
# "model". The value's end is found by a second search, not by one regex over the string,
# which keeps state per escape (120 MB and seconds for a megabytes-long model name).
_MODEL_KEY = re.compile(rb'"model"(?<!\\"model")\s*:\s*"')
# The quote that closes a JSON string: after an even run of backslashes (possessive: no state kept).
_CLOSING_QUOTE = re.compile(rb'(?<!\\)(?:\\\\)*+"')


class EventWriter(Protocol):
    """corral stream events -> one protocol's stream frames."""

    media_type: str

    def start(self) -> bytes: ...
    def event(self, e: StreamEvent) -> bytes: ...
    def end(self) -> bytes: ...
    def error(self, status: int, kind: str, message: str) -> bytes: ...


@dataclass(frozen=True, slots=True)
class RelayCheck:
    """What a protocol's stream looks like, for relaying one it did not write: SSE by default."""

    end: re.Pattern[bytes]  # an event that ends the stream properly
    failure: re.Pattern[bytes]  # an error event the upstream sent
    #: the protocol's error event for (model, status, kind, message), sent when the relay must fail a stream
    error: Callable[[str, int, str, str], bytes]
    media_type: str = "text/event-stream"
    separator: bytes = b"\n\n"  # between events: b"\n\n" for SSE, b"\n" for NDJSON
    malformed: re.Pattern[bytes] = SSE_MALFORMED  # an event that is not JSON (SSE_MALFORMED, NDJSON_MALFORMED)


class WireJSON(JSONResponse):
    """A JSON answer that carries an upstream's text: a lone surrogate in it (a model can emit one)
    goes out escaped, as JSON allows, instead of failing to encode (a 500 after the work was done)."""

    def render(self, content: Any) -> bytes:
        try:
            return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


def rename_model(payload: bytes, model: str) -> bytes:
    """``payload`` with every "model" value set to ``model`` (the name the client asked for, not the
    upstream's, which may be a file path)."""
    value = b'"model":' + json.dumps(model, ensure_ascii=False).encode()
    parts: list[bytes] = []
    pos = 0
    while (key := _MODEL_KEY.search(payload, pos)) is not None:
        close = _CLOSING_QUOTE.search(payload, key.end())
        if close is None:
            break  # an unterminated string: leave the rest as it is
        parts += (payload[pos : key.start()], value)
        pos = close.end()
    if not parts:
        return payload
    parts.append(payload[pos:])
    return b"".join(parts)


class StreamFramer:
    """Cuts a relayed byte stream into whole events, renames the model in them, and notes whether the
    upstream ended the stream properly or sent an error event. No parsing: a few regex scans."""

    __slots__ = ("_buf", "_check", "_malformed", "_model", "_redact", "_rename", "ended", "failed", "garbled")

    def __init__(self, check: RelayCheck, model: str, redact: Callable[[str], str] | None = None) -> None:
        self._check = check
        self._model = model
        self._redact = redact  # for an error event: an upstream may echo a key in it
        self._rename = bool(model)
        self._buf = b""
        self._malformed: re.Pattern[bytes] | None = check.malformed
        self.ended = False
        self.failed = False
        self.garbled = False  # an event that is not JSON: the rest is not relayed

    def feed(self, chunk: bytes) -> bytes:
        buf = self._buf + chunk if self._buf else chunk
        sep = self._check.separator
        at = buf.rfind(sep)
        if at >= 0:
            cut = at + len(sep)
        else:  # an upstream that ends its lines with \r\n
            crlf = sep.replace(b"\n", b"\r\n")
            at = buf.rfind(crlf)
            if at < 0:
                self._buf = buf
                return b""
            cut = at + len(crlf)
        self._buf = buf[cut:]
        return self._whole(buf[:cut])

    def close(self) -> bytes:
        rest, self._buf = self._buf, b""
        return self._whole(rest) if rest.strip() else rest

    def _whole(self, block: bytes) -> bytes:
        if self.garbled:
            return b""
        if self._malformed is not None and self._malformed.search(block):
            self.garbled = True
            return b""
        if self._check.failure.search(block):
            self.failed = True
            if self._redact is not None:
                block = self._redact(block.decode("utf-8", "replace")).encode()
        if self._check.end.search(block):
            self.ended = True
        if self._rename and b'"model"' in block:
            block = rename_model(block, self._model)
        return block


def relay_stream(
    gw: Gateway, rec: RequestRecord, upstream: OpenStream, check: RelayCheck, model: str
) -> StreamingResponse:
    """Forward a pass-through stream. A stream the upstream cut (no proper end) ends with the
    protocol's error event and is logged as 502, never relayed as a success."""
    framer = StreamFramer(check, model, gw.redact)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_bytes():
                rec.mark_first_byte()
                out = framer.feed(chunk)
                if out:
                    rec.usage_from(out)
                    yield out
                if framer.garbled:
                    break
            tail = framer.close()
            if tail:
                rec.usage_from(tail)
                yield tail
            if framer.garbled:
                rec.status = 502
                yield check.error(model, 502, "api_error", "upstream sent a stream event that is not JSON")
            elif framer.failed:
                rec.status = 502
            elif not framer.ended:
                rec.status = 502
                yield check.error(model, 502, "api_error", "upstream stream ended before the answer was complete")
        except TransportFailure as exc:
            # Headers are gone already: the failure travels as an error event, then the stream ends.
            rec.status = 502
            detail = "the connection was cut" if exc.kind == "protocol" else f"{exc.kind} failure"
            yield check.error(model, 502, "api_error", f"upstream stream failed: {detail}")
        except (asyncio.CancelledError, GeneratorExit):
            rec.status = 499  # the client left mid-stream; closing the upstream stops the generation
            raise
        finally:
            await upstream.aclose()
            gw.finish(rec)

    return StreamingResponse(body(), media_type=check.media_type, headers=STREAM_HEADERS)


# Until the first event, an SSE comment this often (every SSE parser skips it): llama.cpp sends nothing
# while it processes a prompt, minutes for an agent's 20k tokens on a CPU, and a client's read timeout
# or a proxy's gives up on a silent connection (Claude Code's did at 300 s and resent the request
# unstreamed). A watchdog that counts events rather than bytes (Claude Code's own, 300 s unless
# CLAUDE_STREAM_IDLE_TIMEOUT_MS says more) is not fed by comments: nothing but the answer's events is.
KEEPALIVE_SECONDS = 10.0
SSE_KEEPALIVE = b": keepalive\n\n"


async def _with_keepalive(stream: AsyncChatStream, media_type: str) -> AsyncIterator[StreamEvent | None]:
    """The stream's events, with None for each KEEPALIVE_SECONDS without one before the first (SSE
    only); from then on the events as they come, with no task per event."""
    events = stream.__aiter__()
    if media_type == "text/event-stream":
        first = asyncio.ensure_future(events.__anext__())
        try:
            while not (await asyncio.wait({first}, timeout=KEEPALIVE_SECONDS))[0]:
                yield None
            try:
                event = first.result()
            except StopAsyncIteration:
                return
        finally:
            if not first.done():  # the client left while the prompt was processed
                first.cancel()
                await asyncio.gather(first, return_exceptions=True)
        yield event
    async for event in events:
        yield event


def translated_stream(
    gw: Gateway,
    rec: RequestRecord,
    chat_stream: AsyncChatStream,
    writer: EventWriter,
    on_done: Callable[[ChatResponse], None] | None = None,
) -> StreamingResponse:
    """corral events from any provider, written in the caller's protocol."""

    async def body() -> AsyncIterator[bytes]:
        # The writer starts with the first event (usage is known by then on llama.cpp); the headers
        # went out already, when the response started.
        try:
            async for event in _with_keepalive(chat_stream, writer.media_type):
                if event is None:
                    yield SSE_KEEPALIVE
                    continue
                rec.mark_first_byte()
                if isinstance(event, Done):
                    u = event.response.usage
                    rec.prompt_tokens, rec.completion_tokens = u.prompt_tokens, u.completion_tokens
                    if on_done is not None:
                        on_done(event.response)
                frame = writer.event(event)
                if frame:
                    yield frame
            yield writer.end()
        except CorralError as exc:
            status, kind, message = from_corral_error(exc, gw.redact)
            rec.status = status
            yield writer.error(status, kind, message)
        except (asyncio.CancelledError, GeneratorExit):
            rec.status = 499
            raise
        finally:
            await chat_stream.aclose()
            gw.finish(rec)

    return StreamingResponse(body(), media_type=writer.media_type, headers=STREAM_HEADERS)


async def assembled(request: Request, stream: AsyncChatStream) -> ChatResponse | None:
    """A whole response read from a stream, abandoned (and the upstream closed) if the client leaves."""

    async def read() -> ChatResponse:
        async with stream:
            return await stream.final()

    return await until_disconnect(request, read())


async def until_disconnect(request: Request, work: Awaitable[T]) -> T | None:
    """Run ``work`` unless the client goes away first; then cancel it, which closes the upstream
    connection so the backend stops (llama-server frees the slot). None when cancelled.

    ``work`` runs in the handler's own task; one watcher task waits for ``http.disconnect`` and
    cancels the handler task if it comes while ``work`` is running (cheaper than running ``work``
    in a task of its own and waiting for the first of two)."""
    handler = asyncio.current_task()
    assert handler is not None
    state = [True, False]  # [watching, client gone]

    def on_disconnect(watcher: asyncio.Future[None]) -> None:
        if watcher.cancelled():
            return
        watcher.exception()  # retrieved: a receive() that failed counts as the client gone too
        if state[0]:
            state[1] = True
            handler.cancel()

    watcher = asyncio.ensure_future(_disconnected(request))
    watcher.add_done_callback(on_disconnect)
    try:
        return await work
    except asyncio.CancelledError:
        if not state[1] or handler.uncancel() > 0:
            raise  # cancelled from elsewhere (server shutdown), not by the client leaving
        return None
    except CorralError:
        if not state[1]:
            raise
        handler.uncancel()
        return None
    finally:
        state[0] = False
        watcher.cancel()


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
