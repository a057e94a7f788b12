"""The fuzzer: Hypothesis-made requests (fuzz_cases) to every gateway route of two ``corral serve``
processes, both on the fault backend's healthy path:

  routed   [models] gpt/gpt-4o-mini (openai), claude (anthropic), llama (llamacpp), and a [manager]
           model ``local`` on the fake llama-server; unknown names are 404
  open     no [models]: every name goes to the default provider (anthropic), translated

Every answer is checked: status counted; a 404 "no route" counted apart (a route not built yet); a
5xx whose body is not the backend's (:data:`backend.MARKER`) is corral-made; an error body outside
the caller's protocol shape is counted; canaries (the providers' keys) must not appear; no request
may time out. Every ``metrics_every`` requests ``/metrics`` must answer 200 within a size bound and
``/dashboard/api/state`` 200. Afterwards the gateways' logs are read for tracebacks, forged lines
(CR/LF in a model name) and canaries; RSS is sampled all along.

Hypothesis generates only (no shrinking, no example database): a run is a measurement, not a test
that stops at the first failure. ``seed`` makes a run repeatable.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase, given, seed, settings

from .backend import MARKER, FaultBackend
from .canary import FUZZ_PROVIDER_KEYS
from .fuzz_cases import FAMILIES, FORGED, ROUTES, FuzzRequest, requests
from .gateway import GatewayProcess
from .report import Result
from .shapes import canary_forms, error_shape_problem, find_canaries, protocol_for

__all__ = ["FuzzOptions", "fuzz_configs", "run_fuzz"]

# The line that ends a traceback: "UnicodeEncodeError: 'utf-8' codec can't…" (the type is what we count).
_EXCEPTION_LINE = re.compile(r"^((?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception))\b", re.MULTILINE)
GATEWAY_KEY = "battery-gateway-key-3b1f0c"
# The managed model's engine: the fault backend as a llama-server (healthy answers on every API,
# unlike tests/manager/fake_llama_server.py, which answers everything with one chat completion).
ENGINE = Path(__file__).with_name("backend.py")


@dataclass
class FuzzOptions:
    seconds: float = 60.0
    max_requests: int = 1_000_000
    families: tuple[str, ...] = FAMILIES
    gateways: tuple[str, ...] = ("routed", "open")
    routes: tuple[str, ...] = ()  # "METHOD /template" of fuzz_cases.ROUTES to aim at; () for all
    metrics_every: int = 25
    metrics_limit: int = 2 * 2**20  # bytes a /metrics page may reach
    rss_limit_mb: float = 150.0
    timeout: float = 30.0  # a request not answered by then is a hang
    seed: int | None = None  # None: derandomized (the same requests every run)
    heavy_every: float = 15.0  # at most one 8 MB many-messages body per this many seconds (each takes ~2 s)
    stall_limit_ms: float = 1000.0  # the longest a /health heartbeat may wait (the event loop blocked)


@dataclass
class _Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    families: Counter[str] = field(default_factory=Counter)
    family_seconds: dict[str, float] = field(default_factory=dict)
    missing: Counter[str] = field(default_factory=Counter)  # 404 "no route", per route template
    served: Counter[str] = field(default_factory=Counter)  # any other answer
    reused_closed: int = 0
    stall_max_ms: float = 0.0
    stall_during: str = ""
    requests: int = 0
    corral_5xx: int = 0
    wrong_shape: int = 0
    leaks: int = 0
    hangs: int = 0
    dropped: int = 0
    metrics_checks: int = 0
    metrics_failures: int = 0
    metrics_max_bytes: int = 0
    metrics_max_ms: float = 0.0
    state_failures: int = 0


def fuzz_configs(backend: FaultBackend, workdir: Path) -> dict[str, dict[str, Any]]:
    gguf = workdir / "local.gguf"
    gguf.write_bytes(b"GGUF")
    keys = FUZZ_PROVIDER_KEYS
    providers = {
        "oa": {"type": "openai", "base_url": f"{backend.base('ok')}/v1", "api_key": keys["oa"]},
        "ant": {"type": "anthropic", "base_url": backend.base("ok"), "api_key": keys["ant"]},
        "llama": {"type": "llamacpp", "base_url": backend.base("ok"), "api_key": keys["llama"]},
    }
    gateway = {"api_keys": [GATEWAY_KEY]}
    routed = {
        "default_provider": "oa", "providers": providers, "gateway": gateway,
        "models": {"gpt": {"provider": "oa", "aliases": ["gpt-4o-mini"]}, "claude": {"provider": "ant"},
                   "llama": {"provider": "llama"}},
        "manager": {"state_dir": str(workdir / "state"), "stop_grace": 2,
                    "models": {"local": {"gguf": str(gguf), "engine": [sys.executable, str(ENGINE)]}}},
    }  # fmt: skip
    open_ = {"default_provider": "ant", "providers": providers, "gateway": gateway}
    return {"routed": routed, "open": open_}


@contextlib.contextmanager
def _gateways(backend: FaultBackend, names: tuple[str, ...], root: Path) -> Iterator[dict[str, GatewayProcess]]:
    configs = fuzz_configs(backend, root)
    procs = {n: GatewayProcess(configs[n], key=GATEWAY_KEY, workdir=root / n) for n in names}
    for p in procs.values():
        p.workdir.mkdir(parents=True, exist_ok=True)
    try:
        with ThreadPoolExecutor(len(procs)) as pool:  # start them side by side: ~1 s each
            list(pool.map(lambda p: p.start(), procs.values()))
        yield procs
    finally:
        for p in procs.values():
            p.stop()


def run_fuzz(opts: FuzzOptions, workdir: Path) -> Result:
    result = Result("fuzz")
    started = time.monotonic()
    forms = canary_forms(FUZZ_PROVIDER_KEYS.values())
    tally = _Tally()
    with FaultBackend() as backend, _gateways(backend, opts.gateways, workdir) as gws:
        clients = {n: httpx.Client(base_url=g.url, timeout=opts.timeout) for n, g in gws.items()}
        deadline = time.monotonic() + opts.seconds
        current = [""]  # what the fuzzer is sending now, for the heartbeat to blame
        stop = threading.Event()
        beats = [threading.Thread(target=_heartbeat, args=(n, g.url, stop, tally, current), daemon=True)
                 for n, g in gws.items()]  # fmt: skip
        for b in beats:
            b.start()

        last_heavy = [-1e9]

        def one(req: FuzzRequest) -> None:
            now = time.monotonic()
            if now > deadline:
                raise _TimeUp
            if req.family == "many-messages":
                if now - last_heavy[0] < opts.heavy_every:
                    return  # not sent: the budget for 8 MB bodies is spent
                last_heavy[0] = now
            current[0] = f"{req.repro()} ({req.family})"
            _send(req, clients[req.gateway], tally, result, forms)
            if tally.requests % opts.metrics_every == 0:
                for name, gw in gws.items():
                    current[0] = f"the periodic GET /metrics and /dashboard/api/state on {name}"
                    _check_metrics(name, gw, clients[name], tally, result, opts, forms)

        aimed = tuple(r for r in ROUTES if not opts.routes or f"{r.method} {r.template}" in opts.routes)
        if not aimed:
            raise ValueError(f"no route matches {opts.routes}")
        test = given(req=requests(tuple(opts.families), tuple(opts.gateways), GATEWAY_KEY, aimed))(one)
        test = settings(
            max_examples=opts.max_requests, deadline=None, database=None, phases=[Phase.generate],
            suppress_health_check=list(HealthCheck), derandomize=opts.seed is None, print_blob=False,
        )(test)  # fmt: skip
        if opts.seed is not None:
            test = seed(opts.seed)(test)
        try:
            test()
        except _TimeUp:
            pass
        finally:
            stop.set()
            for b in beats:
                b.join(opts.timeout + 5)
            for c in clients.values():
                c.close()
        for name, gw in gws.items():  # a last look, after the run
            with httpx.Client(base_url=gw.url, timeout=opts.timeout) as c:
                _check_metrics(name, gw, c, tally, result, opts, forms)
    result.seconds = time.monotonic() - started
    logs = {n: g.log_text() for n, g in gws.items()}
    _summarise(result, tally, opts, gws, logs, forms)
    return result


def _heartbeat(name: str, url: str, stop: threading.Event, tally: _Tally, current: list[str]) -> None:
    """GET /health ten times a second: how long it waits is how long the event loop was blocked
    (the fuzz itself sends one request at a time)."""
    with httpx.Client(base_url=url, timeout=60) as http:
        while not stop.wait(0.1):
            t0 = time.perf_counter()
            during = current[0]
            try:
                http.get("/health")
            except httpx.HTTPError:
                continue
            ms = (time.perf_counter() - t0) * 1000
            if ms > tally.stall_max_ms:
                tally.stall_max_ms = ms
                tally.stall_during = f"{name} stalled during: {during}"


class _TimeUp(Exception):
    """The run's time is over (raised inside the Hypothesis test to end generation)."""


def _send(req: FuzzRequest, http: httpx.Client, tally: _Tally, result: Result, forms: dict[str, str]) -> None:
    tally.requests += 1
    tally.families[req.family] += 1
    t0 = time.perf_counter()
    try:
        _send_checked(req, http, tally, result, forms)
    finally:
        spent = time.perf_counter() - t0
        tally.family_seconds[req.family] = tally.family_seconds.get(req.family, 0.0) + spent


def _send_checked(req: FuzzRequest, http: httpx.Client, tally: _Tally, result: Result, forms: dict[str, str]) -> None:
    where = f"{req.method} {req.route}"
    for attempt in (1, 2):
        try:
            resp = http.request(req.method, req.path, content=req.body, headers=req.headers)
            break
        except httpx.TimeoutException:
            tally.hangs += 1
            result.find("hang", where, f"no answer within {http.timeout.read} s ({req.family})", req.repro())
            return
        except httpx.TransportError as exc:
            if attempt == 1 and isinstance(exc, (httpx.ReadError, httpx.RemoteProtocolError)):
                # A kept-alive connection the gateway closed after the previous answer (uvicorn does
                # after an exception escaped the app): what SDKs retry. Counted, then sent again.
                tally.reused_closed += 1
                continue
            tally.dropped += 1
            result.find("dropped", where, f"{type(exc).__name__}: {exc} ({req.family})", req.repro())
            return
    status, body, ctype = resp.status_code, resp.content, resp.headers.get("content-type", "")
    tally.statuses[status] += 1
    if status == 404 and _no_route(body):
        tally.missing[req.route] += 1
        return
    tally.served[req.route] += 1
    leaked = find_canaries(body, forms)
    if leaked:
        tally.leaks += 1
        result.find("leak", where, f"{', '.join(leaked)} in a {status} body ({req.family})", req.repro())
    if status >= 500 and MARKER.encode() not in body:
        tally.corral_5xx += 1
        result.find("corral-5xx", where, f"{status} {body[:160]!r} ({req.family})", req.repro())
    if status >= 400:
        problem = error_shape_problem(protocol_for(req.route), status, ctype, body)
        if problem:
            tally.wrong_shape += 1
            result.find("wrong-shape", where, f"{status}: {problem}: {body[:120]!r} ({req.family})", req.repro())


def _check_metrics(name: str, gw: GatewayProcess, http: httpx.Client, tally: _Tally, result: Result,
                   opts: FuzzOptions, forms: dict[str, str]) -> None:  # fmt: skip
    tally.metrics_checks += 1
    t0 = time.perf_counter()
    try:
        resp = http.get("/metrics", headers=gw.headers())
    except httpx.HTTPError as exc:
        tally.metrics_failures += 1
        result.find("metrics", name, f"/metrics failed: {type(exc).__name__} after request {tally.requests}")
        return
    ms = (time.perf_counter() - t0) * 1000
    tally.metrics_max_ms = max(tally.metrics_max_ms, ms)
    tally.metrics_max_bytes = max(tally.metrics_max_bytes, len(resp.content))
    if resp.status_code != 200 or len(resp.content) > opts.metrics_limit:
        tally.metrics_failures += 1
        result.find("metrics", name, f"/metrics {resp.status_code}, {len(resp.content)} B, {ms:.0f} ms after "
                    f"request {tally.requests}: {resp.content[:80]!r}")  # fmt: skip
    if find_canaries(resp.content, forms):
        tally.leaks += 1
        result.find("leak", "/metrics", ", ".join(find_canaries(resp.content, forms)))
    try:
        state = http.get("/dashboard/api/state", headers=gw.headers())
        ok = state.status_code == 200
        text = state.content
    except httpx.HTTPError as exc:
        ok, text = False, repr(exc).encode()
    if not ok:
        tally.state_failures += 1
        result.find(
            "dashboard-state", name, f"/dashboard/api/state failed after request {tally.requests}: {text[:80]!r}"
        )
    elif find_canaries(text, forms):
        tally.leaks += 1
        result.find("leak", "/dashboard/api/state", ", ".join(find_canaries(text, forms)))


def _summarise(result: Result, t: _Tally, opts: FuzzOptions, gws: dict[str, GatewayProcess], logs: dict[str, str],
               forms: dict[str, str]) -> None:  # fmt: skip
    tracebacks = sum(log.count("Traceback (most recent call last)") for log in logs.values())
    per_log = {n: log.count("Traceback (most recent call last)") for n, log in logs.items()}
    forged = sum(1 for log in logs.values() for line in log.splitlines() if line.startswith(FORGED[:10]))
    log_leaks = sorted({label for log in logs.values() for label in find_canaries(log, forms)})
    exceptions: Counter[str] = Counter()
    for name, log in logs.items():
        found = [m.group(1) for m in _EXCEPTION_LINE.finditer(log)]
        exceptions.update(found)
        if per_log[name]:
            result.find("traceback", name, f"{per_log[name]} tracebacks in its log; the first: {found[:1]}")
    if forged:
        result.find("log-injection", "log", f"{forged} log lines forged by CR/LF in model names")
    result.figure("requests", t.requests)
    result.figure("requests/s", t.requests / max(result.seconds, 1e-9))
    result.figure("by status", dict(sorted(t.statuses.items())))
    result.figure("by family", dict(t.families.most_common()))
    result.figure(
        "seconds by family", {k: round(v, 1) for k, v in sorted(t.family_seconds.items(), key=lambda kv: -kv[1])}
    )
    result.figure("404 no such route", sum(t.missing.values()))
    result.figure("routes not built (only 404)", ", ".join(sorted(set(t.missing) - set(t.served))) or "none")
    result.figure("kept-alive connection closed", t.reused_closed)
    result.check("corral-made 5xx", t.corral_5xx, "0", t.corral_5xx == 0)
    result.check("errors outside the protocol's shape", t.wrong_shape, "0", t.wrong_shape == 0)
    leaks = t.leaks + len(log_leaks)
    result.check("leaked canaries", leaks, "0", leaks == 0)
    result.check("hangs (timeouts)", t.hangs, "0", t.hangs == 0)
    result.check("dropped connections", t.dropped, "0", t.dropped == 0)
    ok = t.metrics_checks - t.metrics_failures
    result.check("/metrics 200 and bounded", f"{ok}/{t.metrics_checks}", f"all, <= {opts.metrics_limit // 1024} KB",
                 t.metrics_failures == 0)  # fmt: skip
    result.figure("/metrics largest KB", t.metrics_max_bytes / 1024)
    result.figure("/metrics slowest ms", t.metrics_max_ms)
    result.check("/dashboard/api/state failures", t.state_failures, "0", t.state_failures == 0)
    stalled = t.stall_max_ms <= opts.stall_limit_ms
    result.check("event loop stall (max /health wait) ms", t.stall_max_ms, f"<= {opts.stall_limit_ms:.0f}", stalled)
    if not stalled:
        result.find("stall", "event loop", f"/health waited {t.stall_max_ms:.0f} ms", t.stall_during)
    result.check("tracebacks in the log", tracebacks, "0", tracebacks == 0)
    if exceptions:
        result.figure("exceptions in the log", dict(exceptions.most_common(6)))
    result.check("forged log lines", forged, "0", forged == 0)
    for name, gw in gws.items():
        peak = gw.peak_rss()
        first = gw.samples[0].rss_mb if gw.samples else 0.0
        result.check(f"RSS peak MB ({name})", peak, f"<= {opts.rss_limit_mb:.0f}", peak <= opts.rss_limit_mb)
        result.figure(f"RSS at start MB ({name})", first)
    result.extra["statuses"] = {str(k): v for k, v in t.statuses.items()}
    result.extra["missing_routes"] = dict(t.missing)


def _no_route(body: bytes) -> bool:
    """The gateway's 404 for a path it does not serve (any protocol's shape)."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    err = data.get("error") if isinstance(data, dict) else None
    message = err.get("message") if isinstance(err, dict) else err
    return isinstance(message, str) and message.startswith("no route")
