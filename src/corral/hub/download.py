"""``pull``: a model from the Hugging Face Hub into corral's cache, verified and resumable.

The ``huggingface_hub`` library does the Hub's protocol: the file listing with LFS sha256
(``model_info(files_metadata=True)``), each file's metadata (``HEAD …/resolve/…``: X-Repo-Commit,
X-Linked-Etag, X-Linked-Size, the CDN location), authentication (``HF_TOKEN``), and the download
itself (``http_get``, which resumes with a Range request after a cut connection). corral keeps the
partial file between runs (the library's own cache deletes it), checks the sha256, and writes the
manifest that makes the model findable by name only once every file is whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import Authentication, ConfigurationError, ModelNotFound, ResponseError, ServerError, ServerUnreachable
from .cache import PulledModel, find_local, repo_dir, write_manifest
from .refs import HubRef, parse_ref
from .select import RemoteFile, Selection, select_files

__all__ = ["hub_endpoint", "is_offline", "pull"]

Progress = Callable[[str], None]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_ENDPOINT = "https://huggingface.co"


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def is_offline() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "CORRAL_OFFLINE")
    )


def _hf() -> Any:
    """The parts of huggingface_hub a pull uses (its package imports submodules lazily: name them)."""
    try:
        import huggingface_hub
        import huggingface_hub.errors
        import huggingface_hub.file_download
        import huggingface_hub.utils
    except ImportError:
        raise ConfigurationError("pulling models needs huggingface_hub: pip install 'corral[hub]'") from None
    return huggingface_hub


def pull(
    ref: str | HubRef,
    *,
    token: str | None = None,
    refresh: bool = False,
    progress: Progress | None = None,
    bar: bool = False,
    mmproj: bool = True,
) -> PulledModel:
    """The pulled model ``ref`` names, downloading what is missing.

    ``refresh=False`` (``hf://`` on first use) answers from the cache without any network call when
    the model is there; ``refresh=True`` (``corral pull``) asks the Hub and downloads what changed.
    ``progress`` gets one line per 10 % of each file; ``bar`` shows a terminal progress bar instead.
    """
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    local = find_local(ref)
    if local is not None and (not refresh or is_offline()):
        return local
    if is_offline():
        raise ConfigurationError(
            f"{ref.name} is not in corral's cache and the Hub is off limits (HF_HUB_OFFLINE is set): "
            "unset HF_HUB_OFFLINE to pull it, or use a pulled model (corral models --local)"
        )
    endpoint = hub_endpoint()
    token = token or os.environ.get("HF_TOKEN") or None
    selection, revision = _select(ref, endpoint, token, mmproj)
    say = progress or (lambda _: None)
    if local is not None and _same(local, selection):
        say(f"{local.name} is up to date")
        return local
    folder = repo_dir(ref.repo)
    records = []
    for f in selection.files:
        records.append(_fetch(ref, f, folder, endpoint, token, revision, say, bar))
    parts, projector = records[: len(selection.parts)], (records[-1] if selection.mmproj else None)
    model = write_manifest(ref.repo, selection.quant, revision, parts, projector)
    say(f"pulled {model.name} ({len(parts)} file{'s' if len(parts) > 1 else ''}{', with mmproj' if projector else ''})")
    return model


def _same(local: PulledModel, selection: Selection) -> bool:
    want = [(f.path, f.sha256) for f in selection.files]
    have = [(f["path"], f.get("sha256")) for f in (*local.files, *([local.mmproj_file] if local.mmproj_file else []))]
    return want == have


def _select(ref: HubRef, endpoint: str, token: str | None, mmproj: bool) -> tuple[Selection, str]:
    hf = _hf()
    with _translated(ref, endpoint, token):
        info = hf.HfApi(endpoint=endpoint, token=token).model_info(ref.repo, revision=ref.revision, files_metadata=True)
    files = [
        RemoteFile(s.rfilename, s.size, getattr(s.lfs, "sha256", None) if s.lfs else None)
        for s in (info.siblings or [])
    ]
    return select_files(ref, files, mmproj=mmproj), str(info.sha or ref.revision)


def _fetch(
    ref: HubRef, f: RemoteFile, folder: Path, endpoint: str, token: str | None, revision: str, say: Progress, bar: bool
) -> dict[str, Any]:
    """Download one file (resuming a partial one), verify it, move it in place; its manifest record."""
    hf = _hf()
    dest = folder / f.path
    with _translated(ref, endpoint, token):
        meta = hf.get_hf_file_metadata(
            hf.hf_hub_url(ref.repo, f.path, revision=revision, endpoint=endpoint), token=token
        )
    etag = (meta.etag or "").strip('"').lower()
    sha = f.sha256 or (etag if _SHA256.match(etag) else None)
    size = meta.size if meta.size is not None else f.size
    record = {"path": f.path, "size": size, "sha256": sha}
    if dest.is_file() and size is not None and dest.stat().st_size == size:
        return record  # verified when it was written (another quant shares it, or an earlier pull)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f"{dest.name}.{(sha or 'nosha')[:16]}.partial")
    with _locked(partial.with_suffix(".lock")):
        if dest.is_file() and size is not None and dest.stat().st_size == size:
            return record  # another process finished it while we waited for the lock
        done = partial.stat().st_size if partial.is_file() else 0
        if size is not None and done > size:
            partial.unlink()
            done = 0
        say(f"downloading {f.path}" + (f" (resuming at {_mb(done)} of {_mb(size)})" if done else f" ({_mb(size)})"))
        tqdm_class = None if bar else _progress_class(f.path, say)
        try:
            with partial.open("ab") as out, _translated(ref, endpoint, token):
                hf.file_download.http_get(
                    meta.location,
                    out,
                    resume_size=done,
                    expected_size=size,
                    headers=hf.utils.build_hf_headers(token=token),
                    displayed_filename=f.path,
                    tqdm_class=tqdm_class,
                )
        except (ServerUnreachable, ServerError, OSError) as exc:
            have = partial.stat().st_size if partial.is_file() else 0
            raise ResponseError(
                f"download of {f.path} stopped at {_mb(have)} of {_mb(size)} ({_short(exc)}); "
                f"the partial file is kept: run `corral pull {ref.name}` again to resume"
            ) from None
        got = _sha256(partial)
        if sha is not None and got != sha:
            partial.unlink()
            raise ResponseError(
                f"{f.path} is corrupt: its sha256 is {got[:16]}…, the Hub says {sha[:16]}…; "
                f"the file was deleted, run `corral pull {ref.name}` again"
            )
        record["sha256"] = sha or got
        partial.replace(dest)
    return record


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One download of a file at a time across processes (a gateway's cold load and a `corral pull`)."""
    import fcntl

    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def _mb(n: int | None) -> str:
    return "? MB" if n is None else f"{n / 1e6:.1f} MB"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _progress_class(label: str, say: Progress) -> type:
    """A tqdm stand-in for ``http_get`` that reports every 10 % as a line (logs, --json)."""

    class LineProgress:
        def __init__(self, *, total: int | None = None, initial: int = 0, **_: Any) -> None:
            self.total, self.n, self.step = total, initial, -1

        def update(self, n: int | float = 1) -> None:
            self.n += int(n)
            if self.total:
                step = min(10, self.n * 10 // self.total)
                if step != self.step:
                    self.step = step
                    say(f"{label}: {step * 10}% of {_mb(self.total)}")

        def close(self) -> None:
            pass

        def __enter__(self) -> LineProgress:
            return self

        def __exit__(self, *exc: object) -> None:
            self.close()

    return LineProgress


@contextlib.contextmanager
def _translated(ref: HubRef, endpoint: str, token: str | None) -> Iterator[None]:
    """huggingface_hub's errors as corral's, each with what to do about it."""
    errors = _hf().errors
    try:
        import httpx2 as hx  # huggingface_hub >= 2
    except ImportError:  # pragma: no cover - older huggingface_hub releases speak httpx
        import httpx as hx  # type: ignore[no-redef]

    try:
        yield
    except errors.GatedRepoError:
        said = "the HF_TOKEN given was refused or lacks access" if token else "no HF_TOKEN is set"
        raise Authentication(
            f"{ref.repo} is a gated repository ({said}): accept its conditions at {endpoint}/{ref.repo} "
            "and set HF_TOKEN to a token of that account",
            status=401,
            provider="huggingface",
        ) from None
    except errors.RepositoryNotFoundError:
        raise ModelNotFound(
            f"{ref.repo} was not found on {endpoint} (if it is private, set HF_TOKEN)",
            status=404,
            provider="huggingface",
        ) from None
    except errors.RevisionNotFoundError:
        raise ModelNotFound(
            f"{ref.repo} has no revision {ref.revision!r}", status=404, provider="huggingface"
        ) from None
    except errors.EntryNotFoundError as exc:
        raise ModelNotFound(f"{ref.repo}: file not found ({_short(exc)})", status=404, provider="huggingface") from None
    except errors.OfflineModeIsEnabled:
        raise ConfigurationError(f"{ref.name}: the Hub is off limits (HF_HUB_OFFLINE is set)") from None
    except errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (401, 403):
            raise Authentication(
                f"{endpoint} refused access to {ref.repo}: set HF_TOKEN", status=status, provider="huggingface"
            ) from None
        raise ServerError(
            f"the Hub answered HTTP {status} for {ref.repo}: {_short(exc)}",
            status=status or 502,
            provider="huggingface",
        ) from None
    except (hx.ConnectError, hx.TimeoutException, hx.RemoteProtocolError, hx.ReadError) as exc:
        raise ServerUnreachable(
            f"cannot reach the Hugging Face Hub at {endpoint} ({_short(exc)}); "
            "set HF_HUB_OFFLINE=1 to use pulled models only",
            endpoint=endpoint,
        ) from None
