"""Measured benchmarks: prompt and generation tokens/s and time to first token.

Each run streams one chat request. Time to first token is taken on the wall clock; tokens/s come
from llama.cpp's own ``timings`` when the server sends them (they exclude HTTP and parsing), and
from the wall clock and the usage counts otherwise. Both figures are kept per run, so that the
one can be checked against the other.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..capabilities import Capability
from ..errors import ConfigurationError, CorralError
from ..events import ContentDelta, Done, ReasoningDelta, ToolCallDelta
from ..types import ChatResponse

if TYPE_CHECKING:
    from ..client import Client

__all__ = ["BenchResult", "BenchRun", "benchmark"]

Progress = Callable[[int, int, str], None]

# Plain prose: tokenizes like real input (a repeated single word would tokenize unnaturally).
_FILLER = (
    "The river rises in the hills above the old town and runs through farmland, forest and marsh "
    "before it reaches the sea. Boats once carried timber, grain and wool down to the harbour, and "
    "the mills along its banks ground flour for the whole valley. Today walkers follow the towpath, "
    "herons fish in the shallows, and in spring the water meadows flood and fill with birds. "
)
_INSTRUCTION = "\n\nContinue this description of the river in the same style."
_CHARS_PER_TOKEN = 4  # the usual estimate for English when the server cannot tokenize


@dataclass(frozen=True)
class BenchRun:
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: float
    total_ms: float
    prompt_tps: float | None
    generation_tps: float | None
    source: str  # "timings" | "wall_clock": where prompt_tps / generation_tps come from
    #: generation tokens/s on the wall clock, counted as llama.cpp counts them (the tokens after the
    #: first, over the time from the first token to the end), whatever ``source`` is
    wall_generation_tps: float | None = None
    #: llama.cpp's raw timings for this run (prompt_n, prompt_ms, predicted_per_second, …), if sent
    timings: dict[str, Any] | None = None


@dataclass(frozen=True)
class BenchResult:
    model: str | None
    provider: str
    runs: list[BenchRun]
    prompt_tokens: int  # median per run
    completion_tokens: int
    prompt_tps: float | None  # medians
    generation_tps: float | None
    ttft_ms: float
    total_ms: float
    source: str  # "timings" when llama.cpp timings were used for every run, else "wall_clock"
    endpoint: str = ""
    requested_prompt_tokens: int = 0
    max_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-able; the fields ``corral bench --json`` prints."""
        return asdict(self)


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(statistics.median(known)) if known else None


def _build_body(client: Client, target: int) -> str:
    """User text that makes the whole templated prompt about ``target`` tokens long: exact via the
    server's /tokenize (and /apply-template for the chat template's own tokens) when it has them."""
    filler = _FILLER * (target * _CHARS_PER_TOKEN // len(_FILLER) + 2)
    caps = client.provider.capabilities
    if Capability.TOKENIZE in caps:
        try:
            overhead = len(client.tokenize(_run_prefix("0" * 8) + _INSTRUCTION))
            if Capability.TEMPLATES in caps:
                sample = "x"
                templated = client.apply_template([{"role": "user", "content": sample}])
                overhead += len(client.tokenize(templated, add_special=True)) - len(client.tokenize(sample))
            ids = client.tokenize(filler)
            return client.detokenize(ids[: max(1, target - overhead)])
        except CorralError:  # a proxy that lists the routes but refuses them: estimate instead
            pass
    return filler[: max(1, target - 16) * _CHARS_PER_TOKEN]


def _run_prefix(nonce: str) -> str:
    return f"[{nonce}] "


def _extra_body(client: Client) -> dict[str, Any]:
    from ..providers.llamacpp import LlamaCppProvider

    if isinstance(client.provider, LlamaCppProvider):
        # llama.cpp only: no prompt cache (each run pays the full prompt) and no early stop (each
        # run generates exactly max_tokens). Other APIs reject unknown fields.
        return {"cache_prompt": False, "ignore_eos": True}
    return {}


def _one_run(
    client: Client, model: str | None, prompt: str, max_tokens: int, extra: dict[str, Any]
) -> tuple[BenchRun, str]:
    """One measured request; also returns the model name the server answered with."""
    messages = [{"role": "user", "content": prompt}]
    first: float | None = None
    response: ChatResponse | None = None
    started = time.perf_counter()
    if Capability.STREAM in client.provider.capabilities:
        with client.stream(messages, model=model, max_tokens=max_tokens, extra_body=extra or None) as stream:
            for event in stream:
                if first is None and isinstance(event, (ContentDelta, ReasoningDelta, ToolCallDelta)):
                    first = time.perf_counter()
                elif isinstance(event, Done):
                    response = event.response
    else:  # no streaming: the first token is only seen with the last
        response = client.chat(messages, model=model, max_tokens=max_tokens, extra_body=extra or None)
    ended = time.perf_counter()
    assert response is not None  # a finished stream always ends with Done
    first = first or ended
    ttft_s, total_s = first - started, ended - started
    n_prompt, n_gen = response.usage.prompt_tokens, response.usage.completion_tokens
    gen_s = ended - first
    # The first token's time is in the TTFT; llama.cpp's predicted_per_second also leaves it out.
    wall_gen = (n_gen - 1) / gen_s if n_gen > 1 and gen_s > 0 else None
    wall_prompt = n_prompt / ttft_s if n_prompt and ttft_s > 0 else None
    t = response.timings
    if t is not None and t.predicted_per_second > 0:
        run = BenchRun(
            prompt_tokens=n_prompt,
            completion_tokens=n_gen,
            ttft_ms=ttft_s * 1000,
            total_ms=total_s * 1000,
            # a fully cached prompt has no processing rate of its own
            prompt_tps=t.prompt_per_second if t.prompt_tokens > 0 else None,
            generation_tps=t.predicted_per_second,
            source="timings",
            wall_generation_tps=wall_gen,
            timings=asdict(t),
        )
    else:
        run = BenchRun(n_prompt, n_gen, ttft_s * 1000, total_s * 1000, wall_prompt, wall_gen, "wall_clock", wall_gen)
    return run, response.model


def benchmark(
    client: Client,
    model: str | None = None,
    *,
    prompt_tokens: int = 128,
    max_tokens: int = 64,
    runs: int = 3,
    progress: Progress | None = None,
) -> BenchResult:
    """Measure ``runs`` streamed requests of about ``prompt_tokens`` prompt tokens and ``max_tokens``
    generated ones; the result holds every run and their medians. Errors are CorralErrors."""
    for name, value in (("prompt_tokens", prompt_tokens), ("max_tokens", max_tokens), ("runs", runs)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
    report = progress or (lambda done, total, message: None)
    total = runs + 1
    report(0, total, "sizing the prompt")
    body = _build_body(client, prompt_tokens)
    extra = _extra_body(client)
    done: list[BenchRun] = []
    served = model or client.provider.config.model
    for i in range(runs):
        report(i + 1, total, f"run {i + 1}/{runs}")
        # A fresh nonce first: no two runs share a prefix a prompt cache could reuse.
        prompt = _run_prefix(uuid.uuid4().hex[:8]) + body + _INSTRUCTION
        run, answered = _one_run(client, model, prompt, max_tokens, extra)
        done.append(run)
        served = served or answered or None
    report(total, total, "done")
    provider = client.provider
    return BenchResult(
        model=served,
        provider=provider.name,
        runs=done,
        prompt_tokens=int(statistics.median(r.prompt_tokens for r in done)),
        completion_tokens=int(statistics.median(r.completion_tokens for r in done)),
        prompt_tps=_median([r.prompt_tps for r in done]),
        generation_tps=_median([r.generation_tps for r in done]),
        ttft_ms=float(statistics.median(r.ttft_ms for r in done)),
        total_ms=float(statistics.median(r.total_ms for r in done)),
        source="timings" if all(r.source == "timings" for r in done) else "wall_clock",
        endpoint=provider.endpoint,
        requested_prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
    )
