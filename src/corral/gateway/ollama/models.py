"""What Ollama's model routes answer, built from corral's knowledge: /api/tags, /api/ps and
/api/show entries for managed models (the GGUF header from :mod:`corral.manager.scan`, the
scheduler's children) and for models other providers serve. No network I/O; a GGUF header read.

Names: Ollama writes every name with a tag (``gemma:latest``); corral's names get ``:latest`` when
listed and are found with or without it (see :func:`display_name` and the routes' name lookup).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...manager.lifecycle import ModelStatus
    from ...manager.scan import GGUFInfo
    from ...manager.spec import ModelSpec

__all__ = [
    "FOREVER_S",
    "OLLAMA_API_VERSION",
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


def ps_entry(status: ModelStatus, spec: ModelSpec) -> dict[str, Any]:
    """One /api/ps entry from a managed model's lifecycle record: memory (its process's resident size,
    else the file's), when it will be unloaded if left idle, and its state (loaded or loading)."""
    entry = tag_entry(spec.name, path=spec.gguf)
    entry.pop("modified_at")
    left = status.ttl_remaining if status.ttl_remaining is not None else FOREVER_S
    entry |= {"size": status.memory or entry["size"], "size_vram": 0, "expires_at": iso_time(time.time() + left),
              "state": status.status, "aliases": [display_name(a) for a in status.aliases]}  # fmt: skip
    if status.ctx is not None:
        entry["context_length"] = status.ctx
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


def show_managed(
    info: GGUFInfo | None, args: Sequence[str], path: Path, ctx: int | None, *, verbose: bool
) -> dict[str, Any]:
    """/api/show for a managed model: the GGUF header's metadata as ``model_info``, its chat
    template (Jinja, not Ollama's Go templates), and the parameters corral starts it with."""
    meta = dict(info.metadata) if info is not None else {}
    meta.pop("general.name", None)
    model_info = meta if verbose else {k: _shown_value(v) for k, v in meta.items()}
    params = []
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
