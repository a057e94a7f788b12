"""Honest model validation: does this model, on this server, really do what it is asked?

Each probe sends one small real request and passes only on evidence (a quote of the answer, the
server's error, the validation error). ``passed`` is None for a probe that does not apply.

Capabilities corral already knows are missing (it raises UnsupportedCapability before sending):
a probe of what the *model* can do (tools, structured output) fails, with corral's message as the
evidence; embeddings switched off on the server (a launch flag, not a property of the model) make
the embeddings probe skipped, with the reason. The report is stored (see corral.probe.store) so
that a model which failed the tool probe is no longer advertised as tool-capable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..capabilities import Capability
from ..errors import ConfigurationError, ConnectionFailed, CorralError, UnsupportedCapability
from ..events import ContentDelta, Done
from .schema_check import schema_errors
from .store import probe_endpoint, save_report

if TYPE_CHECKING:
    from ..client import Client

__all__ = ["PROBES", "ProbeResult", "ValidationReport", "quote", "validate"]

Progress = Callable[[int, int, str], None]
_QUOTE = 160  # characters of an answer quoted as evidence

PERSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        # bounded, so a small model cannot ramble past max_tokens inside a string
        "name": {"type": "string", "minLength": 1, "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city name"}},
            "required": ["city"],
        },
    },
}


@dataclass(frozen=True)
class ProbeResult:
    name: str
    passed: bool | None  # None = skipped (not applicable), with the reason in evidence
    evidence: str
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "skip" if self.passed is None else "pass" if self.passed else "fail"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "status": self.status,
            "evidence": self.evidence,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class ValidationReport:
    model: str | None
    provider: str
    probes: list[ProbeResult]
    gguf: dict[str, Any] | None
    endpoint: str = ""

    @property
    def passed(self) -> list[str]:
        return [p.name for p in self.probes if p.passed is True]

    @property
    def failed(self) -> list[str]:
        return [p.name for p in self.probes if p.passed is False]

    @property
    def skipped(self) -> list[str]:
        return [p.name for p in self.probes if p.passed is None]

    def probe(self, name: str) -> ProbeResult | None:
        return next((p for p in self.probes if p.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "provider": self.provider,
            "endpoint": self.endpoint,
            "passed": self.passed,
            "failed": self.failed,
            "skipped": self.skipped,
            "probes": [p.as_dict() for p in self.probes],
            "gguf": self.gguf,
        }


def quote(text: str | None) -> str:
    text = (text or "").strip().replace("\n", " ")
    return repr(text if len(text) <= _QUOTE else text[:_QUOTE] + "…")


# -- the probes: each sends one request and judges the answer ---------------------------------------------
def probe_chat(client: Client, model: str | None) -> ProbeResult:
    r = client.chat("In one short sentence: what colour is the sky?", model=model, max_tokens=16, temperature=0)
    detail = {"finish_reason": r.finish_reason, "completion_tokens": r.usage.completion_tokens, "model": r.model}
    if r.content.strip():
        return ProbeResult("chat", True, f"answered {quote(r.content)}", detail)
    return ProbeResult("chat", False, f"empty content (finish_reason={r.finish_reason!r})", detail)


def probe_stream(client: Client, model: str | None) -> ProbeResult:
    deltas: list[str] = []
    finish = ""
    with client.stream("Name three colours.", model=model, max_tokens=16, temperature=0) as stream:
        for event in stream:
            if isinstance(event, ContentDelta) and event.text:
                deltas.append(event.text)
            elif isinstance(event, Done):
                finish = event.response.finish_reason
    detail = {"content_deltas": len(deltas), "finish_reason": finish}
    text = f"{len(deltas)} content deltas, finish_reason={finish!r}: {quote(''.join(deltas))}"
    return ProbeResult("stream", len(deltas) >= 2 and bool(finish), text, detail)


def probe_json_schema(client: Client, model: str | None) -> ProbeResult:
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON_SCHEMA}}
    prompt = "Return a JSON object describing a person named Ada who is 36 years old."
    r = client.chat(prompt, model=model, max_tokens=64, temperature=0, response_format=fmt)
    errors = schema_errors(r.parsed, PERSON_SCHEMA)
    detail = {"output": r.content, "errors": errors}
    if errors:
        return ProbeResult("json_schema", False, f"{'; '.join(errors)} in {quote(r.content)}", detail)
    return ProbeResult("json_schema", True, f"valid against the schema: {quote(r.content)}", detail)


def probe_tool_call(client: Client, model: str | None) -> ProbeResult:
    fn = WEATHER_TOOL["function"]
    r = client.chat(
        "What is the weather in Paris right now?",
        model=model,
        max_tokens=64,
        temperature=0,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": fn["name"]}},
    )
    calls = [c for c in r.tool_calls if c.name == fn["name"]]
    detail: dict[str, Any] = {"tool_calls": [{"name": c.name, "arguments": c.arguments} for c in r.tool_calls]}
    if not calls:
        named = f" (called {[c.name for c in r.tool_calls]})" if r.tool_calls else ""
        return ProbeResult(
            "tool_call", False, f"no {fn['name']} call{named}; the model answered {quote(r.content)}", detail
        )
    call = calls[0]
    try:
        args = call.parsed_arguments()
    except ValueError as exc:
        return ProbeResult("tool_call", False, f"arguments are not JSON ({exc}): {quote(call.arguments)}", detail)
    errors = schema_errors(args, fn["parameters"])
    if errors:
        return ProbeResult("tool_call", False, f"{'; '.join(errors)} in {quote(call.arguments)}", detail)
    return ProbeResult("tool_call", True, f"{call.name}({call.arguments})", detail)


def probe_reasoning(client: Client, model: str | None) -> ProbeResult:
    r = client.chat("Think step by step: what is 17 + 25?", model=model, max_tokens=48, temperature=0)
    detail = {"reasoning": r.reasoning, "content": r.content}
    if r.reasoning and r.reasoning.strip():
        return ProbeResult("reasoning", True, f"reasoning {quote(r.reasoning)} apart from content", detail)
    return ProbeResult("reasoning", False, f"no reasoning returned apart from the content {quote(r.content)}", detail)


def probe_embeddings(client: Client, model: str | None) -> ProbeResult:
    e = client.embed(["The cat sat on the mat.", "Stock markets fell sharply."], model=model)
    dims = sorted({len(v) for v in e.vectors})
    detail = {"vectors": len(e.vectors), "dims": dims}
    finite = all(math.isfinite(x) for v in e.vectors for x in v)
    if len(e.vectors) == 2 and len(dims) == 1 and dims[0] > 0 and finite:
        return ProbeResult("embeddings", True, f"2 vectors of {dims[0]} dimensions", detail)
    return ProbeResult("embeddings", False, f"{len(e.vectors)} vectors, dimensions {dims}, finite={finite}", detail)


#: name -> probe, in the order they run
PROBES: dict[str, Callable[[Client, str | None], ProbeResult]] = {
    "chat": probe_chat,
    "stream": probe_stream,
    "json_schema": probe_json_schema,
    "tool_call": probe_tool_call,
    "reasoning": probe_reasoning,
    "embeddings": probe_embeddings,
}
#: what the server configures rather than the model offers: unsupported means skipped, not failed
_SERVER_SWITCHES = frozenset({Capability.EMBEDDINGS})


def _guarded(
    name: str, probe: Callable[[Client, str | None], ProbeResult], client: Client, model: str | None
) -> ProbeResult:
    try:
        return probe(client, model)
    except UnsupportedCapability as exc:
        skipped = exc.capability in {str(c) for c in _SERVER_SWITCHES}
        return ProbeResult(name, None if skipped else False, exc.message, {"error": type(exc).__name__})
    except ConnectionFailed as exc:
        return ProbeResult(name, False, str(exc), {"error": type(exc).__name__, "unreachable": True})
    except CorralError as exc:
        return ProbeResult(name, False, str(exc), {"error": type(exc).__name__})
    except Exception as exc:  # a report must come back whatever the server did; the type names the surprise
        return ProbeResult(name, False, f"{type(exc).__name__}: {exc}", {"error": type(exc).__name__})


def probe_gguf(path: Path) -> tuple[ProbeResult, dict[str, Any] | None]:
    """The file's metadata and integrity (header parses, every tensor inside the file)."""
    try:
        from ..manager.scan import read_gguf

        info = read_gguf(path)
    except ImportError as exc:  # the gguf package is the `manager` extra
        return ProbeResult("gguf_integrity", None, f"needs corral[manager]: {exc}"), None
    meta = info.as_dict()
    if info.error:
        return ProbeResult("gguf_integrity", False, info.error, {"path": str(path)}), meta
    what = ", ".join(str(x) for x in (info.architecture, info.parameters, info.quantization) if x)
    text = f"{what}; {info.tensor_count} tensors, {info.size} bytes, all inside the file"
    return ProbeResult("gguf_integrity", True, text, {"path": str(path)}), meta


def _gguf_target(model: str | None, gguf_path: str | Path | None, served: str | None) -> Path | None:
    if gguf_path is not None:
        return Path(gguf_path).expanduser()
    if model and model.endswith(".gguf"):
        return Path(model).expanduser()
    # llama-server reports its model as the GGUF path: check the file when it is on this machine.
    if served and served.endswith(".gguf") and Path(served).is_file():
        return Path(served)
    return None


def validate(
    client: Client,
    model: str | None = None,
    *,
    gguf_path: str | Path | None = None,
    progress: Progress | None = None,
    probes: Sequence[str] | None = None,
    store: bool = True,
    caller_paths: bool = True,
) -> ValidationReport:
    """Run the probes (all of ``PROBES``, or the named ones) against ``model`` and return the report;
    with ``store`` it is also kept in the user cache, where capability advertising reads it. With
    ``caller_paths=False`` (a remote caller, MCP) a model name is never read as a file path: only the
    GGUF the server itself reports is checked, so the tool cannot probe the machine's files."""
    names = list(PROBES) if probes is None else list(probes)
    unknown = [n for n in names if n not in PROBES]
    if unknown:
        raise ConfigurationError(f"unknown probe(s) {', '.join(unknown)}; known: {', '.join(PROBES)}")
    report = progress or (lambda done, total, message: None)
    provider = client.provider
    if not caller_paths:
        gguf_path = None
    wants_gguf = gguf_path is not None or bool(caller_paths and model and model.endswith(".gguf"))
    total = len(names) + (1 if wants_gguf else 0)
    results: list[ProbeResult] = []
    gguf_meta: dict[str, Any] | None = None
    target = _gguf_target(model if caller_paths else None, gguf_path, None)
    if target is not None:
        report(0, total, "gguf_integrity")
        result, gguf_meta = probe_gguf(target)
        results.append(result)
    unreachable: str | None = None
    for name in names:
        report(len(results), total, name)
        if unreachable is not None:  # no point waiting for a timeout once per probe
            results.append(ProbeResult(name, None, f"not run: {unreachable}"))
            continue
        result = _guarded(name, PROBES[name], client, model)
        if result.detail.get("unreachable"):
            unreachable = result.evidence
        results.append(result)
    served = model or provider.config.model or _answered_model(results) or _served_model(client, unreachable)
    reported = served if caller_paths else _answered_model(results) or _served_model(client, unreachable)
    if target is None:
        # the server named its model as a local GGUF file: include its metadata too
        target = _gguf_target(None, None, reported)
        if target is not None:
            result, gguf_meta = probe_gguf(target)
            results.insert(0, result)
    report(total, total, "done")
    out = ValidationReport(served, provider.name, results, gguf_meta, provider.endpoint)
    if store and served:
        # a read-only cache costs only the capability feed, never the report
        with suppress(OSError):
            save_report(probe_endpoint(provider), served, out.as_dict())
    return out


def _answered_model(results: list[ProbeResult]) -> str | None:
    for r in results:
        answered = r.detail.get("model")
        if isinstance(answered, str) and answered:
            return answered
    return None


def _served_model(client: Client, unreachable: str | None) -> str | None:
    """The one model the server lists, when no probe's answer named it (llama-server serves one)."""
    if unreachable is not None or Capability.MODELS not in client.provider.capabilities:
        return None
    try:
        found = client.models()
    except CorralError:
        return None
    return found[0].id if len(found) == 1 else None
