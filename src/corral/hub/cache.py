"""Where pulled models live, and how they are found by name (no network).

    <corral cache>/hub/<org>--<repo>/<the repo's file paths>      the GGUF files, verified
    <corral cache>/hub/<org>--<repo>/<file>.<sha256[:16]>.partial a download in progress (kept for resume)
    <corral cache>/hub/<org>--<repo>/.corral/<TAG>.json           one manifest per pulled model

A model exists only once its manifest is written, after every file was verified: a truncated or
corrupt download is never found by name. The manifest names the model ``org/repo:TAG``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from .refs import HubRef, parse_ref

__all__ = ["PulledModel", "find_local", "hub_dir", "local_models", "remove_model", "repo_dir"]


def hub_dir() -> Path:
    from ..manager.bundled import cache_dir

    return cache_dir() / "hub"


def repo_dir(repo: str) -> Path:
    return hub_dir() / repo.replace("/", "--")


def _manifest_name(tag: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", tag) + ".json"


@dataclass(frozen=True, slots=True)
class PulledModel:
    name: str  # org/repo:TAG
    repo: str
    tag: str
    revision: str
    files: tuple[dict[str, Any], ...]  # {"path", "size", "sha256"} of the model's parts
    mmproj_file: dict[str, Any] | None
    pulled_at: float
    manifest: Path

    @property
    def folder(self) -> Path:
        return self.manifest.parent.parent

    @property
    def path(self) -> Path:
        """The GGUF to load: the file, or a split model's first part."""
        return self.folder / str(self.files[0]["path"])

    @property
    def mmproj(self) -> Path | None:
        return self.folder / str(self.mmproj_file["path"]) if self.mmproj_file else None

    @property
    def size(self) -> int:
        extra = [self.mmproj_file] if self.mmproj_file else []
        return sum(int(f.get("size") or 0) for f in (*self.files, *extra))

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "repo": self.repo,
            "quant": self.tag,
            "revision": self.revision,
            "path": str(self.path),
            "mmproj": str(self.mmproj) if self.mmproj else None,
            "parts": len(self.files),
            "size": self.size,
            "pulled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.pulled_at)),
        }


def write_manifest(
    repo: str, tag: str, revision: str, files: list[dict[str, Any]], mmproj: dict[str, Any] | None
) -> PulledModel:
    folder = repo_dir(repo) / ".corral"
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "name": f"{repo}:{tag}",
        "repo": repo,
        "tag": tag,
        "revision": revision,
        "files": files,
        "mmproj": mmproj,
        "pulled_at": time.time(),
    }
    target = folder / _manifest_name(tag)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(target)  # atomic: a reader sees the old manifest or the new one, never half
    return _load(target)  # type: ignore[return-value]


def _load(manifest: Path) -> PulledModel | None:
    try:
        data = json.loads(manifest.read_text())
        return PulledModel(
            name=str(data["name"]),
            repo=str(data["repo"]),
            tag=str(data["tag"]),
            revision=str(data.get("revision") or ""),
            files=tuple(data["files"]),
            mmproj_file=data.get("mmproj"),
            pulled_at=float(data.get("pulled_at") or 0),
            manifest=manifest,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable manifest: not a model (corral doctor reports it)


def _manifests() -> Iterator[Path]:
    root = hub_dir()
    if root.is_dir():
        yield from sorted(root.glob("*/.corral/*.json"))


def local_models() -> list[PulledModel]:
    """Every pulled model whose files are all present, sorted by name."""
    found = [m for p in _manifests() if (m := _load(p)) is not None]
    return sorted((m for m in found if all((m.folder / f["path"]).is_file() for f in m.files)), key=lambda m: m.name)


def broken_manifests() -> list[Path]:
    """Manifests that cannot be read or whose files are gone (for ``corral doctor``)."""
    out = []
    for p in _manifests():
        m = _load(p)
        if m is None or not all((m.folder / f["path"]).is_file() for f in m.files):
            out.append(p)
    return out


def partial_downloads() -> list[Path]:
    root = hub_dir()
    return sorted(root.glob("*/**/*.partial")) if root.is_dir() else []


def find_local(ref: HubRef | str) -> PulledModel | None:
    """The pulled model a reference names: the exact tag (case-insensitive), or for a bare
    ``org/repo`` the one pulled quant (Q4_K_M first when there are several)."""
    if isinstance(ref, str):
        ref = parse_ref(ref)
    candidates = [m for m in local_models() if m.repo.lower() == ref.repo.lower()]
    tag = ref.file or ref.quant
    if tag:
        return next((m for m in candidates if m.tag.lower() == tag.lower()), None)
    if not candidates:
        return None
    return next((m for m in candidates if m.tag == "Q4_K_M"), candidates[0])


def remove_model(name: str) -> PulledModel:
    """Delete a pulled model's manifest and the files no other pulled model uses."""
    model = find_local(name)
    if model is None:
        known = ", ".join(m.name for m in local_models()) or "none"
        raise ConfigurationError(f"no pulled model {name!r} (pulled: {known})")
    model.manifest.unlink()
    still_used = {
        (m.folder / f["path"]).resolve()
        for m in local_models()
        for f in (*m.files, *([m.mmproj_file] if m.mmproj_file else []))
    }
    for f in (*model.files, *([model.mmproj_file] if model.mmproj_file else [])):
        path = model.folder / f["path"]
        if path.resolve() not in still_used:
            path.unlink(missing_ok=True)
            for partial in path.parent.glob(path.name + ".*.partial"):
                partial.unlink(missing_ok=True)
    _prune_empty(model.folder)
    return model


def _prune_empty(folder: Path) -> None:
    for d in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
