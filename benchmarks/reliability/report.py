"""One result shape for every part of the battery: checks (a measured value against its target) and
findings (each with what to send to see it again), printed as one table or as JSON."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Check", "Finding", "Result", "table"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    value: Any
    target: str = ""  # "" for figures reported without a target
    ok: bool | None = None  # None: a figure, not a pass/fail check


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # e.g. "corral-5xx", "wrong-shape", "leak", "hang", "truncated-as-success"
    where: str  # route, fault or surface
    detail: str
    repro: str = ""  # what to send to see it again


@dataclass
class Result:
    part: str  # fuzz, faults, storm, soak, canary
    seconds: float = 0.0
    checks: list[Check] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # per-minute rows and such, for --json

    def check(self, name: str, value: Any, target: str = "", ok: bool | None = None) -> None:
        self.checks.append(Check(name, value, target, ok))

    def figure(self, name: str, value: Any) -> None:
        self.checks.append(Check(name, value))

    def find(self, kind: str, where: str, detail: str, repro: str = "", limit: int = 3) -> None:
        """Keep at most ``limit`` findings of one kind at one place: the table is for reading."""
        if sum(1 for f in self.findings if f.kind == kind and f.where == where) < limit:
            self.findings.append(Finding(kind, where, detail[:400], repro[:600]))

    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.ok is False]

    def get(self, name: str) -> Any:
        for c in self.checks:
            if c.name == name:
                return c.value
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def table(results: Iterable[Result], *, findings: int = 12) -> str:
    """One table: part, check, value, target, verdict; then the findings, with their repros."""
    rows: list[tuple[str, str, str, str, str]] = []
    notes: list[str] = []
    for r in results:
        rows.append((r.part, f"({r.seconds:.0f} s)", "", "", ""))
        for c in r.checks:
            verdict = "" if c.ok is None else ("ok" if c.ok else "FAIL")
            rows.append(("", c.name, _fmt(c.value), c.target, verdict))
        for f in r.findings[:findings]:
            notes.append(
                f"[{r.part}] {f.kind} @ {f.where}: {f.detail}" + (f"\n    repro: {f.repro}" if f.repro else "")
            )
        if len(r.findings) > findings:
            notes.append(f"[{r.part}] ... {len(r.findings) - findings} more findings (--json lists them all)")
    head = ("part", "check", "value", "target", "")
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(5)]
    widths[2] = min(widths[2], 60)
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    lines.append("-" * len(lines[0]))
    for row in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if notes:
        lines += ["", "findings:", *notes]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"
    if isinstance(value, dict):
        text = " ".join(f"{k}:{_fmt(v)}" for k, v in value.items())
        return text if len(text) <= 60 else text[:57] + "..."
    text = str(value)
    return text if len(text) <= 90 else text[:87] + "..."
