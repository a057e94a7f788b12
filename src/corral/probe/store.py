"""Stored validation reports: what ``corral validate`` found, kept in the user cache so that the
capabilities corral *advertises* for a model can reflect it (see corral.probe.capabilities.advertised).

One JSON file per (endpoint, model) under ``cache_dir()/probes``, written atomically. Nothing is
read at import; the files are read only when capabilities are computed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..capabilities import Capability

if TYPE_CHECKING:
    from ..providers.base import Provider

__all__ = ["PROBE_CAPABILITY", "failed_capabilities", "load_report", "probe_endpoint", "probes_dir", "save_report"]

#: a failed probe withdraws the capability from what is advertised for that model; only probes that
#: test a property of the model (not of the server's flags) are mapped.
PROBE_CAPABILITY: dict[str, Capability] = {
    "tool_call": Capability.TOOLS,
    "json_schema": Capability.STRUCTURED_OUTPUT,
    "embeddings": Capability.EMBEDDINGS,
}


def probes_dir() -> Path:
    from ..manager.bundled import cache_dir

    return cache_dir() / "probes"


def probe_endpoint(provider: Provider) -> str:
    """The endpoint part of a report's key. The embedded engine gets a new port on every start, so
    its reports are keyed by the model (the GGUF path the server reports) alone."""
    return "embedded" if provider.config.type == "embedded" else provider.endpoint


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _path(endpoint: str, model: str) -> Path:
    return probes_dir() / f"{_digest(endpoint)}-{_digest(model)}.json"


def save_report(endpoint: str, model: str, report: dict[str, Any]) -> Path:
    """Write the report atomically (a reader never sees half a file); returns its path."""
    target = _path(endpoint, model)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps({"endpoint": endpoint, "model": model, "report": report}, indent=2, default=str)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_report(endpoint: str, model: str | None) -> dict[str, Any] | None:
    """The stored report for (endpoint, model); with no model, the newest one for the endpoint
    (a llama-server serves one model, and callers often do not name it)."""
    try:
        if model:
            candidates = [_path(endpoint, model)]
        else:
            candidates = sorted(
                probes_dir().glob(f"{_digest(endpoint)}-*.json"), key=lambda p: p.stat().st_mtime, reverse=True
            )
        for path in candidates:
            data = json.loads(path.read_text(encoding="utf-8"))
            report = data.get("report") if isinstance(data, dict) else None
            if isinstance(report, dict) and data.get("endpoint") == endpoint:
                return report
    except (OSError, ValueError):  # no cache yet, unreadable or half-migrated: nothing is known
        return None
    return None


def failed_capabilities(endpoint: str, model: str | None) -> frozenset[Capability]:
    """Capabilities a stored report found missing for this model (failed, not skipped, probes)."""
    report = load_report(endpoint, model)
    if report is None:
        return frozenset()
    failed = report.get("failed")
    names = failed if isinstance(failed, list) else []
    return frozenset(PROBE_CAPABILITY[n] for n in names if n in PROBE_CAPABILITY)
