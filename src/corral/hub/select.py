"""Which files of a Hub repo make the model a reference asks for (no I/O).

Like llama-server's ``-hf``: the quantization tag is matched case-insensitively against file names
(and folder names); without one, Q4_K_M, else the first model file. A split GGUF
(``name-00001-of-00003.gguf``) is one model of all its parts. A multimodal projector (``mmproj*``)
is paired with the model when the repo has one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from ..errors import ModelNotFound
from .refs import HubRef

__all__ = ["RemoteFile", "Selection", "quant_of", "select_files"]

_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<total>\d{5})\.gguf$", re.I)
_QUANT = re.compile(
    r"(?<![A-Za-z0-9])((?:UD-)?I?Q\d(?:_[A-Z0-9]+)*|BF16|F16|F32|TQ\d_\d|MXFP4(?:_MOE)?)(?![A-Za-z0-9])", re.I
)
DEFAULT_QUANT = "Q4_K_M"


@dataclass(frozen=True, slots=True)
class RemoteFile:
    path: str  # inside the repo, "/"-separated
    size: int | None = None
    sha256: str | None = None  # the LFS oid: every GGUF on the Hub is an LFS file


@dataclass(frozen=True, slots=True)
class Selection:
    quant: str  # the tag the model is named by (upper-cased), or the file name
    parts: tuple[RemoteFile, ...]  # one file, or every part of a split GGUF in order
    mmproj: RemoteFile | None = None

    @property
    def files(self) -> tuple[RemoteFile, ...]:
        return (*self.parts, self.mmproj) if self.mmproj else self.parts


def _is_mmproj(path: str) -> bool:
    return "mmproj" in PurePosixPath(path).name.lower()


def quant_of(path: str) -> str | None:
    """The quantization tag in a file name (``Qwen2.5-0.5B-Instruct-Q4_K_M.gguf`` -> ``Q4_K_M``)."""
    name = PurePosixPath(path).name
    m = _SPLIT.match(name)
    stem = m["stem"] if m else name.removesuffix(".gguf")
    found = _QUANT.findall(stem)
    return found[-1].upper() if found else None


def _matches(path: str, tag: str) -> bool:
    pattern = rf"(?<![A-Za-z0-9]){re.escape(tag)}(?![A-Za-z0-9_])"
    return re.search(pattern, path.removesuffix(".gguf"), re.I) is not None


def _models(files: Sequence[RemoteFile]) -> list[tuple[RemoteFile, ...]]:
    """Model files grouped: a single GGUF, or a split GGUF's parts in order (incomplete sets dropped)."""
    singles: list[tuple[RemoteFile, ...]] = []
    splits: dict[tuple[str, str], dict[int, RemoteFile]] = {}
    for f in sorted(files, key=lambda f: f.path):
        if not f.path.lower().endswith(".gguf") or _is_mmproj(f.path):
            continue
        p = PurePosixPath(f.path)
        m = _SPLIT.match(p.name)
        if m:
            splits.setdefault((str(p.parent / m["stem"]), m["total"]), {})[int(m["part"])] = f
        else:
            singles.append((f,))
    for (_, total), parts in sorted(splits.items()):
        if sorted(parts) == list(range(1, int(total) + 1)):
            singles.append(tuple(parts[i] for i in sorted(parts)))
    return singles


def _pick_mmproj(files: Sequence[RemoteFile], quant: str) -> RemoteFile | None:
    projectors = sorted(
        (f for f in files if f.path.lower().endswith(".gguf") and _is_mmproj(f.path)), key=lambda f: f.path
    )
    for want in (quant, "F16", "BF16", "F32"):
        for f in projectors:
            if _matches(PurePosixPath(f.path).name, want):
                return f
    return projectors[0] if projectors else None


def select_files(ref: HubRef, files: Sequence[RemoteFile], *, mmproj: bool = True) -> Selection:
    models = _models(files)
    if not models:
        raise ModelNotFound(f"{ref.repo} has no GGUF model file", status=404, provider="huggingface")
    if ref.file:
        chosen = [m for m in models if m[0].path == ref.file or PurePosixPath(m[0].path).name == ref.file]
        if not chosen:
            raise ModelNotFound(f"{ref.repo} has no file {ref.file}", status=404, provider="huggingface")
        group, tag = chosen[0], ref.file
    else:
        tag = ref.quant or DEFAULT_QUANT
        chosen = [m for m in models if _matches(m[0].path, tag)]
        if not chosen and ref.quant is None:
            chosen = models[:1]  # llama-server's fallback: the first model file
            tag = quant_of(chosen[0][0].path) or PurePosixPath(chosen[0][0].path).name
        if not chosen:
            have = sorted({q for m in models if (q := quant_of(m[0].path))})
            listing = ", ".join(have) if have else ", ".join(PurePosixPath(m[0].path).name for m in models)
            raise ModelNotFound(
                f"{ref.repo} has no {ref.quant} file; it has: {listing}", status=404, provider="huggingface"
            )
        group = min(chosen, key=lambda m: len(m[0].path))  # "Q4_K_M" over "Q4_K_M-imat" variants
        tag = tag.upper()
    return Selection(tag, group, _pick_mmproj(files, tag) if mmproj else None)
