"""The swap storm: N clients over M managed models with ``[manager] max_loaded = 1``, each client
asking for the next model on every request, so nearly every request forces a swap.

Engines: the fake llama-server (tests/manager/fake_llama_server.py: starts in ~50 ms, generates
``tokens`` chunks ``token_delay`` apart, ``slots`` at a time like llama-server's ``-np``), or with
``real_engine`` the bundled gemma on llama.cpp (corral's embedded engine, one process per model).

Measured: requests that failed after being admitted (anything but a complete stream; a 429/503
with Retry-After is a refusal, counted apart), time to the first content byte (p50/p99), children
per model at every sample (never more than 1), zombies (0), engine processes left after the gateway
stopped (0), swaps (children started).
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from .gateway import FAKE_ENGINE, GatewayProcess
from .report import Result

__all__ = ["StormOptions", "run_storm"]


@dataclass
class StormOptions:
    clients: int = 30
    models: int = 3
    seconds: float = 60.0
    max_requests: int = 100_000
    tokens: int = 8  # fake engine: chunks per answer
    token_delay: float = 0.05  # fake engine: seconds between chunks
    slots: int = 1  # fake engine: answers generated at once (llama-server -np)
    load_delay: float = 0.2  # fake engine: seconds it reports "loading" before healthy
    drain_timeout: float | None = None  # None: corral's default
    real_engine: bool = False
    request_timeout: float = 300.0  # a request not finished by then counts as a hang
    sample_every: float = 0.05


@dataclass
class _Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    ok: int = 0
    refused: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    ttfb: list[float] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)


def storm_config(opts: StormOptions, workdir: Path) -> dict[str, Any]:
    models: dict[str, Any] = {}
    for i in range(opts.models):
        gguf = workdir / f"m{i}.gguf"
        if opts.real_engine:
            from corral.manager.bundled import bundled_model_path

            if not gguf.exists():
                gguf.symlink_to(bundled_model_path())
            models[f"m{i}"] = {"gguf": str(gguf), "args": ["-c", "1024", "-np", "2"]}
        else:
            gguf.write_bytes(b"GGUF")
            engine = [sys.executable, str(FAKE_ENGINE), "--mode", "slow", "--delay", str(opts.load_delay),
                      "--gen-tokens", str(opts.tokens), "--gen-delay", str(opts.token_delay),
                      "--gen-slots", str(opts.slots)]  # fmt: skip
            models[f"m{i}"] = {"gguf": str(gguf), "engine": engine}
    manager: dict[str, Any] = {"max_loaded": 1, "state_dir": str(workdir / "state"), "stop_grace": 5,
                               "models": models}  # fmt: skip
    if opts.drain_timeout is not None:
        manager["drain_timeout"] = opts.drain_timeout
    return {"manager": manager}


def _client(i: int, opts: StormOptions, url: str, deadline: float, budget: list[int], t: _Tally) -> None:
    with httpx.Client(base_url=url, timeout=opts.request_timeout) as http:
        k = 0
        while time.monotonic() < deadline:
            with t.lock:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            model = f"m{(i + k) % opts.models}"
            k += 1
            body = {"model": model, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8,
                    "stream": True, "temperature": 0}  # fmt: skip
            outcome, ttfb, detail = _request(http, body)
            with t.lock:
                if outcome == "ok":
                    t.ok += 1
                    t.ttfb.append(ttfb)
                elif outcome == "refused":
                    t.refused += 1
                else:
                    t.failed[outcome] += 1
                    if len(t.examples) < 8:
                        t.examples.append(f"{model}: {outcome}: {detail}")
            if outcome == "refused":
                time.sleep(min(ttfb, 1.0))


def _request(http: httpx.Client, body: dict[str, Any]) -> tuple[str, float, str]:
    """(outcome, time to first content or the Retry-After for a refusal, detail)."""
    t0 = time.monotonic()
    first: float | None = None
    finished = done = False
    try:
        with http.stream("POST", "/v1/chat/completions", json=body) as resp:
            if resp.status_code in (429, 503) and resp.headers.get("retry-after"):
                resp.read()
                return "refused", float(resp.headers["retry-after"]), ""
            if resp.status_code != 200:
                return f"HTTP {resp.status_code}", 0.0, resp.read()[:200].decode("utf-8", "replace")
            for line in resp.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    continue
                obj = json.loads(data)
                if "error" in obj:
                    return "error event", 0.0, data[:200]
                for choice in obj.get("choices") or []:
                    if choice.get("delta", {}).get("content") and first is None:
                        first = time.monotonic() - t0
                    finished |= bool(choice.get("finish_reason"))
    except httpx.TimeoutException:
        return "hang", 0.0, f"no answer within {http.timeout.read} s"
    except (httpx.HTTPError, ValueError) as exc:
        return "broken", 0.0, f"{type(exc).__name__}: {exc}"
    if not (finished and done):
        return "truncated", 0.0, f"finish_reason={finished} [DONE]={done}"
    return "ok", first if first is not None else time.monotonic() - t0, ""


def run_storm(opts: StormOptions, workdir: Path) -> Result:
    result = Result("storm")
    started = time.monotonic()
    tally = _Tally()
    gw = GatewayProcess(storm_config(opts, workdir), sample_every=opts.sample_every, workdir=workdir)
    engine_pids: set[int] = set()
    with gw:
        deadline = time.monotonic() + opts.seconds
        budget = [opts.max_requests]
        threads = [threading.Thread(target=_client, args=(i, opts, gw.url, deadline, budget, tally), daemon=True)
                   for i in range(opts.clients)]  # fmt: skip
        for th in threads:
            th.start()
        for th in threads:
            th.join(opts.seconds + opts.request_timeout + 30)
        stuck = sum(th.is_alive() for th in threads)
        last = gw.sample()
        for s in gw.samples:
            engine_pids.update(pid for pid, _, gguf in s.children if gguf)
    time.sleep(0.5)
    orphans = [pid for pid in engine_pids if _alive(pid)]
    per_model_max = 0
    zombies_max = 0
    for s in gw.samples:
        live = Counter(gguf for _, status, gguf in s.children if gguf and status != psutil.STATUS_ZOMBIE)
        per_model_max = max(per_model_max, max(live.values(), default=0))
        zombies_max = max(zombies_max, sum(1 for _, status, _ in s.children if status == psutil.STATUS_ZOMBIE))
    result.seconds = time.monotonic() - started
    total = tally.ok + sum(tally.failed.values())
    failed = sum(tally.failed.values())
    result.figure("clients x models", f"{opts.clients} x {opts.models} ({'llama.cpp' if opts.real_engine else 'fake'})")
    result.figure("requests admitted", total)
    result.check("admitted requests failed", f"{failed} ({100 * failed / max(total, 1):.1f} %)", "0", failed == 0)
    if tally.failed:
        result.figure("failures by kind", dict(tally.failed.most_common()))
    for ex in tally.examples:
        result.find("failed", "storm", ex, "see benchmarks/reliability/storm.py (storm_config)")
    result.figure("refused with Retry-After", tally.refused)
    result.check("clients stuck at the end", stuck, "0", stuck == 0)
    result.check("children per model (max seen)", per_model_max, "<= 1", per_model_max <= 1)
    result.check("zombies (max seen)", zombies_max, "0", zombies_max == 0)
    final_zombies = sum(1 for _, st, _ in (last.children if last else ()) if st == psutil.STATUS_ZOMBIE)
    result.check("zombies at the end", final_zombies, "0", final_zombies == 0)
    result.check("engines left after the gateway stopped", len(orphans), "0", not orphans)
    result.figure("children started (swaps)", len(engine_pids))
    result.figure("samples", len(gw.samples))
    if tally.ttfb:
        q = statistics.quantiles(tally.ttfb, n=100, method="inclusive") if len(tally.ttfb) > 1 else [tally.ttfb[0]] * 99
        result.figure("TTFB p50 s", q[49])
        result.figure("TTFB p99 s", q[98])
        result.figure("TTFB max s", max(tally.ttfb))
    result.figure("gateway RSS peak MB", gw.peak_rss())
    return result


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False
