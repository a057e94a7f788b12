"""What the gateway tells its operator: Prometheus metrics and one log line per request
(no message content, no keys)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["Observer", "RequestRecord"]

log = logging.getLogger("corral.gateway")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass(slots=True)
class RequestRecord:
    route: str
    model: str = ""
    provider: str = ""
    status: int = 200
    prompt_tokens: int = 0
    completion_tokens: int = 0
    started: float = field(default_factory=time.perf_counter)
    first_byte: float | None = None
    on_finish: list[Callable[[], None]] = field(default_factory=list)  # e.g. a managed model's lease

    def mark_first_byte(self) -> None:
        if self.first_byte is None:
            self.first_byte = time.perf_counter()

    def usage_from(self, payload: bytes) -> None:
        """Pick token counts out of an OpenAI/Anthropic body or SSE chunk that mentions usage (or
        llama.cpp's timings, which every llama-server answer ends with)."""
        if b'"usage"' not in payload and b'"timings"' not in payload:
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
            timings = data.get("timings") if isinstance(data, dict) else None
            if not isinstance(usage, dict) and isinstance(timings, dict):
                usage = {
                    "prompt_tokens": int(timings.get("prompt_n", 0)) + int(timings.get("cache_n", 0)),
                    "completion_tokens": int(timings.get("predicted_n", 0)),
                }
            if not isinstance(usage, dict):
                continue
            prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
            completion = usage.get("completion_tokens", usage.get("output_tokens"))
            if isinstance(prompt, int):
                self.prompt_tokens = prompt
            if isinstance(completion, int):
                self.completion_tokens = completion


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

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def done(self, rec: RequestRecord) -> None:
        elapsed = time.perf_counter() - rec.started
        status = str(rec.status)
        self.requests.labels(rec.route, rec.model, rec.provider, status).inc()
        if rec.status >= 400:
            self.errors.labels(rec.route, rec.model, rec.provider, status).inc()
        if rec.prompt_tokens:
            self.tokens.labels(rec.model, rec.provider, "prompt").inc(rec.prompt_tokens)
        if rec.completion_tokens:
            self.tokens.labels(rec.model, rec.provider, "completion").inc(rec.completion_tokens)
        self.latency.labels(rec.route, rec.model, rec.provider).observe(elapsed)
        ttft_ms = ""
        if rec.first_byte is not None:
            ttft = rec.first_byte - rec.started
            self.ttft.labels(rec.model, rec.provider).observe(ttft)
            ttft_ms = f" ttft_ms={ttft * 1000:.1f}"
        if log.isEnabledFor(logging.INFO):
            log.info(
                "%s model=%s provider=%s status=%d tokens=%d/%d latency_ms=%.1f%s",
                rec.route, rec.model or "-", rec.provider or "-", rec.status,
                rec.prompt_tokens, rec.completion_tokens, elapsed * 1000, ttft_ms,
            )  # fmt: skip
