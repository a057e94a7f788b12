"""What Ollama's model routes answer, built from corral's knowledge: /api/tags, /api/ps and
/api/show entries for managed models (the GGUF header from :mod:`corral.manager.scan`, the
scheduler's children) and for models other providers serve. No network I/O; a GGUF header read.

Names: Ollama writes every name with a tag (``gemma:latest``); corral's names get ``:latest`` when
listed and are found with or without it (see :func:`display_name` and the routes' name lookup).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...manager.process import ManagedProcess
    from ...manager.scan import GGUFInfo

__all__ = [
    "FOREVER_S",
    "OLLAMA_API_VERSION",
    "context_length",
    "display_name",
    "gguf_info",
    "iso_time",
    "managed_capabilities",
    "model_details",
    "ps_entry",
    "show_managed",
    "tag_entry",
]

#: the Ollama version corral answers /api/version with: clients gate features on it (think levels,
#: tool_name, structured outputs), and ``codex --oss`` refuses to start below 0.13.4
OLLAMA_API_VERSION = "0.13.4"
#: how far ahead a model that is never unloaded "expires" (Ollama shows ~292 years: Go's max duration)
FOREVER_S = 292 * 365.25 * 86400
_CTX_FLAG = re.compile(r"^(?:-c|--ctx-size)(?:=(\d+))?$")


def display_name(name: str) -> str:
    """``name`` as Ollama lists it: with a tag (``:latest`` unless it has one)."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def iso_time(epoch: float) -> str:
    """RFC 3339 in UTC (Ollama's ``modified_at``/``expires_at``); far-future times stay valid."""
    seconds = int(epoch)
    try:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    except (OverflowError, OSError, ValueError):
        text = "2318-01-01T00:00:00"
    return f"{text}Z"


@lru_cache(maxsize=256)
def _read(path: str, mtime_ns: int, size: int) -> GGUFInfo:
    from ...manager.scan import read_gguf

    return read_gguf(path)


def gguf_info(path: Path) -> GGUFInfo | None:
    """The scan's reading of a GGUF file, cached while the file is unchanged (None: not there)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _read(str(path), st.st_mtime_ns, st.st_size)


def _file_stamp(path: Path) -> tuple[float, int]:
    try:
        st = os.stat(path)
    except OSError:
        return 0.0, 0
    return st.st_mtime, st.st_size


def _digest(*parts: object) -> str:
    """A stable identifier (not a content hash: hashing gigabytes per listing is not affordable)."""
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()


def model_details(info: GGUFInfo | None) -> dict[str, Any]:
    arch = info.architecture if info is not None else None
    return {
        "parent_model": "",
        "format": "gguf" if info is not None and info.error is None else "",
        "family": arch or "",
        "families": [arch] if arch else None,
        "parameter_size": (info.parameters if info is not None else None) or "",
        "quantization_level": (info.quantization if info is not None else None) or "",
    }


def tag_entry(name: str, *, path: Path | None = None, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One /api/tags entry: a managed model (``path``: its GGUF) or another provider's."""
    if path is not None:
        mtime, size = _file_stamp(path)
        info = gguf_info(path)
        size = info.size if info is not None and info.size else size
        digest = _digest(path, size, mtime)
        details = model_details(info)
    else:
        mtime, size, digest = time.time(), 0, _digest(name)
        details = dict(details) if details is not None else model_details(None)
    shown = display_name(name)
    return {"name": shown, "model": shown, "modified_at": iso_time(mtime), "size": size, "digest": digest,
            "details": details}  # fmt: skip


def context_length(args: Sequence[str]) -> int | None:
    """The ``-c``/``--ctx-size`` a managed model's llama-server gets, if its args set one."""
    for i, arg in enumerate(args):
        m = _CTX_FLAG.match(arg)
        if m is None:
            continue
        value = m.group(1) or (args[i + 1] if i + 1 < len(args) else "")
        if value.isdigit():
            return int(value)
    return None


def _rss_bytes(pid: int | None) -> int | None:
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


def ps_entry(proc: ManagedProcess, names: Iterable[str]) -> dict[str, Any]:
    """One /api/ps entry for a managed child: memory (its resident size, else the file's), when it
    will be unloaded if left idle, and corral's state of it (starting, ready, stopping)."""
    spec = proc.spec
    entry = tag_entry(spec.name, path=spec.gguf)
    ttl = proc.idle_ttl()
    if ttl is None:
        expires = time.time() + FOREVER_S
    else:
        idle_since = time.monotonic() if proc.inflight > 0 else proc.last_used
        expires = time.time() + (idle_since + ttl - time.monotonic())
    rss = _rss_bytes(proc.pid)
    entry.pop("modified_at")
    entry |= {"size": rss if rss is not None else entry["size"], "size_vram": 0, "expires_at": iso_time(expires),
              "state": proc.state.value, "aliases": [display_name(n) for n in names if n != spec.name]}  # fmt: skip
    ctx = context_length(spec.args)
    if ctx is not None:
        entry["context_length"] = ctx
    return entry


def managed_capabilities(info: GGUFInfo | None, args: Sequence[str]) -> list[str]:
    """What Ollama's ``capabilities`` would say of a managed model, from its GGUF and its args."""
    if info is not None and info.metadata.get("general.type") == "embedding":
        return ["embedding"]
    caps = ["completion"]
    template = (info.template if info is not None else None) or ""
    if "tool" in template and "--jinja" in args:
        caps.append("tools")
    meta = info.metadata if info is not None else {}
    if any(k in meta for k in ("tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id")):
        caps.append("insert")
    if any(a in ("--mmproj", "-mm") or a.startswith("--mmproj=") for a in args):
        caps.append("vision")
    if "<think>" in template or "enable_thinking" in template or "reasoning_effort" in template:
        caps.append("thinking")
    return caps


def _shown_value(value: Any) -> Any:
    return [] if isinstance(value, list) and len(value) > 5 else value  # as Ollama does unless verbose


def show_managed(info: GGUFInfo | None, args: Sequence[str], path: Path, *, verbose: bool) -> dict[str, Any]:
    """/api/show for a managed model: the GGUF header's metadata as ``model_info``, its chat
    template (Jinja, not Ollama's Go templates), and the parameters corral starts it with."""
    meta = dict(info.metadata) if info is not None else {}
    meta.pop("general.name", None)
    model_info = meta if verbose else {k: _shown_value(v) for k, v in meta.items()}
    params = []
    ctx = context_length(args)
    if ctx is not None:
        params.append(f"{'num_ctx':<30} {ctx}")
    mtime, _ = _file_stamp(path)
    return {
        "license": str(meta.get("general.license", "")),
        "modelfile": f"# corral runs this GGUF with llama-server\nFROM {path.name}\n",
        "parameters": "\n".join(params),
        "template": (info.template if info is not None else None) or "",
        "details": model_details(info),
        "model_info": model_info,
        "capabilities": managed_capabilities(info, args),
        "modified_at": iso_time(mtime),
    }
