"""The fault backend: a small fake upstream on loopback, OpenAI-, llama.cpp- and Anthropic-shaped,
that misbehaves on request.

The first path segment picks the fault, the rest is the API path, so one server plays many
providers: ``base_url = "http://127.0.0.1:PORT/cut/v1"`` is an OpenAI host that cuts its streams,
``"http://127.0.0.1:PORT/r429-5"`` a llama-server or Anthropic host that answers 429 with
``Retry-After: 5``. Without a known fault segment the answer is a normal one (``ok``).

Faults (:data:`FAULTS`):

  ok          a complete answer (streamed when the request says ``"stream": true``)
  cut         streams: two content chunks, then the stream ends cleanly (no finish_reason, no [DONE],
              no message_stop); whole answers: half the declared Content-Length, then the connection closes
  reset       TCP reset (SO_LINGER 0) before any byte of the answer
  reset-mid   streams: two content chunks, then a TCP reset
  hang        never answers (until the backend stops)
  hang-mid    streams: two content chunks, then nothing
  e500, e503  HTTP 500 / 503 with an error body in the caller's protocol
  r429-0, r429-5, r429-60   HTTP 429 with ``Retry-After`` 0, 5, 60
  malformed   200 with a body (or one stream event) that is not JSON
  echo        HTTP 400 whose message echoes the Authorization and x-api-key headers it got, the way
              careless upstreams do ("invalid key 'abc…'"); the canary scan looks for them downstream

Every body this backend makes carries :data:`MARKER`, so a 5xx seen by a client can be told apart:
relayed from here, or made by the gateway. Each request is recorded (:attr:`FaultBackend.seen`) with
its fault, path, time and credentials, for retry counts and key-scope checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["FAULTS", "MARKER", "FaultBackend", "Seen"]

MARKER = "fault-backend"
FAULTS = (
    "ok", "cut", "reset", "reset-mid", "hang", "hang-mid", "e500", "e503",
    "r429-0", "r429-5", "r429-60", "malformed", "echo",
)  # fmt: skip
WORDS = ("Hello", " from", " the", " fault", " backend", ".")
HANG_LIMIT = 600.0  # a hang ends at the latest when the backend stops, or after this


@dataclass(frozen=True, slots=True)
class Seen:
    fault: str
    method: str
    path: str
    at: float
    authorization: str
    api_key: str
    body: bytes


@dataclass
class FaultBackend:
    """The backend in a thread of this process (its own event loop). ``with FaultBackend() as b:``."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port
    token_delay: float = 0.0  # seconds between streamed chunks of an ``ok`` answer
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _stop: asyncio.Event | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- lifecycle --------------------------------------------------------------------------------------
    def __enter__(self) -> FaultBackend:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(ready))
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="fault-backend", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure or not self.url:
            raise RuntimeError(f"fault backend did not start: {failure[:1]}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(15)
            self._thread = None

    async def _serve(self, ready: threading.Event) -> None:
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        port = runner.addresses[0][1]
        self.url = f"http://{self.host}:{port}"
        ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def base(self, fault: str) -> str:
        """The root URL of a host with this fault (append ``/v1`` for an OpenAI-type provider)."""
        return f"{self.url}/{fault}"

    def requests_for(self, fault: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.fault == fault]

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()

    # -- requests ---------------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        parts = request.path.lstrip("/").split("/", 1)
        fault = parts[0] if parts[0] in FAULTS else "ok"
        path = "/" + (parts[1] if parts[0] in FAULTS and len(parts) > 1 else request.path.lstrip("/"))
        raw = await request.read()
        with self._lock:
            self.seen.append(Seen(fault, request.method, path, time.monotonic(), request.headers.get(
                "Authorization", ""), request.headers.get("x-api-key", ""), raw[:2000]))  # fmt: skip
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            body = None
        api = _api(request.method, path)
        if api is None:
            return _json(404, _error("openai", f"{MARKER}: no route {request.method} {path}"))
        if api in ("models", "health", "props"):
            return _json(200, _static(api))
        if not isinstance(body, dict):
            return _json(400, _error(_protocol(api), f"{MARKER}: body is not a JSON object"))
        stream = body.get("stream") is True
        return await self._fault(fault, api, stream, body, request)

    async def _fault(
        self, fault: str, api: str, stream: bool, body: dict[str, Any], request: web.Request
    ) -> web.StreamResponse:
        protocol = _protocol(api)
        if fault == "reset":
            return await _reset(request)
        if fault == "hang":
            return await self._hang()
        if fault in ("e500", "e503"):
            status = int(fault[1:])
            return _json(status, _error(protocol, f"{MARKER}: HTTP {status}", status), {"Retry-After": "1"})
        if fault.startswith("r429-"):
            return _json(429, _error(protocol, f"{MARKER}: rate limited", 429), {"Retry-After": fault[5:]})
        if fault == "echo":
            auth = request.headers.get("Authorization", "")
            key = request.headers.get("x-api-key", "")
            token = auth.split(" ", 1)[-1]
            message = (f"{MARKER}: invalid credentials {token!r} (Authorization: {auth}; x-api-key: {key}; "
                       f"credential={key or token})")  # fmt: skip
            return _json(400, _error(protocol, message, 400))
        if fault == "malformed" and not stream:
            return web.Response(status=200, body=b'{"id": "' + MARKER.encode() + b'", "choices": [{"mess',
                                content_type="application/json")  # fmt: skip
        if not stream:
            answer = json.dumps(_answer(api, body)).encode()
            if fault in ("cut", "reset-mid", "hang-mid"):
                return await self._half(request, answer, fault)
            return web.Response(status=200, body=answer, content_type="application/json")
        return await self._stream(fault, api, body, request)

    async def _stream(self, fault: str, api: str, body: dict[str, Any], request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        try:
            for n, event in enumerate(_events(api, body)):
                if n == 3 and fault in ("cut", "reset-mid", "hang-mid", "malformed"):
                    if fault == "cut":
                        await resp.write_eof()
                        return resp
                    if fault == "reset-mid":
                        return await _reset(request)
                    if fault == "hang-mid":
                        return await self._hang()
                    await resp.write(b'data: {"choices": [{"delta": {"content": "unterminated\n\n')
                await resp.write(event)
                if self.token_delay:
                    await asyncio.sleep(self.token_delay)
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the client stopped reading (a gateway that gave up on a malformed stream): nothing to do
        return resp

    async def _half(self, request: web.Request, answer: bytes, fault: str) -> web.StreamResponse:
        """A whole answer that stops half-way (Content-Length promises all of it), then the
        connection closes (cut), resets (reset-mid) or goes quiet (hang-mid)."""
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.content_length = len(answer)
        await resp.prepare(request)
        await resp.write(answer[: len(answer) // 2])
        if fault == "reset-mid":
            return await _reset(request)
        if fault == "hang-mid":
            await self._hang()
        if request.transport is not None:
            request.transport.close()
        raise asyncio.CancelledError

    async def _hang(self) -> web.Response:
        assert self._stop is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), HANG_LIMIT)
        return web.Response(status=504, text=f"{MARKER}: hang over")


# -- wire shapes ------------------------------------------------------------------------------------------
def _api(method: str, path: str) -> str | None:
    p = path.split("?", 1)[0].rstrip("/")
    if method == "GET":
        for suffix, api in (("/models", "models"), ("/health", "health"), ("/props", "props")):
            if p.endswith(suffix):
                return api
        return None
    for suffix, api in (
        ("/messages/count_tokens", "count_tokens"), ("/messages", "messages"), ("/chat/completions", "chat"),
        ("/completions", "completions"), ("/completion", "completion"), ("/embeddings", "embeddings"),
        ("/embedding", "embeddings"), ("/rerank", "rerank"),
    ):  # fmt: skip
        if p.endswith(suffix):
            return api
    return None


def _protocol(api: str) -> str:
    return "anthropic" if api in ("messages", "count_tokens") else "openai"


def _error(protocol: str, message: str, status: int = 400) -> dict[str, Any]:
    if protocol == "anthropic":
        kind = {429: "rate_limit_error", 500: "api_error", 503: "overloaded_error"}.get(status, "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind = {429: "requests", 500: "server_error", 503: "server_error"}.get(status, "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _static(api: str) -> dict[str, Any]:
    if api == "models":
        return {"object": "list", "data": [{"id": "m", "object": "model", "created": 0, "owned_by": MARKER}]}
    if api == "props":
        return {"default_generation_settings": {"n_ctx": 2048}, "model_path": "m.gguf", "total_slots": 1}
    return {"status": "ok"}


def _answer(api: str, body: dict[str, Any]) -> dict[str, Any]:
    model = body.get("model") if isinstance(body.get("model"), str) else "m"
    text = "".join(WORDS)
    usage = {"prompt_tokens": 5, "completion_tokens": len(WORDS), "total_tokens": 5 + len(WORDS)}
    if api == "messages":
        return {"id": f"msg_{MARKER}", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": 5, "output_tokens": len(WORDS)}}  # fmt: skip
    if api == "count_tokens":
        return {"input_tokens": 5}
    if api == "completion":  # llama-server's native /completion
        return {"content": text, "stop": True, "stop_type": "eos", "model": model, "tokens_evaluated": 5,
                "tokens_predicted": len(WORDS)}  # fmt: skip
    if api == "completions":
        choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
        return {"id": f"cmpl-{MARKER}", "object": "text_completion", "created": 0, "model": model,
                "choices": [choice], "usage": usage}  # fmt: skip
    if api == "embeddings":
        inputs = body.get("input")
        n = len(inputs) if isinstance(inputs, list) else 1
        data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(n)]
        return {"object": "list", "model": model, "usage": {"prompt_tokens": 5, "total_tokens": 5}, "data": data}
    if api == "rerank":
        docs = body.get("documents")
        n = len(docs) if isinstance(docs, list) else 0
        return {"model": model, "results": [{"index": i, "relevance_score": 1.0 / (i + 1)} for i in range(n)],
                "usage": {"prompt_tokens": 5, "total_tokens": 5}}  # fmt: skip
    return {"id": f"chatcmpl-{MARKER}", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage}  # fmt: skip


def _events(api: str, body: dict[str, Any]) -> list[bytes]:
    """A complete stream in the API's shape: at least 5 events, the last ones ending it."""
    model = body.get("model") if isinstance(body.get("model"), str) else "m"
    if api == "messages":
        out = [("message_start", {"type": "message_start", "message": {
            "id": f"msg_{MARKER}", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 0}}}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}})]  # fmt: skip
        out += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "text_delta", "text": w}}) for w in WORDS]  # fmt: skip
        out += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
                ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                   "usage": {"output_tokens": len(WORDS)}}),
                ("message_stop", {"type": "message_stop"})]  # fmt: skip
        return [f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in out]

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        data = {"id": f"chatcmpl-{MARKER}", "object": "chat.completion.chunk", "created": 0, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}  # fmt: skip
        return f"data: {json.dumps(data)}\n\n".encode()

    if api == "completion":  # llama-server native stream
        items = [{"content": w, "stop": False} for w in WORDS]
        items.append({"content": "", "stop": True, "stop_type": "eos", "tokens_predicted": len(WORDS)})
        return [f"data: {json.dumps(i)}\n\n".encode() for i in items]
    usage = {"prompt_tokens": 5, "completion_tokens": len(WORDS), "total_tokens": 5 + len(WORDS)}
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": w}) for w in WORDS]
    events.append(chunk({}, "stop", usage=usage))
    events.append(b"data: [DONE]\n\n")
    return events


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type="application/json",
                        headers=headers)  # fmt: skip


async def _reset(request: web.Request) -> web.StreamResponse:
    """Close the connection with a TCP RST: SO_LINGER 0, then abort."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    raise asyncio.CancelledError  # nothing more to write; aiohttp drops the handler quietly


@contextlib.contextmanager
def backend_process(token_delay: float = 0.0) -> Iterator[str]:
    """The backend in a child process (its own interpreter: no GIL shared with a load generator);
    yields its URL. Stopped with SIGTERM and reaped on exit."""
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [sys.executable, __file__, "--port", str(port), "--token-delay", str(token_delay)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ok/health", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the fault backend process did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def main() -> None:
    """Standalone, with llama-server's argv (``--host H --port P``, the rest ignored), so the model
    manager can run it as an engine: ``engine = [python, ".../backend.py"]``. Healthy answers only
    (its fault segment, if any, still applies to paths that carry one). Stops on SIGTERM."""
    import argparse
    import signal

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-delay", type=float, default=0.0)
    args, _ = parser.parse_known_args()
    backend = FaultBackend(host=args.host, port=args.port, token_delay=args.token_delay)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with backend:
        done.wait()


if __name__ == "__main__":
    main()
