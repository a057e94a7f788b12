"""What the gateway tells its operator: Prometheus metrics, one log line per request, and the
last requests for the dashboard (no message content, no keys)."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["Observer", "RequestRecord"]

log = logging.getLogger("corral.gateway")

# `"usage": {...}` up to one level of nested objects (OpenAI's *_tokens_details), braces balanced.
_USAGE_VALUE = re.compile(rb"\s*:\s*(\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\})")

RECENT_REQUESTS = 200
SHOWN_NAME = 120  # characters of a client's model name the log, the dashboard and labels keep
DEFAULT_ROUTE_LABELS = 32  # names asked of the default route that get a metric label of their own


def shown_name(name: str) -> str:
    """A client-chosen string as logs, the dashboard and metrics may show it: at most SHOWN_NAME
    characters, control characters and lone surrogates escaped (no forged log lines, no encoding
    errors when a scrape or a page is written)."""
    if len(name) <= SHOWN_NAME and name.isascii() and name.isprintable():
        return name
    out = "".join(c if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF else _escaped(c) for c in name[:SHOWN_NAME])
    return out + ("…" if len(name) > SHOWN_NAME else "")


def _escaped(c: str) -> str:
    return c.encode("unicode_escape", "backslashreplace").decode("ascii")


_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass(slots=True)
class RequestRecord:
    route: str
    model: str = ""  # as the client asked; logged through shown_name (bounded, escaped)
    label: str = ""  # the model as routing resolved it: the only model name that becomes a metric label
    id: str = ""  # the x-request-id
    provider: str = ""
    status: int = 200
    prompt_tokens: int = 0
    completion_tokens: int = 0
    started: float = field(default_factory=time.perf_counter)
    first_byte: float | None = None
    finished: float | None = None  # set when the answer is complete; metrics are taken later
    answer: bytes | None = None  # a whole pass-through answer: its usage is read with the metrics
    on_finish: list[Callable[[], None]] = field(default_factory=list)  # e.g. a managed model's lease

    def model_from(self, body: Mapping[str, Any]) -> None:
        """The requested model name, for the log, taken before validation so a bad request has it too."""
        model = body.get("model")
        if isinstance(model, str):
            self.model = model

    def mark_first_byte(self) -> None:
        if self.first_byte is None:
            self.first_byte = time.perf_counter()

    def usage_from(self, payload: bytes) -> None:
        """Pick token counts out of an OpenAI/Anthropic body or SSE chunk that mentions usage (or
        llama.cpp's timings, which every llama-server answer ends with, or Ollama's final line)."""
        if b'"usage"' not in payload and b'"timings"' not in payload and b'"eval_count"' not in payload:
            return
        if payload[:1] == b"{" and b"\n" not in payload:
            # A whole one-line answer (non-streamed): parse only its usage object, not the content.
            at = payload.rfind(b'"usage"')
            found = _USAGE_VALUE.match(payload, at + 7) if at >= 0 else None
            if found is not None:
                try:
                    usage = json.loads(found.group(1))
                except ValueError:
                    usage = None
                if isinstance(usage, dict):
                    self._take(usage)
                    return
        for line in payload.split(b"\n"):
            line = line.strip()
            if line.startswith(b"data:"):
                line = line[5:].strip()
            if not line.startswith(b"{"):
                continue
            try:
                data = json.loads(line)
            except ValueError:
                continue
            usage = data.get("usage") if isinstance(data, dict) else None
            if usage is None and isinstance(data, dict) and isinstance(data.get("response"), dict):
                usage = data["response"].get("usage")  # a Responses API event: response.completed
            timings = data.get("timings") if isinstance(data, dict) else None
            if not isinstance(usage, dict) and isinstance(timings, dict):
                usage = {
                    "prompt_tokens": int(timings.get("prompt_n", 0)) + int(timings.get("cache_n", 0)),
                    "completion_tokens": int(timings.get("predicted_n", 0)),
                }
            elif not isinstance(usage, dict) and isinstance(data, dict) and "eval_count" in data:  # Ollama
                usage = {"prompt_tokens": data.get("prompt_eval_count"), "completion_tokens": data["eval_count"]}
            if isinstance(usage, dict):
                self._take(usage)

    def _take(self, usage: dict[str, Any]) -> None:
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        completion = usage.get("completion_tokens", usage.get("output_tokens"))
        if isinstance(prompt, int):
            self.prompt_tokens = prompt
        if isinstance(completion, int):
            self.completion_tokens = completion


class _Children:
    """One label set's child metrics, each made on first use (a child shows in the exposition from
    the moment it exists, so none is made before it has something to count)."""

    __slots__ = ("completion_tokens", "errors", "latency", "prompt_tokens", "requests", "ttft")

    def __init__(self) -> None:
        self.requests: Any = None
        self.errors: Any = None
        self.prompt_tokens: Any = None
        self.completion_tokens: Any = None
        self.latency: Any = None
        self.ttft: Any = None


class Observer:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("route", "model", "provider", "status")
        self.requests = Counter("corral_requests", "Requests served", labels, registry=self.registry)
        self.errors = Counter("corral_errors", "Requests answered with an error", labels, registry=self.registry)
        self.tokens = Counter(
            "corral_tokens", "Tokens processed", ("model", "provider", "kind"), registry=self.registry
        )
        self.latency = Histogram(
            "corral_request_seconds", "Request latency", ("route", "model", "provider"),
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.ttft = Histogram(
            "corral_time_to_first_byte_seconds", "Time to the first streamed byte", ("model", "provider"),
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self._cache: dict[tuple[str, str, str, int], _Children] = {}
        self._default_names: set[str] = set()  # the default route's own labels, at most DEFAULT_ROUTE_LABELS
        # The dashboard's live request log: the same fields as the log line, newest last.
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_REQUESTS)
        self.total = 0
        self.failed = 0

    def _label(self, rec: RequestRecord) -> str:
        """The model label: what routing resolved (a [models] or managed name); for the default
        route, the name asked for while there are few of them, else "other". Never raw client input:
        every label is bounded and escaped, and their number is too."""
        if rec.label != "default":
            return rec.label
        name = shown_name(rec.model) if rec.model else "default"
        if name in self._default_names:
            return name
        if len(self._default_names) < DEFAULT_ROUTE_LABELS and len(name) <= 64:
            self._default_names.add(name)
            return name
        return "other"

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def done(self, rec: RequestRecord) -> None:
        elapsed = (rec.finished if rec.finished is not None else time.perf_counter()) - rec.started
        if rec.answer is not None:
            rec.usage_from(rec.answer)
            rec.answer = None
        label = self._label(rec)
        # Labelled children are looked up once per (route, model, provider, status): labels() is a
        # locked lookup with argument checks, several µs each.
        key = (rec.route, label, rec.provider, rec.status)
        c = self._cache.get(key)
        if c is None:
            c = self._cache[key] = _Children()
            c.requests = self.requests.labels(rec.route, label, rec.provider, str(rec.status))
            c.latency = self.latency.labels(rec.route, label, rec.provider)
        c.requests.inc()
        if rec.status >= 400:
            if c.errors is None:
                c.errors = self.errors.labels(rec.route, label, rec.provider, str(rec.status))
            c.errors.inc()
        if rec.prompt_tokens:
            if c.prompt_tokens is None:
                c.prompt_tokens = self.tokens.labels(label, rec.provider, "prompt")
            c.prompt_tokens.inc(rec.prompt_tokens)
        if rec.completion_tokens:
            if c.completion_tokens is None:
                c.completion_tokens = self.tokens.labels(label, rec.provider, "completion")
            c.completion_tokens.inc(rec.completion_tokens)
        c.latency.observe(elapsed)
        ttft_ms = ""
        ttft: float | None = None
        if rec.first_byte is not None:
            ttft = rec.first_byte - rec.started
            if c.ttft is None:
                c.ttft = self.ttft.labels(label, rec.provider)
            c.ttft.observe(ttft)
            ttft_ms = f" ttft_ms={ttft * 1000:.1f}"
        self.total += 1
        self.failed += rec.status >= 400
        model = shown_name(rec.model)
        self.recent.append({
            "time": time.time() - (time.perf_counter() - rec.started), "route": rec.route, "model": model,
            "provider": rec.provider, "status": rec.status, "prompt_tokens": rec.prompt_tokens,
            "completion_tokens": rec.completion_tokens, "latency_ms": round(elapsed * 1000, 1),
            "ttft_ms": round(ttft * 1000, 1) if ttft is not None else None,
        })  # fmt: skip
        if log.isEnabledFor(logging.INFO):
            # The record made and handled directly: Logger.info would also walk the stack to find
            # the caller (findCaller), which is always this line.
            message = (
                f"{rec.route} model={model or '-'} provider={rec.provider or '-'} status={rec.status} "
                f"tokens={rec.prompt_tokens}/{rec.completion_tokens} latency_ms={elapsed * 1000:.1f}{ttft_ms}"
                f" id={rec.id or '-'}"
            )
            line = sys._getframe().f_lineno
            log.handle(log.makeRecord(log.name, logging.INFO, __file__, line, message, (), None, "done"))
