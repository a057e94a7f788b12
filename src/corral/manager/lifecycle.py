"""One record of a model's lifecycle, whoever runs it: corral's manager, llama-swap, or a
llama-server in router mode (llama.cpp's own, or the embedded engine's).

    ModelStatus(id, aliases, status, ctx, ttl_remaining, memory, source, error)

``status`` is one of ``loaded``, ``loading``, ``unloaded`` (a failed start is ``unloaded`` with
``error`` set). ``ttl_remaining`` is the idle seconds left before an automatic unload (None: no
TTL, or not known); ``memory`` the resident bytes of the model's process when known. The
functions here only translate: the caller fetches ``/running`` or ``/models`` (a driver does I/O).
``corral models``, the dashboard, MCP ``list_available_models`` and Ollama's ``/api/ps`` show it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .scheduler import Scheduler

__all__ = ["ModelStatus", "from_llamaswap_running", "from_router_models", "from_scheduler"]

Status = Literal["loaded", "loading", "unloaded"]


@dataclass(frozen=True, slots=True)
class ModelStatus:
    id: str
    status: Status
    aliases: tuple[str, ...] = ()
    ctx: int | None = None
    ttl_remaining: float | None = None
    memory: int | None = None  # bytes
    source: str = ""  # "manager", "llama-swap", "router"
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["aliases"] = list(self.aliases)
        return out


def _ctx_from_args(args: Sequence[str]) -> int | None:
    for i, a in enumerate(args):
        name, eq, value = a.partition("=")
        if name in ("-c", "--ctx-size"):
            raw = value if eq else (args[i + 1] if i + 1 < len(args) else "")
            try:
                return int(raw) or None  # 0 means "the model's own", unknown here
            except ValueError:
                return None
    return None


def _rss(pid: int | None) -> int | None:
    """Resident memory of a process, from /proc (Linux); None elsewhere or when it is gone."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def from_scheduler(scheduler: Scheduler, *, now: float | None = None) -> list[ModelStatus]:
    """Every model corral's manager knows, loaded or not."""
    from .process import State

    now = time.monotonic() if now is None else now
    procs = {p.spec.name: p for p in scheduler.processes()}
    out = []
    for name, spec in sorted(scheduler.settings.models.items()):
        proc = procs.get(name)
        state = proc.state if proc is not None else State.STOPPED
        status: Status = {State.READY: "loaded", State.STARTING: "loading"}.get(state, "unloaded")  # type: ignore[assignment]
        ttl = None
        idle_ttl = proc.idle_ttl() if proc is not None else None  # the spec's ttl, or a client's keep_alive
        if status == "loaded" and idle_ttl is not None and proc is not None:
            idle = 0.0 if proc.inflight > 0 else now - proc.last_used
            ttl = round(max(0.0, idle_ttl - idle), 1)
        out.append(
            ModelStatus(
                id=name,
                status=status,
                aliases=spec.aliases,
                ctx=_ctx_from_args(spec.args),
                ttl_remaining=ttl,
                memory=_rss(proc.pid) if proc is not None and status != "unloaded" else None,
                source="manager",
                error=(proc.error or None) if proc is not None and state is State.FAILED else None,
            )
        )
    return out


def from_llamaswap_running(running: Mapping[str, Any] | Sequence[Any],
                           models: Iterable[Mapping[str, Any]] = ()) -> list[ModelStatus]:  # fmt: skip
    """llama-swap's ``GET /running`` (``{"running": [{"model", "state", "ttl", …}]}``), and optionally
    its ``/v1/models`` entries so that models not running are listed as ``unloaded``."""
    items = running.get("running", []) if isinstance(running, Mapping) else running
    out: dict[str, ModelStatus] = {}
    for item in items:
        if not isinstance(item, Mapping) or not item.get("model"):
            continue
        state = str(item.get("state", ""))
        status: Status = "loaded" if state == "ready" else "loading" if state == "starting" else "unloaded"
        out[str(item["model"])] = ModelStatus(
            id=str(item["model"]),
            status=status,
            ctx=_ctx_from_args(str(item.get("cmd", "")).split()),
            source="llama-swap",
        )
    for m in models:
        mid = str(m.get("id", ""))
        if mid and mid not in out:
            aliases = m.get("aliases") if isinstance(m.get("aliases"), list) else []
            out[mid] = ModelStatus(mid, "unloaded", tuple(map(str, aliases or [])), source="llama-swap")
    return sorted(out.values(), key=lambda s: s.id)


def from_router_models(models: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> list[ModelStatus]:
    """A router-mode llama-server's ``GET /models`` (each entry's ``status.value``). Entries with no
    ``status`` (an ordinary llama-server's list) are left out: that server manages nothing."""
    items = models.get("data", []) if isinstance(models, Mapping) else models
    out = []
    for m in items:
        status_obj = m.get("status") if isinstance(m, Mapping) else None
        if not isinstance(status_obj, Mapping):
            continue
        value = str(status_obj.get("value", ""))
        status: Status = "loaded" if value in ("loaded", "sleeping") else "loading" if value in (
            "loading", "downloading") else "unloaded"  # fmt: skip
        error = f"failed to load (exit code {status_obj.get('exit_code')})" if status_obj.get("failed") else None
        aliases = m.get("aliases")
        aliases = aliases if isinstance(aliases, list) else []
        out.append(
            ModelStatus(
                id=str(m.get("id", "")),
                status=status,
                aliases=tuple(map(str, aliases)),
                ctx=_ctx_from_args([str(a) for a in status_obj.get("args") or []]),
                source="router",
                error=error,
            )
        )
    return out
