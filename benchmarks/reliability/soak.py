"""The soak: a steady, open-loop request rate through ``corral serve`` to the fault backend's healthy
host for a while, with per-interval (default per-minute) latency percentiles, errors, and the
gateway's RSS and open file descriptors.

The backend runs in a process of its own, so that it shares no interpreter with the load generator.
The mix: chat (pass-through, whole and streamed), Anthropic messages translated to the OpenAI
backend, and embeddings. Requests start on schedule whether or not earlier ones finished (open
loop), so a gateway that slows down shows as latency, not as a lower rate; at most ``concurrency``
are in flight (more would be the load generator's limit, reported as "late starts").
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .backend import backend_process
from .gateway import GatewayProcess
from .report import Result

__all__ = ["SoakOptions", "run_soak"]

MIX: tuple[tuple[str, dict[str, Any]], ...] = (
    ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}),
    (
        "/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "stream": True},
    ),
    ("/v1/messages", {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}),
    ("/v1/embeddings", {"model": "m", "input": ["a", "b"]}),
)


@dataclass
class SoakOptions:
    rate: float = 50.0  # requests per second
    seconds: float = 600.0
    interval: float = 60.0  # seconds per row of the table
    concurrency: int = 256
    timeout: float = 30.0
    rss_growth_mb: float = 15.0  # allowed growth of the last interval over the first half
    fd_growth: int = 16


@dataclass
class _Row:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    rss_mb: float = 0.0
    fds: int = 0


async def _load(opts: SoakOptions, url: str, gw: GatewayProcess, rows: list[_Row], examples: list[str]) -> int:
    sem = asyncio.Semaphore(opts.concurrency)
    late = 0
    limits = httpx.Limits(max_connections=opts.concurrency, max_keepalive_connections=opts.concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=opts.timeout, limits=limits) as http:
        total = int(opts.rate * opts.seconds)
        start = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()

        async def one(n: int) -> None:
            path, body = MIX[n % len(MIX)]
            row = rows[min(int((time.monotonic() - start) / opts.interval), len(rows) - 1)]
            t0 = time.perf_counter()
            try:
                resp = await http.post(path, json=body)
                ok = resp.status_code == 200 and (b"[DONE]" in resp.content or not body.get("stream"))
                detail = f"{resp.status_code} {resp.content[:120]!r}"
            except httpx.HTTPError as exc:
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            finally:
                sem.release()
            row.latencies.append(time.perf_counter() - t0)
            if not ok:
                row.errors += 1
                if len(examples) < 5:
                    examples.append(f"{path}: {detail}")

        next_sample = start + opts.interval
        for n in range(total):
            at = start + n / opts.rate
            now = time.monotonic()
            if at > now:
                await asyncio.sleep(at - now)
            elif now - at > 0.05:
                late += 1
            while time.monotonic() >= next_sample:
                _sample(gw, rows, int((next_sample - start) / opts.interval) - 1)
                next_sample += opts.interval
            await sem.acquire()
            task = asyncio.create_task(one(n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks)
        _sample(gw, rows, len(rows) - 1)
    return late


def _sample(gw: GatewayProcess, rows: list[_Row], index: int) -> None:
    s = gw.sample()
    if s is not None and 0 <= index < len(rows):
        rows[index].rss_mb, rows[index].fds = s.rss_mb, s.fds


def _pct(values: list[float], p: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def run_soak(opts: SoakOptions, workdir: Path) -> Result:
    result = Result("soak")
    started = time.monotonic()
    n_rows = max(1, round(opts.seconds / opts.interval))
    rows = [_Row() for _ in range(n_rows)]
    examples: list[str] = []
    with backend_process() as backend:
        config = {"default_provider": "oa",
                  "providers": {"oa": {"type": "openai", "base_url": f"{backend}/ok/v1", "api_key": "k"}}}  # fmt: skip
        with GatewayProcess(config, workdir=workdir) as gw:
            base = gw.sample()
            late = asyncio.run(_load(opts, gw.url, gw, rows, examples))
    result.seconds = time.monotonic() - started
    done = sum(len(r.latencies) for r in rows)
    errors = sum(r.errors for r in rows)
    result.figure("target rate req/s", opts.rate)
    result.figure("requests", done)
    result.check("errors", errors, "0", errors == 0)
    for ex in examples:
        result.find("error", "soak", ex)
    result.figure("late starts (load generator)", late)
    all_lat = [x for r in rows for x in r.latencies]
    result.figure("p50 ms (all)", _pct(all_lat, 50) * 1000)
    result.figure("p99 ms (all)", _pct(all_lat, 99) * 1000)
    result.figure("RSS at start MB", base.rss_mb if base else 0.0)
    # A leak keeps growing: the last interval is compared with the highest of the first half (pools
    # and caches fill during warm-up, and a burst of late requests opens connections that are kept).
    last, first_half = rows[-1], rows[: max(1, len(rows) // 2)]
    growth = last.rss_mb - max(r.rss_mb for r in first_half)
    result.check("RSS growth, last vs first half MB", round(growth, 1), f"<= {opts.rss_growth_mb:g}",
                 growth <= opts.rss_growth_mb)  # fmt: skip
    fd_growth = last.fds - max(r.fds for r in first_half)
    result.check("open FDs growth, last vs first half", fd_growth, f"<= {opts.fd_growth}", fd_growth <= opts.fd_growth)
    per = []
    for i, r in enumerate(rows):
        per.append({"interval": i + 1, "requests": len(r.latencies), "errors": r.errors,
                    "p50_ms": round(_pct(r.latencies, 50) * 1000, 2), "p99_ms": round(_pct(r.latencies, 99) * 1000, 2),
                    "rss_mb": round(r.rss_mb, 1), "fds": r.fds})  # fmt: skip
    result.extra["intervals"] = per
    label = "minute" if opts.interval == 60 else f"{opts.interval:g} s"
    for p in per:
        result.figure(f"{label} {p['interval']}", f"n={p['requests']} err={p['errors']} p50={p['p50_ms']:.1f}ms "
                      f"p99={p['p99_ms']:.1f}ms rss={p['rss_mb']:.1f}MB fds={p['fds']}")  # fmt: skip
    return result
