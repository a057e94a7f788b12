"""GGUF discovery: which model files a folder holds, what they are, and whether they are whole.

The type tables (value types, tensor types, block sizes, file types) come from the ``gguf``
package. Its ``GGUFReader`` builds a numpy view for every element of every array, which takes
~13 s on a 250 MB model (262 144 vocabulary strings); a scan must answer in well under a second
per file, so the header is walked here and arrays we do not need are skipped, not materialised.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = ["GGUFInfo", "read_gguf", "scan_dirs"]

_MAGIC = b"GGUF"
_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<total>\d{5})$")
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_KEEP_ARRAY_MAX = 64  # small arrays (tags, languages) are kept; vocabularies are skipped


class GGUFError(ValueError):
    """The file is not a GGUF model corral can read (bad magic, truncated, unsupported)."""


@dataclass(frozen=True, slots=True)
class GGUFInfo:
    name: str  # the routable name: the file stem, without a split suffix
    path: Path
    size: int  # bytes on disk, all split parts together
    architecture: str | None = None
    context_length: int | None = None
    quantization: str | None = None
    chat_template: bool = False
    parameters: str | None = None  # general.size_label, e.g. "7B"
    split_parts: int = 1
    tensor_count: int = 0
    version: int = 0
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)
    template: str | None = field(default=None, repr=False)  # tokenizer.chat_template, kept out of metadata
    error: str | None = None  # set when the file is unreadable or corrupt

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "size": self.size,
            "architecture": self.architecture,
            "context_length": self.context_length,
            "quantization": self.quantization,
            "chat_template": self.chat_template,
            "parameters": self.parameters,
            "split_parts": self.split_parts,
            "error": self.error,
        }


class _Cursor:
    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: Any, end: int) -> None:
        self.buf, self.pos, self.end = buf, 0, end

    def need(self, n: int) -> None:
        if n < 0 or self.pos + n > self.end:
            raise GGUFError(f"truncated header at byte {self.pos}")

    def scalar(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        self.need(size)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.scalar("<Q")
        self.need(n)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.scalar("<Q")
        self.need(n)
        self.pos += n

    def value(self, vtype: int) -> Any:
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, count = self.scalar("<I"), self.scalar("<Q")
            if count > _KEEP_ARRAY_MAX:
                self.skip_array(etype, count)
                return _Skipped(count)
            return [self.value(etype) for _ in range(count)]
        fmt = _SCALARS.get(vtype)
        if fmt is None:
            raise GGUFError(f"unknown metadata value type {vtype} at byte {self.pos}")
        return self.scalar(fmt)

    def skip_array(self, etype: int, count: int) -> None:
        if etype == _STRING:
            for _ in range(count):
                self.skip_string()
        elif etype in _SCALARS:
            n = struct.calcsize(_SCALARS[etype]) * count
            self.need(n)
            self.pos += n
        else:  # nested arrays: rare, walk them
            for _ in range(count):
                self.value(etype)


@dataclass(frozen=True, slots=True)
class _Skipped:
    count: int


def read_gguf(path: str | os.PathLike[str], *, name: str | None = None) -> GGUFInfo:
    """Metadata and an integrity check (header parses, every tensor's data lies inside the file).

    For a split model (``-00001-of-0000N``) every part must be present and whole: a missing or
    truncated later part would only show when llama-server fails to load it.
    """
    p = Path(path)
    stem, parts = _split_stem(p)
    label = name or stem
    try:
        size = p.stat().st_size
    except OSError as e:
        return GGUFInfo(label, p, 0, split_parts=parts, error=f"cannot read: {e.strerror or e}")
    total = size
    try:
        info = _read(p, size, label, parts)
        for q in _other_parts(p, parts):
            try:
                part_size = q.stat().st_size
            except OSError as e:
                raise GGUFError(f"split part {q.name}: {e.strerror or e}") from None
            total += part_size
            try:
                _read(q, part_size, label, parts)
            except GGUFError as e:
                raise GGUFError(f"split part {q.name}: {e}") from None
        return replace(info, size=total)
    except GGUFError as e:
        return GGUFInfo(label, p, total, split_parts=parts, error=str(e))
    except (OSError, ValueError) as e:
        return GGUFInfo(label, p, total, split_parts=parts, error=f"cannot read: {e}")


def _read(p: Path, size: int, name: str, parts: int) -> GGUFInfo:
    with p.open("rb") as f:
        if f.read(4) != _MAGIC:  # before the size check: a short text file is "not GGUF", not "too small"
            raise GGUFError("not a GGUF file (bad magic)")
        if size < 24:  # magic, version, tensor count, metadata count
            raise GGUFError(f"truncated: {size} bytes, shorter than a GGUF header")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                return _parse(buf, size, p, name, size, parts)
            except RecursionError:  # arrays of arrays nested thousands deep: crafted, not a model
                raise GGUFError("metadata arrays nested too deeply") from None


def _parse(buf: Any, size: int, path: Path, name: str, total: int, parts: int) -> GGUFInfo:
    import gguf  # the type tables; imported here so that `import corral` stays light

    c = _Cursor(buf, size)
    if bytes(buf[:4]) != _MAGIC:
        raise GGUFError("not a GGUF file (bad magic)")
    c.pos = 4
    version = c.scalar("<I")
    if version not in (2, 3):
        if version & 0xFFFF == 0 and (version >> 24) in (2, 3):
            raise GGUFError("big-endian GGUF is not supported")
        raise GGUFError(f"unsupported GGUF version {version}")
    n_tensors, n_kv = c.scalar("<Q"), c.scalar("<Q")
    meta: dict[str, Any] = {}
    for _ in range(n_kv):
        key = c.string()
        meta[key] = c.value(c.scalar("<I"))
    tensors: list[tuple[str, int, int, int]] = []  # name, elements, type, offset
    for _ in range(n_tensors):
        tname = c.string()
        n_dims = c.scalar("<I")
        if n_dims > 8:
            raise GGUFError(f"tensor {tname!r} claims {n_dims} dimensions")
        elements = 1
        for _d in range(n_dims):
            elements *= c.scalar("<Q")
        tensors.append((tname, elements, c.scalar("<I"), c.scalar("<Q")))
    align = meta.get("general.alignment", 32)
    if not isinstance(align, int) or align <= 0:
        raise GGUFError("bad general.alignment")
    data_start = -(-c.pos // align) * align
    for tname, elements, ttype, offset in tensors:
        try:
            block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ttype)]
        except (ValueError, KeyError):
            raise GGUFError(f"tensor {tname!r} has unknown type {ttype}") from None
        end = data_start + offset + elements // block * type_size
        if end > size:
            raise GGUFError(f"truncated: tensor {tname!r} ends at byte {end}, file has {size}")
    arch = meta.get("general.architecture")
    arch = arch if isinstance(arch, str) else None
    ctx = meta.get(f"{arch}.context_length") if arch else None
    return GGUFInfo(
        name=name,
        path=path,
        size=total,
        architecture=arch,
        context_length=ctx if isinstance(ctx, int) else None,
        quantization=_quantization(meta.get("general.file_type"), gguf),
        chat_template=isinstance(meta.get("tokenizer.chat_template"), str),
        parameters=meta.get("general.size_label") if isinstance(meta.get("general.size_label"), str) else None,
        split_parts=parts,
        tensor_count=n_tensors,
        version=version,
        metadata={k: v for k, v in meta.items() if not isinstance(v, _Skipped) and k != "tokenizer.chat_template"},
        template=meta.get("tokenizer.chat_template") if isinstance(meta.get("tokenizer.chat_template"), str) else None,
    )


def _quantization(file_type: Any, gguf: Any) -> str | None:
    if not isinstance(file_type, int):
        return None
    try:
        return str(gguf.LlamaFileType(file_type).name).removeprefix("MOSTLY_")
    except ValueError:
        return f"type {file_type}"


def _split_stem(p: Path) -> tuple[str, int]:
    m = _SPLIT.match(p.stem)
    return (m["stem"], int(m["total"])) if m else (p.stem, 1)


def _other_parts(p: Path, parts: int) -> list[Path]:
    m = _SPLIT.match(p.stem)
    if not m or parts <= 1:
        return []
    return [p.with_name(f"{m['stem']}-{i:05d}-of-{parts:05d}{p.suffix}") for i in range(2, parts + 1)]


def scan_dirs(dirs: Iterable[str | os.PathLike[str]], *, recursive: bool = True) -> list[GGUFInfo]:
    """Every GGUF model under ``dirs``, sorted by name; unreadable files are returned with ``error`` set.

    Split models count once (their first part); later parts are not models and are left out, and
    so are files that are not models at all: multimodal projectors (``mmproj*``, architecture
    ``clip``) and LoRA adapters (``general.type = adapter``). A file reached through a symlink
    that points outside its folder is reported, not read: a scan never leaves the configured
    folders. Hidden files and folders are skipped; a folder that cannot be listed is reported.
    """
    found: dict[Path, GGUFInfo] = {}
    for d in dirs:
        root = Path(d).expanduser()
        try:
            real_root = root.resolve(strict=True)
        except OSError:
            continue
        first_parts: set[tuple[Path, str]] = set()
        later_parts: dict[tuple[Path, str], Path] = {}
        for p, problem in _gguf_files(root, recursive):
            if problem is not None:
                found.setdefault(p, GGUFInfo(_split_stem(p)[0], p, 0, error=problem))
                continue
            m = _SPLIT.match(p.stem)
            if m:
                key = (p.parent, f"{m['stem']}-of-{m['total']}")
                if int(m["part"]) != 1:
                    later_parts.setdefault(key, p)
                    continue
                first_parts.add(key)
            if p.name.lower().startswith("mmproj"):
                continue
            real = p.resolve()
            if real in found:
                continue
            if not real.is_relative_to(real_root):
                # Keyed by the link, not its target: the target may be a model of another folder scanned.
                stem, parts = _split_stem(p)
                found[p] = GGUFInfo(stem, p, 0, split_parts=parts, error=f"not read: links to {real}, outside {root}")
                continue
            info = read_gguf(p)
            if info.error is None and not _is_model(info):
                continue
            found[real] = info
        for key, p in later_parts.items():
            if key not in first_parts:  # later parts alone: the model cannot load, say why
                stem, parts = _split_stem(p)
                first = p.with_name(f"{stem}-00001-of-{parts:05d}{p.suffix}")
                found[p] = GGUFInfo(stem, first, 0, split_parts=parts, error=f"split part {first.name} is missing")
    # Readable files first within one name: a broken file must not push a model off its plain name.
    return _unique_names(sorted(found.values(), key=lambda i: (i.name, i.error is not None, str(i.path))))


def _is_model(info: GGUFInfo) -> bool:
    """Projectors and adapters are GGUF files too, but llama-server cannot serve them as a model."""
    return info.architecture != "clip" and info.metadata.get("general.type") not in ("adapter", "mmproj")


def _gguf_files(root: Path, recursive: bool) -> list[tuple[Path, str | None]]:
    """(path, problem) for every ``*.gguf`` under root; problem is None for a regular file.

    os.walk rather than Path.glob: glob silently drops a folder it may not list (reported here),
    and walks into hidden folders (pruned here). "Hidden" looks at names below the root only, so
    a hidden root such as ``~/.models`` is scanned, and ``root/.trash/old/x.gguf`` is not.
    """
    out: list[tuple[Path, str | None]] = []

    def unreadable(e: OSError) -> None:
        if e.filename and Path(e.filename) != root:
            out.append((Path(e.filename), f"cannot list folder: {e.strerror or e}"))

    for top, subdirs, files in os.walk(root, onerror=unreadable):  # never follows symlinked folders
        subdirs[:] = sorted(s for s in subdirs if not s.startswith(".")) if recursive else []
        for f in sorted(files):
            if f.startswith(".") or not f.lower().endswith(".gguf"):
                continue
            p = Path(top) / f
            if p.is_file():
                out.append((p, None))
            elif p.is_symlink():
                out.append((p, "broken symlink"))
    return out


def _unique_names(infos: Sequence[GGUFInfo]) -> list[GGUFInfo]:
    """Two files with one stem in different folders: the second gets its folder as a prefix."""
    seen: set[str] = set()
    out = []
    for info in infos:
        name = info.name
        if name in seen:
            name = f"{info.path.parent.name}/{info.name}"
            n = 2
            while name in seen:
                name, n = f"{info.path.parent.name}/{info.name}-{n}", n + 1
            info = _renamed(info, name)
        seen.add(name)
        out.append(info)
    return out


def _renamed(info: GGUFInfo, name: str) -> GGUFInfo:
    return replace(info, name=name)
