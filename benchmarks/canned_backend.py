"""A canned OpenAI-compatible backend on loopback, fast enough not to be what a client benchmark measures.

It answers ``POST /v1/chat/completions`` (and ``/chat/completions``) with one fixed, valid
``chat.completion`` body including ``usage``, and ``GET /v1/models`` with a one-model list, over
HTTP/1.1 keep-alive. Everything else gets a 404. A chat request whose body has ``"stream": true``
gets a server-sent-event stream instead: ``STREAM_CHUNKS`` (32) ``chat.completion.chunk`` events
carrying one word each, a final chunk with ``finish_reason`` (and ``usage`` when the request asks
for it with ``stream_options.include_usage``), then ``data: [DONE]`` -- each event its own HTTP
chunk (``Transfer-Encoding: chunked``, as llama-server sends them) and its own socket write, with
``--stream-gap-ms`` between events (default 0: only a yield to the event loop).

Request bodies are read (by Content-Length) and otherwise ignored: the point is to take the server's
share of each call's time as close to zero as a pure Python server can, so that what remains is
client (or proxy) overhead.

Standalone (stdlib only, runs under any Python >= 3.11)::

    python benchmarks/canned_backend.py [--port 0] [--stream-gap-ms 0]

prints one JSON line ``{"url": "http://127.0.0.1:PORT"}`` once it listens, then serves until its
stdin closes (the parent exited or asked it to stop) or it gets SIGTERM/SIGINT -- the same contract
as ``corral.manager.engine_child``, so the benchmark drives both the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import threading

__all__ = ["CHAT_COMPLETION", "STREAM_CHUNKS", "CannedHTTP", "serve"]

#: The fixed answer. Shaped like a real OpenAI answer so every SDK's parser takes its normal path.
CHAT_COMPLETION: dict[str, object] = {
    "id": "chatcmpl-canned-0001",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "x",
    "system_fingerprint": "fp_canned",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello! How can I help?", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16},
}
MODELS: dict[str, object] = {
    "object": "list",
    "data": [{"id": "x", "object": "model", "created": 0, "owned_by": "canned"}],
}


def _response(status: str, body: bytes, *, close: bool = False) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'close' if close else 'keep-alive'}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


# Rendered once: the hot path is a dict lookup and one transport.write().
_ROUTES: dict[tuple[bytes, bytes], bytes] = {}
for _path in (b"/v1/chat/completions", b"/chat/completions"):
    _ROUTES[(b"POST", _path)] = _response("200 OK", json.dumps(CHAT_COMPLETION).encode())
for _path in (b"/v1/models", b"/models"):
    _ROUTES[(b"GET", _path)] = _response("200 OK", json.dumps(MODELS).encode())
_CHAT_PATHS = (b"/v1/chat/completions", b"/chat/completions")

#: Content events in a streamed answer (the gateway benchmark's "32-chunk stream").
STREAM_CHUNKS = 32


def _sse_chunk(payload: dict[str, object] | str) -> bytes:
    """One SSE event framed as one HTTP/1.1 chunk."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    event = f"data: {data}\n\n".encode()
    return b"%x\r\n%s\r\n" % (len(event), event)


def _stream_events(include_usage: bool) -> list[bytes]:
    base = {"id": "chatcmpl-canned-0002", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "x"}
    events = []
    for i in range(STREAM_CHUNKS):
        delta: dict[str, object] = {"content": f"w{i} "}
        if i == 0:
            delta["role"] = "assistant"
        events.append(_sse_chunk({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}))
    last: dict[str, object] = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    if include_usage:
        last["usage"] = {"prompt_tokens": 9, "completion_tokens": STREAM_CHUNKS, "total_tokens": 9 + STREAM_CHUNKS}
    events.append(_sse_chunk(last))
    events.append(_sse_chunk("[DONE]"))
    events.append(b"0\r\n\r\n")  # end of the chunked body
    return events


_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
)
# Rendered once, like the non-streamed answer; index: include_usage.
_STREAMS = (_stream_events(False), _stream_events(True))


def _wants_stream(body: bytes) -> tuple[bool, bool]:
    """(stream, include_usage) from a chat request body; parsed only when it mentions "stream", so
    the non-streamed hot path stays one substring search."""
    if b'"stream"' not in body:
        return False, False
    try:
        obj = json.loads(body)
    except ValueError:
        return False, False
    if not isinstance(obj, dict) or obj.get("stream") is not True:
        return False, False
    opts = obj.get("stream_options")
    return True, isinstance(opts, dict) and opts.get("include_usage") is True


_NOT_FOUND = _response("404 Not Found", b'{"error":{"message":"not found","type":"invalid_request_error"}}')
_BAD_REQUEST = _response("400 Bad Request", b'{"error":{"message":"bad request"}}', close=True)

_MAX_HEADER = 64 * 1024


class CannedHTTP(asyncio.Protocol):
    """A minimal HTTP/1.1 server protocol: keep-alive, pipelining, Content-Length bodies only.

    No chunked request bodies: no client in this benchmark sends them for a JSON POST.
    """

    #: Seconds between streamed events (0: yield to the loop only); set by ``serve``.
    stream_gap: float = 0.0

    def __init__(self) -> None:
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        # While a stream is being written, later (pipelined) requests wait in _buf, in order.
        self._streaming: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            import socket

            # Responses are one small write; don't let Nagle hold them back waiting for an ACK.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._streaming is not None:
            self._streaming.cancel()

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._streaming is None:
            self._process()

    def _process(self) -> None:
        # Loop: one segment may hold several pipelined requests, or only part of one.
        while self._transport is not None and self._streaming is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > _MAX_HEADER:
                    self._reply(_BAD_REQUEST, close=True)
                return
            head = bytes(self._buf[:end])
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3:
                self._reply(_BAD_REQUEST, close=True)
                return
            method, target, version = parts
            length = 0
            close = version == b"HTTP/1.0"
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    try:
                        length = int(value.strip())
                    except ValueError:
                        self._reply(_BAD_REQUEST, close=True)
                        return
                elif name == b"connection":
                    token = value.strip().lower()
                    close = token == b"close" or (close and token != b"keep-alive")
            total = end + 4 + length
            if len(self._buf) < total:
                return  # the body is still arriving
            body = bytes(self._buf[end + 4 : total])
            del self._buf[:total]
            path = target.split(b"?", 1)[0]
            if method == b"POST" and path in _CHAT_PATHS:
                stream, include_usage = _wants_stream(body)
                if stream:
                    self._streaming = asyncio.ensure_future(self._stream(_STREAMS[include_usage], close))
                    return
            self._reply(_ROUTES.get((method, path), _NOT_FOUND), close=close)
            if close:
                return

    async def _stream(self, events: list[bytes], close: bool) -> None:
        try:
            transport = self._transport
            if transport is None:
                return
            transport.write(_STREAM_HEAD)
            for event in events:
                # A separate write per event, and a pass through the loop between them, so that the
                # events leave as separate segments, the way tokens do -- not as one burst a proxy
                # could relay in one piece.
                await asyncio.sleep(self.stream_gap)
                if self._transport is None:
                    return  # the client went away
                transport.write(event)
            if close:
                transport.close()
                self._transport = None
        finally:
            self._streaming = None
        self._process()  # requests that arrived meanwhile

    def _reply(self, payload: bytes, *, close: bool = False) -> None:
        if self._transport is None:
            return
        self._transport.write(payload)
        if close:
            self._transport.close()
            self._transport = None


async def serve(host: str = "127.0.0.1", port: int = 0, stream_gap_ms: float = 0.0) -> None:
    """Serve until cancelled; prints the ready line on stdout once listening."""
    CannedHTTP.stream_gap = max(0.0, stream_gap_ms) / 1000
    loop = asyncio.get_running_loop()
    server = await loop.create_server(CannedHTTP, host, port, backlog=128)
    bound = server.sockets[0].getsockname()
    print(json.dumps({"url": f"http://{bound[0]}:{bound[1]}"}), flush=True)
    stop = asyncio.Event()

    def watch_stdin() -> None:
        # A closed stdin means the parent is gone or done: never outlive it.
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        finally:
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="loopback only; default %(default)s")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument(
        "--stream-gap-ms", type=float, default=0.0, help="pause between streamed events (default: none)"
    )
    args = parser.parse_args(argv)
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        parser.error("the canned backend listens on loopback only")
    asyncio.run(serve(args.host, args.port, args.stream_gap_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
