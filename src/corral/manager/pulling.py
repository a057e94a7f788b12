"""Cold loads from the Hugging Face Hub: a managed model whose ``gguf`` (or ``draft``) is an
``hf://`` reference is pulled in the background on its first request.

Meanwhile every request for it gets :class:`ModelLoading` (HTTP 503 at the gateway) with a
``retry_after``, at once: a download can take far longer than any client waits, so nobody is kept
waiting for it. Progress goes to the log. A failed pull is reported to the next request and
forgotten, so the one after tries again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from ..errors import CorralError, ModelLoading, ServerError
from .spec import ModelSpec

__all__ = ["RETRY_AFTER", "Pulls"]

log = logging.getLogger("corral.manager")
RETRY_AFTER = 5.0  # seconds a client is told to wait before asking again


class Pulls:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._progress: dict[str, str] = {}

    def ready(self, spec: ModelSpec) -> ModelSpec:
        """``spec`` with its Hub references replaced by cached paths (projector and draft folded into
        its args); raises ModelLoading while a pull runs (starting it if needed)."""
        if not spec.source and not spec.draft:
            return spec
        from ..hub import find_local

        refs = [r for r in (spec.source, spec.draft) if r and _is_ref(r)]
        missing = [r for r in refs if find_local(r) is None]
        if missing:
            self._pull(spec.name, missing)
        args = list(spec.args)
        gguf = spec.gguf
        if spec.source:
            model = find_local(spec.source)
            assert model is not None
            gguf = model.path
            if model.mmproj is not None and not {"--mmproj", "-mm", "--no-mmproj"} & set(args):
                args += ["--mmproj", str(model.mmproj)]
        if spec.draft:
            draft = find_local(spec.draft) if _is_ref(spec.draft) else None
            args += ["-md", str(draft.path) if draft else spec.draft]
        return replace(spec, gguf=gguf, args=tuple(args), source=None, draft=None)

    def _pull(self, name: str, refs: list[str]) -> None:
        task = self._tasks.get(name)
        if task is not None and task.done():
            del self._tasks[name]
            error = task.exception()
            if error is not None:
                detail = str(error) if isinstance(error, CorralError) else f"{type(error).__name__}: {error}"
                raise ServerError(f"model {name!r} could not be downloaded: {detail}", status=502,
                                  provider="manager") from None  # fmt: skip
            return  # done a moment ago: ready() finds it in the cache now, or pulls what is left
        if task is None:
            self._progress[name] = "starting"
            self._tasks[name] = asyncio.ensure_future(asyncio.to_thread(self._run, name, refs))
        raise ModelLoading(
            f"model {name!r} is being downloaded ({self._progress.get(name, '')}); retry in {RETRY_AFTER:g} s",
            status=503,
            provider="manager",
            retry_after=RETRY_AFTER,
        )

    def _run(self, name: str, refs: list[str]) -> None:
        from ..hub import pull

        def progress(line: str) -> None:
            self._progress[name] = line
            log.info("model %s: %s", name, line)

        for ref in refs:
            pull(ref, progress=progress)

    def cancel(self) -> None:
        for task in self._tasks.values():
            task.cancel()


def _is_ref(value: str) -> bool:
    from pathlib import Path

    from ..hub.refs import is_hub_ref

    return value.startswith("hf://") or (not Path(value).expanduser().exists() and is_hub_ref(value))
