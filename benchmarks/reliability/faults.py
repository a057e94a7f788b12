"""Faults: every fault of the fault backend, behind each provider type corral relays to (openai,
llamacpp, anthropic), asked for through each caller route (chat and messages, streamed or not,
completions, embeddings), one request per scenario, all at once.

Each fault must reach the client as an error in its protocol: a 4xx/5xx with the protocol's error
body, or, once a stream has started, an error event. Never a clean success, never a stream that just
stops (what an SDK takes for a short answer), never an event that is not JSON, never a hang. The
gateway must log the request with an error status. The ``ok`` host is the control: complete answers.

Also measured: upstream attempts per client call (retries), time to the answer, and whether a 429's
``Retry-After`` reaches the client.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .backend import FAULTS, MARKER, FaultBackend
from .gateway import GatewayProcess
from .report import Result
from .shapes import error_shape_problem, protocol_for, stream_outcome

__all__ = ["CALLS", "PROVIDER_TYPES", "FaultOptions", "Outcome", "Scenario", "run_faults", "scenarios"]

PROVIDER_TYPES = ("openai", "llamacpp", "anthropic")
# caller route id -> (path, streamed)
CALLS: dict[str, tuple[str, bool]] = {
    "chat": ("/v1/chat/completions", False),
    "chat-stream": ("/v1/chat/completions", True),
    "messages": ("/v1/messages", False),
    "messages-stream": ("/v1/messages", True),
    "completions": ("/v1/completions", False),
    "embeddings": ("/v1/embeddings", False),
}
_LOG_LINE = re.compile(r" (/\S+) model=(\S+) provider=\S+ status=(\d+) ")


@dataclass(frozen=True, slots=True)
class Scenario:
    fault: str
    ptype: str
    call: str

    @property
    def model(self) -> str:
        return f"{self.fault}-{self.ptype}-{self.call}"

    @property
    def provider(self) -> str:
        return f"{self.fault}_{self.ptype}".replace("-", "_")

    @property
    def id(self) -> str:
        return f"{self.fault}/{self.ptype}/{self.call}"


@dataclass
class Outcome:
    scenario: Scenario
    kind: str = ""  # success, error, wrong-shape, internal-500, truncated, malformed, relayed-200, hang, dropped
    status: int = 0
    detail: str = ""
    seconds: float = 0.0
    retry_after: str | None = None
    attempts: int = 0  # upstream requests the backend got for this call
    logged: list[int] = field(default_factory=list)  # statuses in the gateway log for this model


@dataclass
class FaultOptions:
    faults: tuple[str, ...] = FAULTS
    ptypes: tuple[str, ...] = PROVIDER_TYPES
    calls: tuple[str, ...] = tuple(CALLS)
    provider_timeout: float = 2.0  # the providers' read timeout: bounds the hang faults
    client_timeout: float = 90.0  # no answer by then is a hang
    workers: int = 32


# What corral cannot ask of a provider type at all (a clear 400, tested elsewhere): not scenarios here.
UNSUPPORTED = {("anthropic", "completions"), ("anthropic", "embeddings")}


def scenarios(opts: FaultOptions) -> list[Scenario]:
    return [Scenario(f, t, c) for f in opts.faults for t in opts.ptypes for c in opts.calls
            if (t, c) not in UNSUPPORTED]  # fmt: skip


def fault_config(backend: FaultBackend, opts: FaultOptions, todo: list[Scenario]) -> dict[str, Any]:
    providers: dict[str, Any] = {}
    models: dict[str, Any] = {}
    for s in todo:
        root = backend.base(s.fault)
        providers[s.provider] = {"type": s.ptype, "base_url": f"{root}/v1" if s.ptype == "openai" else root,
                                 "api_key": "battery-upstream-key", "timeout": opts.provider_timeout}  # fmt: skip
        models[s.model] = {"provider": s.provider}
    first = next(iter(providers))
    return {"default_provider": first, "providers": providers, "models": models}


def _body(s: Scenario) -> dict[str, Any]:
    msgs = [{"role": "user", "content": "hi"}]
    stream = CALLS[s.call][1]
    if s.call.startswith("messages"):
        return {"model": s.model, "max_tokens": 16, "messages": msgs, "stream": stream}
    if s.call == "completions":
        return {"model": s.model, "prompt": "hi", "max_tokens": 16}
    if s.call == "embeddings":
        return {"model": s.model, "input": "hi"}
    return {"model": s.model, "messages": msgs, "max_tokens": 16, "stream": stream}


def _one(s: Scenario, http: httpx.Client) -> Outcome:
    out = Outcome(s)
    path = CALLS[s.call][0]
    protocol = protocol_for(path)
    t0 = time.monotonic()
    try:
        with http.stream("POST", path, json=_body(s)) as resp:
            body = resp.read()
        out.status = resp.status_code
        out.retry_after = resp.headers.get("retry-after")
        ctype = resp.headers.get("content-type", "")
    except httpx.TimeoutException:
        out.kind, out.detail = "hang", f"no answer within {http.timeout.read} s"
        return out
    except httpx.TransportError as exc:
        out.kind, out.detail = "dropped", f"{type(exc).__name__}: {exc}"
        return out
    finally:
        out.seconds = time.monotonic() - t0
    if out.status >= 400:
        problem = error_shape_problem(protocol, out.status, ctype, body)
        out.kind = "wrong-shape" if problem else "error"
        if out.status == 500 and MARKER.encode() not in body:
            out.kind = "internal-500"  # the gateway's own failure, not an upstream error it mapped
        out.detail = problem or body[:160].decode("utf-8", "replace")
    elif "text/event-stream" in ctype:
        end, why = stream_outcome(protocol, body)
        out.kind = {"complete": "success"}.get(end, end)
        out.detail = why
    else:
        try:
            json.loads(body)
            out.kind, out.detail = "success", f"{out.status} JSON"
        except ValueError:
            out.kind, out.detail = "relayed-200", f"{out.status} with a body that is not JSON: {body[:60]!r}"
    return out


def run_faults(opts: FaultOptions, workdir: Path) -> Result:
    result = Result("faults")
    started = time.monotonic()
    todo = scenarios(opts)
    with FaultBackend() as backend:
        gw = GatewayProcess(fault_config(backend, opts, todo), workdir=workdir)
        with gw, httpx.Client(base_url=gw.url, timeout=opts.client_timeout,
                              limits=httpx.Limits(max_connections=opts.workers)) as http:  # fmt: skip
            with ThreadPoolExecutor(opts.workers) as pool:
                outcomes = list(pool.map(lambda s: _one(s, http), todo))
            time.sleep(0.3)  # the gateway logs a request on the loop pass after its answer
        attempts = Counter(_model_of(s.body) for s in backend.seen)
        logged: dict[str, list[int]] = {}
        for m in _LOG_LINE.finditer(gw.log_text()):
            logged.setdefault(m.group(2), []).append(int(m.group(3)))
    for o in outcomes:
        o.attempts = attempts.get(o.scenario.model, 0)
        o.logged = logged.get(o.scenario.model, [])
    result.seconds = time.monotonic() - started
    summarise(result, outcomes)
    result.extra["outcomes"] = {o.scenario.id: {k: v for k, v in o.__dict__.items() if k != "scenario"}
                                for o in outcomes}  # fmt: skip
    return result


def _model_of(body: bytes) -> str:
    m = re.search(rb'"model"\s*:\s*"([^"]*)"', body)
    return m.group(1).decode() if m else ""


def summarise(result: Result, outcomes: list[Outcome]) -> None:
    control = [o for o in outcomes if o.scenario.fault == "ok"]
    faulty = [o for o in outcomes if o.scenario.fault != "ok"]
    bad_control = [o for o in control if o.kind != "success"]
    result.check("control (ok host) complete", f"{len(control) - len(bad_control)}/{len(control)}", "all",
                 not bad_control)  # fmt: skip
    for o in bad_control:
        result.find("control-failed", o.scenario.id, f"{o.kind} {o.status}: {o.detail}")
    kinds = Counter(o.kind for o in faulty)
    result.figure("fault outcomes", dict(kinds.most_common()))
    for kind, label in (("success", "faults answered as a clean success"),
                        ("truncated", "streams cut, relayed as success (no error event)"),
                        ("malformed", "non-JSON events relayed"), ("relayed-200", "non-JSON bodies relayed as 200"),
                        ("wrong-shape", "errors outside the caller's shape"), ("hang", "hangs"),
                        ("internal-500", "corral-made 500s (internal errors)"),
                        ("dropped", "connections dropped without an answer")):  # fmt: skip
        bad = [o for o in faulty if o.kind == kind]
        result.check(label, len(bad), "0", not bad)
        for o in bad:
            result.find(kind, o.scenario.id, f"{o.status} {o.detail}",
                        f"POST {CALLS[o.scenario.call][0]} via a {o.scenario.ptype} provider whose host does "
                        f"'{o.scenario.fault}' (benchmarks/reliability/backend.py)")  # fmt: skip
    unlogged = [o for o in outcomes if o.scenario.fault != "ok" and o.kind != "hang" and
                (not o.logged or min(o.logged) < 400)]  # fmt: skip
    result.check("faults logged with a success status", len(unlogged), "0", not unlogged)
    for o in unlogged:
        result.find(
            "logged-as-success", o.scenario.id, f"client got {o.kind} {o.status}; log says {o.logged or 'nothing'}"
        )
    r429 = [o for o in faulty if o.scenario.fault.startswith("r429") and o.status == 429]
    forwarded = [o for o in r429 if o.retry_after is not None]
    result.check(
        "429 answers carrying Retry-After", f"{len(forwarded)}/{len(r429)}", "all", len(forwarded) == len(r429)
    )
    # An upstream's "overloaded, come back later" is the client's to act on: kept as 503 (+ Retry-After).
    e503 = [o for o in faulty if o.scenario.fault == "e503" and o.kind != "hang"]
    kept = [o for o in e503 if o.status == 503 and o.retry_after is not None]
    result.check("upstream 503 answered 503 with Retry-After", f"{len(kept)}/{len(e503)}", "all",
                 len(kept) == len(e503))  # fmt: skip
    by_fault: dict[str, list[Outcome]] = {}
    for o in faulty:
        by_fault.setdefault(o.scenario.fault, []).append(o)
    result.figure("client statuses per fault", {f: "/".join(str(x) for x in sorted({o.status for o in os}))
                                                 for f, os in by_fault.items()})  # fmt: skip
    result.figure("upstream attempts per call (max)", {f: max(o.attempts for o in os) for f, os in by_fault.items()})
    result.figure(
        "seconds to the answer (max)", {f: round(max(o.seconds for o in os), 1) for f, os in by_fault.items()}
    )
