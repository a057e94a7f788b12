"""What ``corral serve`` adds to a request, against going direct and against the LiteLLM proxy.

The same load, interleaved in one run, through three targets:

  direct   straight to the backend: the floor
  corral   ``corral serve`` (``python -m corral.cli serve``) in front of the backend
  litellm  the LiteLLM proxy (``litellm --config ...``) in front of the same backend, run from
           benchmarks/.venv-litellm (``--setup-litellm`` creates it with ``litellm[proxy]``)

and six scenarios:

  c1       canned backend, non-streamed chat completion, one request at a time
  stream   canned backend, streamed: 32 content chunks + finish + [DONE], one at a time
  c32      canned backend, non-streamed, 32 requests in flight (32 keep-alive connections)
  resp     canned backend, c=1: direct and corral as in c1, plus "responses", the same corral asked
           through /v1/responses (translated onto the backend's chat completions), in the same rounds
  resp-stream  the same, streamed (32 content chunks: 32 response.output_text.delta events)
  llama    the real llama.cpp server (bundled gemma-3-270m), non-streamed, max_tokens=4,
           temperature=0, one at a time: end to end, generation included

One client process (this one: a minimal asyncio HTTP/1.1 client over keep-alive connections, so
that the load generator takes as little of the 2 CPUs as possible) drives all targets; targets take
turns in rounds, in a rotating order, so that machine noise falls on all of them alike. Each target
is warmed up before timing. Also measured: each gateway's ready time (spawn to /health answering)
and its resident memory while idle.

    python benchmarks/gateway_overhead.py [--setup-litellm] [--quick] [--no-litellm]
        [--json out.json]

Loopback only; every process started here is stopped and reaped, also on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar, cast

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# The child-process plumbing (JSON ready line, stderr to a file, reaping) is sdk_overhead's.
from sdk_overhead import (  # noqa: E402
    ChildError,
    _child_env,
    _gguf_path,
    _p99,
    _ready_url,
    _vmrss_mb,
    child,
)

T = TypeVar("T")
CANNED = HERE / "canned_backend.py"
DEFAULT_LITELLM_VENV = HERE / ".venv-litellm"
TARGETS = ("direct", "corral", "litellm")
STREAM_CHUNKS = 32  # canned_backend.STREAM_CHUNKS; not imported so that this file states it

# The targets corral is checked against (from the issue).
TARGET_C1_ADDED_MS = 0.5
TARGET_STREAM_ADDED_MS = 2.0
TARGET_C32_RATIO = 1.3
TARGET_LLAMA_RATIO = 1.03
TARGET_RESPONSES_OVER_CHAT_MS = 0.2  # /v1/responses median minus chat completions median, through corral
TARGET_RSS_MB = 80.0
TARGET_READY_S = 1.0


def log(msg: str) -> None:
    # Progress goes to stderr so that the table (or JSON) on stdout stays clean.
    print(f"[gateway_overhead] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Gateway processes: logs to a file, polled for readiness over HTTP, stopped by process group.
# --------------------------------------------------------------------------------------------------
class Gateway:
    """A server subprocess that says nothing on stdout we need; ready when an HTTP path answers 200."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], port: int, health: str) -> None:
        self.name = name
        self.port = port
        self.health = health
        # A file, not a pipe: both gateways log a line per request, and a pipe nobody reads would
        # block them once full.
        self._log: IO[bytes] = tempfile.TemporaryFile(prefix=f"gateway_overhead-{name}-")  # noqa: SIM115  # closed in close()
        self.spawned = time.perf_counter()
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # our Ctrl-C is handled here; the group is stopped in close()
        )
        self.ready_s: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float) -> float:
        """Seconds from spawn to the health path answering 200, polled every 5 ms."""
        deadline = self.spawned + timeout
        while True:
            if self.proc.poll() is not None:
                raise ChildError(f"{self.name} exited (code {self.proc.returncode}) while starting{self.log_tail()}")
            if _http_status("127.0.0.1", self.port, self.health) == 200:
                self.ready_s = time.perf_counter() - self.spawned
                return self.ready_s
            if time.perf_counter() > deadline:
                raise ChildError(f"{self.name}: {self.health} not answering after {timeout:.0f} s{self.log_tail()}")
            time.sleep(0.005)

    def rss_mb(self) -> float | None:
        """VmRSS of the process and everything under it (LiteLLM may fork helpers)."""
        total = 0.0
        seen = False
        for pid in _descendants(self.pid):
            rss = _vmrss_mb(Path(f"/proc/{pid}/status"))
            if rss is not None:
                total += rss
                seen = True
        return total if seen else None

    def log_tail(self, limit: int = 2000) -> str:
        try:
            self._log.seek(0, os.SEEK_END)
            size = self._log.tell()
            self._log.seek(max(0, size - limit))
            tail = self._log.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return f"\n--- {self.name} log (tail) ---\n{tail}" if tail else ""

    def close(self) -> None:
        proc = self.proc
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            if proc.poll() is not None:
                break
            # The group id is the child's pid (start_new_session): this reaches only what it started.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait)
        self._log.close()


@contextlib.contextmanager
def gateway(name: str, argv: Sequence[str], env: dict[str, str], port: int, health: str) -> Iterator[Gateway]:
    g = Gateway(name, argv, env, port, health)
    try:
        yield g
    finally:
        g.close()


def _descendants(pid: int) -> list[int]:
    out = [pid]
    i = 0
    while i < len(out):
        p = out[i]
        i += 1
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    out.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def _http_status(host: str, port: int, path: str) -> int | None:
    """Status of one GET over a fresh socket; None while nothing listens."""
    try:
        with socket.create_connection((host, port), timeout=2.0) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            head = sock.recv(64)
    except OSError:
        return None
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return host, int(port)


# --------------------------------------------------------------------------------------------------
# The load generator: a minimal HTTP/1.1 client protocol. aiohttp or httpx would cost 100+ us of
# CPU per request on this machine; at c=32 on 2 cores that CPU would be taken from the server side
# and flatten every ratio towards 1. This one parses only what the three targets send:
# Content-Length, chunked, or close-delimited bodies.
# --------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    first_ns: int  # perf_counter_ns when the first body byte arrived
    end_ns: int  # perf_counter_ns when the body was complete


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _TRAILER, _EOF, _IDLE = range(7)


class HTTPConn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._body = bytearray()
        self._state = _IDLE
        self._left = 0
        self._status = 0
        self._keep = True
        self._first = 0
        self._fut: asyncio.Future[Reply] | None = None

    @property
    def closed(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, hence a cast, not an isinstance.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        fut = self._fut
        if fut is None or fut.done():
            return
        if self._state == _EOF:
            self._finish(time.perf_counter_ns())
        else:
            fut.set_exception(ConnectionError(f"connection closed mid-response ({exc})"))

    def send(self, payload: bytes) -> asyncio.Future[Reply]:
        assert self.transport is not None
        self._fut = asyncio.get_running_loop().create_future()
        self._state = _HEAD
        self._body = bytearray()
        self._first = 0
        self._buf.clear()
        self.transport.write(payload)
        return self._fut

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()  # stamped here, not after the awaiting task resumes
        if self._state == _IDLE:
            return  # nothing asked for; never happens with these servers
        self._buf += data
        self._parse(now)

    def _parse(self, now: int) -> None:
        buf = self._buf
        while True:
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
                del buf[: end + 4]
                status = int(lines[0].split(" ", 2)[1])
                if status == 100:
                    continue
                length: int | None = None
                chunked = False
                self._keep = not lines[0].startswith("HTTP/1.0")
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    value = value.strip().lower()
                    if name == "content-length":
                        length = int(value)
                    elif name == "transfer-encoding":
                        chunked = "chunked" in value
                    elif name == "connection":
                        self._keep = value != "close"
                self._status = status
                if chunked:
                    self._state = _CHUNK_SIZE
                elif length is not None:
                    self._left = length
                    self._state = _LENGTH
                elif status in (204, 304):
                    self._finish(now)
                    return
                else:
                    self._state = _EOF
            elif state == _LENGTH:
                if buf and not self._first:
                    self._first = now
                if len(buf) < self._left:
                    return
                self._body += buf[: self._left]
                del buf[: self._left]
                self._finish(now)
                return
            elif state == _CHUNK_SIZE:
                nl = buf.find(b"\r\n")
                if nl < 0:
                    return
                size = int(bytes(buf[:nl]).split(b";", 1)[0], 16)
                del buf[: nl + 2]
                if size == 0:
                    self._state = _TRAILER
                else:
                    self._left = size
                    self._state = _CHUNK_DATA
            elif state == _CHUNK_DATA:
                if not self._first:
                    self._first = now
                if len(buf) < self._left + 2:
                    return
                self._body += buf[: self._left]
                del buf[: self._left + 2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILER:
                if buf[:2] == b"\r\n":
                    del buf[:2]
                else:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        return
                    del buf[: end + 4]
                self._finish(now)
                return
            elif state == _EOF:
                if buf and not self._first:
                    self._first = now
                self._body += buf
                buf.clear()
                return
            else:
                return

    def _finish(self, now: int) -> None:
        self._state = _IDLE
        fut, self._fut = self._fut, None
        if fut is not None and not fut.done():
            fut.set_result(Reply(self._status, bytes(self._body), self._first or now, now))
        if not self._keep and self.transport is not None:
            self.transport.close()


@dataclass
class Endpoint:
    """One target for one backend: where to send, and its pool of keep-alive connections."""

    target: str
    host: str
    port: int
    model: str
    conns: list[HTTPConn | None] = field(default_factory=list)
    reconnects: int = 0  # keep-alive connections found closed (or closed mid-request) and reopened

    def request(self, body: dict[str, Any], path: str = "/v1/chat/completions") -> bytes:
        # Byte-identical requests for every target, apart from Host.
        raw = json.dumps({"model": self.model, **body}, separators=(",", ":")).encode()
        return (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nAccept: */*\r\nContent-Length: {len(raw)}\r\n\r\n"
        ).encode() + raw

    async def conn(self, i: int) -> HTTPConn:
        """Connection i, (re)opened outside any timing: the scenarios measure keep-alive requests, and
        an idle connection may have been closed by the server between rounds (uvicorn: after 5 s)."""
        while len(self.conns) <= i:
            self.conns.append(None)
        c = self.conns[i]
        if c is None or c.closed:
            if c is not None:
                self.reconnects += 1
            _, c = await asyncio.get_running_loop().create_connection(HTTPConn, self.host, self.port)
            self.conns[i] = c
        return c

    def close(self) -> None:
        for c in self.conns:
            if c is not None and c.transport is not None:
                c.transport.close()
        self.conns.clear()


Check = Callable[[Reply], str | None]


def check_completion(r: Reply) -> str | None:
    if r.status != 200 or b'"choices"' not in r.body:
        return f"status {r.status}: {r.body[:300]!r}"
    return None


def check_response(r: Reply) -> str | None:
    if r.status != 200 or b'"output_text"' not in r.body or b'"completed"' not in r.body:
        return f"status {r.status}: {r.body[:300]!r}"
    return None


def check_response_stream(r: Reply) -> str | None:
    deltas = r.body.count(b"event: response.output_text.delta")
    if r.status != 200 or deltas < STREAM_CHUNKS or b"event: response.completed" not in r.body:
        return f"status {r.status}, {deltas} text deltas: {r.body[-300:]!r}"
    return None


def check_stream(r: Reply) -> str | None:
    # Every content chunk must have come through, and the terminator.
    if r.status != 200 or r.body.count(b"data:") < STREAM_CHUNKS + 1 or b"[DONE]" not in r.body:
        return f"status {r.status}, {r.body.count(b'data:')} events: {r.body[-300:]!r}"
    return None


async def one(ep: Endpoint, i: int, payload: bytes, check: Check) -> Reply:
    """One timed request on connection i; a request the server closed under us (keep-alive race) is
    sent again once on a new connection."""
    for attempt in (0, 1):
        c = await ep.conn(i)
        t0 = time.perf_counter_ns()
        try:
            r = await asyncio.wait_for(c.send(payload), timeout=120.0)
        except ConnectionError:
            if attempt:
                raise
            continue  # conn() reopens it (and counts it)
        problem = check(r)
        if problem:
            raise ChildError(f"{ep.target}: bad answer: {problem}")
        # Relative to the send: first byte and total.
        return Reply(r.status, b"", r.first_ns - t0, r.end_ns - t0)
    raise AssertionError("unreachable")


@dataclass
class Samples:
    total_ns: list[int] = field(default_factory=list)
    first_ns: list[int] = field(default_factory=list)
    wall_ns: int = 0  # c>1: wall time of all rounds, for throughput
    requests: int = 0


async def run_round(ep: Endpoint, payload: bytes, check: Check, n: int, concurrency: int, out: Samples) -> None:
    if concurrency == 1:
        for _ in range(n):
            r = await one(ep, 0, payload, check)
            out.total_ns.append(r.end_ns)
            out.first_ns.append(r.first_ns)
        out.requests += n
        return
    # n requests per connection, all connections busy at once (closed loop: each sends its next
    # request as soon as its previous answer is in).
    for i in range(concurrency):
        await ep.conn(i)

    async def worker(i: int) -> None:
        for _ in range(n):
            r = await one(ep, i, payload, check)
            out.total_ns.append(r.end_ns)
            out.first_ns.append(r.first_ns)

    t = time.perf_counter_ns()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    out.wall_ns += time.perf_counter_ns() - t
    out.requests += n * concurrency


# --------------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------------
@dataclass
class Scenario:
    key: str
    title: str
    backend: str  # "canned" or "llama"
    body: dict[str, Any]
    check: Check
    concurrency: int
    rounds: int
    per_round: int  # requests per target per round (per connection when concurrency > 1)
    warmup: int  # untimed requests per target (per connection when concurrency > 1)
    stream: bool = False
    #: targets that send another request to a gateway: name -> (gateway target, path, body, check)
    variants: dict[str, tuple[str, str, dict[str, Any], Check]] = field(default_factory=dict)
    only: tuple[str, ...] | None = None  # the plain targets that take part (None: all)


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    q = args.quick
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    out = []
    if "canned" in args.backends:
        out += [
            Scenario("c1", "canned backend, non-streamed, c=1", "canned", chat, check_completion, 1,
                     rounds=4 if q else 20, per_round=50 if q else 100, warmup=30 if q else 100),
            Scenario("stream", f"canned backend, {STREAM_CHUNKS}-chunk stream, c=1", "canned",
                     {**chat, "stream": True}, check_stream, 1,
                     rounds=3 if q else 12, per_round=20 if q else 50, warmup=10 if q else 30, stream=True),
            Scenario("c32", "canned backend, non-streamed, c=32", "canned", chat, check_completion, 32,
                     rounds=2 if q else 8, per_round=4 if q else 8, warmup=2),
        ]  # fmt: skip
        # The Responses API through corral (translated onto the backend's chat completions), next to chat
        # completions through corral, interleaved in the same rounds.
        responses = {"input": "hi", "max_output_tokens": 8}
        out += [
            Scenario("resp", "canned backend, /v1/responses vs chat completions, non-streamed, c=1", "canned",
                     chat, check_completion, 1, rounds=4 if q else 20, per_round=50 if q else 100,
                     warmup=30 if q else 100, only=("direct", "corral"),
                     variants={"responses": ("corral", "/v1/responses", responses, check_response)}),
            Scenario("resp-stream", f"canned backend, /v1/responses vs chat completions, {STREAM_CHUNKS}-chunk stream,"
                     " c=1", "canned", {**chat, "stream": True}, check_stream, 1, rounds=3 if q else 12,
                     per_round=20 if q else 50, warmup=10 if q else 30, stream=True, only=("direct", "corral"),
                     variants={"responses": ("corral", "/v1/responses", {**responses, "stream": True},
                                              check_response_stream)}),
        ]  # fmt: skip
        out += ollama_scenarios(chat, q)
    if "llama" in args.backends:
        llama = {
            "messages": [{"role": "user", "content": "Say hi."}],
            "max_tokens": args.llama_max_tokens,
            "temperature": 0,
        }
        title = f"llama.cpp server, non-streamed, max_tokens={args.llama_max_tokens}, c=1"
        rounds = 2 if q else args.llama_rounds
        out.append(Scenario("llama", title, "llama", llama, check_completion, 1, rounds, 2, 1 if q else 2))
    return out


# Ollama's /api/chat through corral (translated onto the backend's chat completions), next to chat
# completions through the same corral in the same rounds: what speaking Ollama's API adds.
TARGET_OLLAMA_OVER_CHAT_MS = 0.2


def check_ollama_chat(r: Reply) -> str | None:
    if r.status != 200 or b'"done":true' not in r.body or b'"message"' not in r.body:
        return f"status {r.status}: {r.body[:300]!r}"
    return None


def check_ollama_stream(r: Reply) -> str | None:
    lines = r.body.count(b'"done":false')
    if r.status != 200 or lines < STREAM_CHUNKS or b'"done":true' not in r.body:
        return f"status {r.status}, {lines} content lines: {r.body[-300:]!r}"
    return None


def ollama_scenarios(chat: dict[str, Any], quick: bool) -> list[Scenario]:
    body = {"messages": chat["messages"], "stream": False, "options": {"num_predict": chat["max_tokens"]}}
    return [
        Scenario("ollama", "canned backend, Ollama /api/chat vs chat completions, non-streamed, c=1", "canned",
                 chat, check_completion, 1, rounds=4 if quick else 20, per_round=50 if quick else 100,
                 warmup=30 if quick else 100, only=("direct", "corral"),
                 variants={"ollama": ("corral", "/api/chat", body, check_ollama_chat)}),
        Scenario("ollama-stream", f"canned backend, Ollama /api/chat vs chat completions, {STREAM_CHUNKS}-chunk "
                 "stream, c=1", "canned", {**chat, "stream": True}, check_stream, 1, rounds=3 if quick else 12,
                 per_round=20 if quick else 50, warmup=10 if quick else 30, stream=True, only=("direct", "corral"),
                 variants={"ollama": ("corral", "/api/chat", {**body, "stream": True}, check_ollama_stream)}),
    ]  # fmt: skip


async def run_scenarios(
    plan: list[Scenario], endpoints: dict[str, dict[str, Endpoint]], deadline: float
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    try:
        for sc in plan:
            eps = {t: ep for t, ep in endpoints[sc.backend].items() if sc.only is None or t in sc.only}
            payloads = {t: eps[t].request(sc.body) for t in eps}
            checks = {t: sc.check for t in eps}
            for name, (base, path, body, check) in sc.variants.items():
                if base in eps:  # its own connections to the same gateway
                    eps[name] = Endpoint(name, eps[base].host, eps[base].port, eps[base].model)
                    payloads[name], checks[name] = eps[name].request(body, path), check
            order = list(eps)
            samples = {t: Samples() for t in order}
            log(f"{sc.key}: warm-up")
            for t in order:
                await run_round(eps[t], payloads[t], checks[t], sc.warmup, sc.concurrency, Samples())
            log(f"{sc.key}: {sc.rounds} rounds x {sc.per_round * sc.concurrency} requests x {len(order)} targets")
            done = 0
            for r in range(sc.rounds):
                if time.monotonic() > deadline and done:
                    log(f"{sc.key}: time limit reached after {done} rounds; reporting what ran")
                    break
                # Rotate who goes first: no target always runs right after the same neighbour.
                k = r % len(order)
                for t in order[k:] + order[:k]:
                    await run_round(eps[t], payloads[t], checks[t], sc.per_round, sc.concurrency, samples[t])
                done += 1
            results[sc.key] = summarize(sc, samples, done, {t: eps[t].reconnects for t in order})
            for name in sc.variants:
                if name in eps:
                    eps[name].close()
    finally:
        for eps in endpoints.values():
            for ep in eps.values():
                ep.close()
    return results


def summarize(sc: Scenario, samples: dict[str, Samples], rounds: int, reconnects: dict[str, int]) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    base: dict[str, float] = {}
    for t, s in samples.items():
        ms = [n / 1e6 for n in s.total_ns]
        first = [n / 1e6 for n in s.first_ns]
        row: dict[str, Any] = {
            "n": len(ms),
            "median_ms": statistics.median(ms),
            "p99_ms": _p99(ms),
            "mean_ms": statistics.fmean(ms),
            "reconnects": reconnects[t],
        }
        if len(ms) <= 100:
            row["samples_ms"] = [round(x, 3) for x in ms]  # few enough to keep: shows what the p99 is
        if sc.stream:
            row["first_byte_median_ms"] = statistics.median(first)
            row["first_byte_p99_ms"] = _p99(first)
        if s.wall_ns:
            row["throughput_rps"] = s.requests / (s.wall_ns / 1e9)
        if t == "direct":
            base = row
        rows[t] = row
    for row in rows.values():
        row["added_ms"] = row["median_ms"] - base["median_ms"]
        row["added_p99_ms"] = row["p99_ms"] - base["p99_ms"]
        row["ratio"] = row["median_ms"] / base["median_ms"]
        if sc.stream:
            row["first_byte_added_ms"] = row["first_byte_median_ms"] - base["first_byte_median_ms"]
    return {
        "title": sc.title,
        "stream": sc.stream,
        "backend": sc.backend,
        "concurrency": sc.concurrency,
        "rounds": rounds,
        "requests_per_round": sc.per_round * sc.concurrency,
        "warmup": sc.warmup * sc.concurrency,
        "targets": rows,
    }


# --------------------------------------------------------------------------------------------------
# Setting up the servers
# --------------------------------------------------------------------------------------------------
def corral_config(path: Path, backends: dict[str, str]) -> None:
    lines = ['default_provider = "canned"' if "canned" in backends else 'default_provider = "llama"', ""]
    for name, url in backends.items():
        kind = "openai" if name == "canned" else "llamacpp"
        base = f"{url}/v1" if name == "canned" else url
        lines += [f"[providers.{name}]", f'type = "{kind}"', f'base_url = "{base}"', 'api_key = "x"', ""]
    for name in backends:
        lines += [f"[models.{MODEL[name]}]", f'provider = "{name}"', ""]
    path.write_text("\n".join(lines))


def litellm_config(path: Path, backends: dict[str, str]) -> None:
    # YAML written by hand: the benchmark must not need PyYAML. No database, no master key (the
    # corral gateway runs without API keys too, so neither pays for authentication).
    lines = ["model_list:"]
    for name, url in backends.items():
        lines += [
            f"  - model_name: {MODEL[name]}",
            "    litellm_params:",
            "      model: openai/x",
            f"      api_base: {url}/v1",
            "      api_key: x",
        ]
    lines += ["general_settings:", "  dangerously_permit_weak_or_unset_master_key: true", ""]
    path.write_text("\n".join(lines))


MODEL = {"canned": "x", "llama": "gemma"}


def litellm_env(env: dict[str, str]) -> dict[str, str]:
    env = dict(env)
    for var in ("DATABASE_URL", "LITELLM_MASTER_KEY", "REDIS_HOST", "REDIS_URL"):
        env.pop(var, None)  # no database, no cache: the plain proxy path
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # offline: no fetch of the cost map at start-up
        LITELLM_TELEMETRY="False",
        DISABLE_SCHEMA_UPDATE="True",
        LITELLM_LOG="ERROR",  # its own logger; uvicorn's access line per request stays, like corral's
    )
    return env


def litellm_binary(args: argparse.Namespace) -> Path | None:
    venv = Path(args.litellm_venv)
    exe = venv / "bin" / "litellm"
    return exe if exe.exists() else None


def setup_litellm(venv: Path, spec: str) -> None:
    python = venv / "bin" / "python"
    if not python.exists():
        log(f"creating {venv}")
        # Its own venv: litellm must see none of corral's deps, nor corral see its.
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    log(f"pip install {spec} into {venv} (a few minutes the first time)")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", spec],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def measure_ready(argv_for: Callable[[int], list[str]], env: dict[str, str], runs: int) -> list[float]:
    """Extra cold starts of the corral gateway, each stopped once /health answers."""
    times = []
    for _ in range(runs):
        port = free_port()
        with gateway("corral-ready", argv_for(port), env, port, "/health") as g:
            times.append(g.wait_ready(30.0))
    return times


def _on_sigterm(*_: object) -> None:
    # SystemExit, so that every finally/ExitStack runs and each child is reaped.
    sys.exit(143)


async def stoppable(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` so that SIGTERM stops it. Outside the event loop the SIGTERM handler raises
    SystemExit, but inside it that exception would be raised in whatever callback runs next, and
    uvloop swallows it in a protocol callback (the run would go on). Here SIGTERM cancels the task
    instead, and SystemExit is raised once it has unwound. (SIGINT: asyncio.Runner does the same.)"""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    stopped: list[int] = []

    def stop() -> None:
        stopped.append(signal.SIGTERM)
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, stop)
    try:
        return await task
    except asyncio.CancelledError:
        if stopped:
            raise SystemExit(143) from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)  # resets SIGTERM to SIG_DFL: put ours back
        signal.signal(signal.SIGTERM, _on_sigterm)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(args: argparse.Namespace) -> dict[str, Any]:
    env = _child_env()
    started = time.monotonic()
    report: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "loadavg_at_start": os.getloadavg(),
        },
        "quick": args.quick,
    }
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gateway_overhead-")))
        backends: dict[str, str] = {}
        # Start the servers together: llama.cpp's model load overlaps the canned backend's start.
        servers = {}
        if "canned" in args.backends:
            servers["canned"] = stack.enter_context(child("canned-backend", [sys.executable, str(CANNED)], env))
        if "llama" in args.backends:
            gguf = _gguf_path(args.gguf)
            report["gguf"] = Path(gguf).name
            log(f"starting llama.cpp server on {Path(gguf).name}")
            argv = [sys.executable, "-m", "corral.manager.engine_child", "-m", gguf, "--port", "0"]
            argv += ["-c", "2048", "-np", "1"]
            servers["llama"] = stack.enter_context(child("llama-server", argv, env))
        for name, srv in servers.items():
            backends[name] = _ready_url(srv, timeout=300.0 if name == "llama" else 30.0)
            log(f"{name} backend at {backends[name]}")

        # corral serve
        ccfg = tmp / "corral.toml"
        corral_config(ccfg, backends)

        def corral_argv(port: int, level: str = args.corral_log_level) -> list[str]:
            return [sys.executable, "-m", "corral.cli", "serve", "--config", str(ccfg), "--port", str(port),
                    "--log-level", level]  # fmt: skip

        cenv = dict(env)
        for var in list(cenv):
            if var.startswith("CORRAL_"):
                cenv.pop(var)  # the config file alone decides the routes
        log(f"corral serve: {args.ready_runs} cold starts for the ready time")
        ready = measure_ready(corral_argv, cenv, args.ready_runs)
        port = free_port()
        gws: dict[str, Gateway] = {}
        gws["corral"] = stack.enter_context(gateway("corral", corral_argv(port), cenv, port, "/health"))
        ready.append(gws["corral"].wait_ready(30.0))
        time.sleep(0.5)  # let start-up garbage settle before reading memory
        rss_start = {"corral": gws["corral"].rss_mb()}
        readies = {"corral": ready}
        if args.quiet_corral:
            # A second corral that logs no line per request: what that line costs, next to it.
            port = free_port()
            argv = corral_argv(port, "warning")
            gws["corral-q"] = stack.enter_context(gateway("corral-q", argv, cenv, port, "/health"))
            readies["corral-q"] = [gws["corral-q"].wait_ready(30.0)]
            time.sleep(0.5)
            rss_start["corral-q"] = gws["corral-q"].rss_mb()

        if not args.no_litellm:
            exe = litellm_binary(args)
            if exe is None:
                report["litellm_skipped"] = f"no {args.litellm_venv}/bin/litellm (run with --setup-litellm)"
                log(report["litellm_skipped"])
            else:
                lcfg = tmp / "litellm.yaml"
                litellm_config(lcfg, backends)
                port = free_port()
                argv = [str(exe), "--config", str(lcfg), "--host", "127.0.0.1", "--port", str(port)]
                log("starting the LiteLLM proxy (slow: it imports a lot)")
                gws["litellm"] = stack.enter_context(
                    gateway("litellm", argv, litellm_env(env), port, "/health/liveliness")
                )
                readies["litellm"] = [gws["litellm"].wait_ready(300.0)]
                time.sleep(0.5)
                rss_start["litellm"] = gws["litellm"].rss_mb()
        log("ready: " + ", ".join(f"{k} {statistics.median(v):.2f} s" for k, v in readies.items()))

        endpoints: dict[str, dict[str, Endpoint]] = {}
        for name, url in backends.items():
            host, bport = _host_port(url)
            eps = {"direct": Endpoint("direct", host, bport, MODEL[name])}
            for t, g in gws.items():
                eps[t] = Endpoint(t, "127.0.0.1", g.port, MODEL[name])
            endpoints[name] = eps

        deadline = started + args.time_limit
        plan = scenarios(args)
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            results = runner.run(stoppable(run_scenarios(plan, endpoints, deadline)))
        time.sleep(1.0)  # idle again: what the gateway holds between bursts
        rss_after = {t: g.rss_mb() for t, g in gws.items()}
        nprocs = {t: len(_descendants(g.pid)) for t, g in gws.items()}
        for t, g in gws.items():
            if g.proc.poll() is not None:
                raise ChildError(f"{t} died during the run{g.log_tail()}")
        report["scenarios"] = results
        report["processes"] = {
            t: {
                "ready_s": statistics.median(readies[t]),
                "ready_runs_s": readies[t],
                "rss_idle_start_mb": rss_start[t],
                "rss_idle_after_load_mb": rss_after[t],
                "processes": nprocs[t],
            }
            for t in gws
        }
        report["backend_rss_mb"] = {name: srv.rss_mb() for name, srv in servers.items()}
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    report["targets"] = targets(report)
    report["elapsed_s"] = time.monotonic() - started
    return report


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------
def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    sc = report.get("scenarios", {})
    proc = report.get("processes", {}).get("corral", {})

    def corral(key: str, field_: str, target: str = "corral") -> float | None:
        row = sc.get(key, {}).get("targets", {}).get(target)
        return None if row is None else float(row[field_])

    def over_chat(key: str, variant: str = "responses") -> float | None:
        """What /v1/responses (or another variant) adds over chat completions through the same corral,
        same rounds."""
        rsp, chat = corral(key, "median_ms", variant), corral(key, "median_ms")
        return None if rsp is None or chat is None else rsp - chat

    rss = [x for x in (proc.get("rss_idle_start_mb"), proc.get("rss_idle_after_load_mb")) if x is not None]
    rows = [
        ("added latency, non-streamed c=1 (median)", corral("c1", "added_ms"), TARGET_C1_ADDED_MS, "ms"),
        (f"added latency, {STREAM_CHUNKS}-chunk stream c=1 (median)", corral("stream", "added_ms"),
         TARGET_STREAM_ADDED_MS, "ms"),
        ("c=32 median vs direct", corral("c32", "ratio"), TARGET_C32_RATIO, "x"),
        ("llama.cpp end to end vs direct", corral("llama", "ratio"), TARGET_LLAMA_RATIO, "x"),
        ("/v1/responses over chat completions, c=1", over_chat("resp"), TARGET_RESPONSES_OVER_CHAT_MS, "ms"),
        (f"/v1/responses over chat, {STREAM_CHUNKS}-chunk stream", over_chat("resp-stream"),
         TARGET_RESPONSES_OVER_CHAT_MS, "ms"),
        ("Ollama /api/chat over chat completions, c=1", over_chat("ollama", "ollama"), TARGET_OLLAMA_OVER_CHAT_MS,
         "ms"),
        (f"Ollama /api/chat over chat, {STREAM_CHUNKS}-chunk stream", over_chat("ollama-stream", "ollama"),
         TARGET_OLLAMA_OVER_CHAT_MS, "ms"),
        ("RSS idle (max of start, after load)", max(rss) if rss else None, TARGET_RSS_MB, "MB"),
        ("ready (spawn to /health, median)", proc.get("ready_s"), TARGET_READY_S, "s"),
    ]  # fmt: skip
    out = []
    for name, value, limit, unit in rows:
        verdict = "NOT MEASURED" if value is None else "PASS" if value <= limit else "MISS"
        out.append({"name": name, "value": value, "target": limit, "unit": unit, "verdict": verdict})
    return out


def _f(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    load = ", ".join(f"{x:.2f}" for x in m["loadavg_at_start"])
    end = ", ".join(f"{x:.2f}" for x in m.get("loadavg_at_end", ()))
    lines = [
        f"corral gateway overhead -- {m['date']}, {m['platform']}, {m['cpus']} CPUs, Python {m['python']}",
        f"load average at start {load}; at end {end}",
    ]
    if report.get("litellm_skipped"):
        lines.append(f"litellm skipped: {report['litellm_skipped']}")
    for key, s in report.get("scenarios", {}).items():
        lines.append("")
        lines.append(
            f"[{key}] {s['title']} -- {s['rounds']} rounds x {s['requests_per_round']} requests per target,"
            f" interleaved; warm-up {s['warmup']}"
        )
        stream = bool(s.get("stream"))
        c32 = s["concurrency"] > 1
        head = f"  {'target':<9} {'n':>6} {'median ms':>10} {'p99 ms':>9} {'added ms':>9} {'p99 added':>10}"
        head += f" {'x direct':>9}"
        if stream:
            head += f" {'1st byte ms':>12} {'1st added':>10}"
        if c32:
            head += f" {'req/s':>8}"
        lines.append(head)
        lines.append("  " + "-" * (len(head) - 2))
        for t, row in s["targets"].items():
            line = (
                f"  {t:<9} {row['n']:>6} {row['median_ms']:>10.3f} {row['p99_ms']:>9.3f}"
                f" {row['added_ms']:>+9.3f} {row['added_p99_ms']:>+10.3f} {row['ratio']:>9.3f}"
            )
            if stream:
                line += f" {row['first_byte_median_ms']:>12.3f} {row['first_byte_added_ms']:>+10.3f}"
            if c32:
                line += f" {row['throughput_rps']:>8.0f}"
            lines.append(line)
    procs = report.get("processes", {})
    if procs:
        lines.append("")
        lines.append("Gateway processes (RSS incl. children; ready = spawn to health route answering 200)")
        for t, p in procs.items():
            runs = ", ".join(f"{x:.2f}" for x in p["ready_runs_s"])
            lines.append(
                f"  {t:<9} ready {p['ready_s']:6.2f} s (runs: {runs})   RSS idle at start"
                f" {_f(p['rss_idle_start_mb'], '6.1f')} MB, after load {_f(p['rss_idle_after_load_mb'], '6.1f')} MB"
                f" ({p['processes']} process{'es' if p['processes'] > 1 else ''})"
            )
    lines.append("")
    lines.append("Targets (corral)")
    for t in report["targets"]:
        value = "-" if t["value"] is None else f"{t['value']:.3f} {t['unit']}"
        lines.append(f"  {t['name']:<46} {value:>12}   target <= {t['target']} {t['unit']:<3} {t['verdict']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a short run (about a tenth of the requests)")
    p.add_argument("--no-litellm", action="store_true", help="direct and corral only")
    p.add_argument("--backends", default="canned,llama", help="comma-separated: canned, llama (default: %(default)s)")
    p.add_argument("--llama-max-tokens", type=int, default=4, help="max_tokens on llama.cpp (%(default)s)")
    p.add_argument("--llama-rounds", type=int, default=30, help="rounds of 2 calls per target on llama.cpp (30)")
    p.add_argument("--gguf", default=None, help="GGUF for llama.cpp (default: corral's bundled gemma-3-270m)")
    p.add_argument("--ready-runs", type=int, default=None, help="extra corral cold starts (default 5; 2 quick)")
    p.add_argument(
        "--corral-log-level",
        default="info",
        help="corral serve --log-level (default %(default)s, the CLI's default: one log line per request)",
    )
    p.add_argument(
        "--quiet-corral",
        action="store_true",
        help="add a target corral-q: a second corral serve at --log-level warning (no line per request)",
    )
    p.add_argument("--litellm-venv", default=str(DEFAULT_LITELLM_VENV), help="venv with litellm[proxy]")
    p.add_argument("--setup-litellm", action="store_true", help="create the litellm venv, pip install litellm[proxy]")
    p.add_argument("--litellm-spec", default="litellm[proxy]", help="pip requirement for --setup-litellm")
    p.add_argument("--time-limit", type=float, default=900.0, help="no new round starts after this many seconds")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON to PATH")
    args = p.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in args.backends:
        if b not in ("canned", "llama"):
            p.error(f"unknown backend {b!r}")
    if args.ready_runs is None:
        args.ready_runs = 2 if args.quick else 5
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    if args.setup_litellm:
        setup_litellm(Path(args.litellm_venv), args.litellm_spec)
    report = run(args)
    print(render(report))
    print(f"\n(total {report['elapsed_s']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ChildError as exc:
        print(f"gateway_overhead: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
