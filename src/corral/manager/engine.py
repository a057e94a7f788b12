"""The embedded engine: llama.cpp's server (xllamacpp) in a child process on a free loopback port.

One engine per (model, args) per process, shared by every Client that asks for it
and stopped when the last one lets go or the interpreter exits. The child dies
with us even on SIGKILL: it watches its stdin pipe and has a parent-death signal.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import selectors
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigurationError, ServerUnreachable

__all__ = ["EngineProcess", "acquire_engine", "release_engine"]

DEFAULT_ENGINE_ARGS = ("-c", "4096", "-np", "2", "--props", "--slots", "--metrics", "--embeddings")


class EngineProcess:
    def __init__(
        self,
        model: str | Path | None,
        args: Sequence[str] = DEFAULT_ENGINE_ARGS,
        *,
        start_timeout: float = 120.0,
        api_key: str | None = None,
    ) -> None:
        self.model = Path(model).expanduser() if model is not None else None  # None: router mode (--models-dir)
        self.args = list(args)
        self.start_timeout = start_timeout
        self.api_key = api_key if api_key is not None else secrets.token_urlsafe(24)
        self.url: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        # The child's stderr (llama.cpp's log) goes here, so a failed start can quote its last lines.
        self._log = tempfile.TemporaryFile(prefix="corral-engine-")  # noqa: SIM115  # closed in stop()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> str:
        if self.model is not None and not self.model.is_file():
            raise ConfigurationError(f"GGUF model file not found: {self.model}")
        try:
            import xllamacpp  # noqa: F401  # fail here, with advice, rather than in the child
        except ImportError:
            raise ConfigurationError("the embedded engine needs xllamacpp: pip install 'corral[local]'") from None
        model = ["-m", str(self.model)] if self.model is not None else []
        cmd = [sys.executable, "-m", "corral.manager.engine_child", *model, "--port", "0", *self.args]
        env = dict(os.environ, CORRAL_ENGINE_API_KEY=self.api_key)
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            start_new_session=True,  # a Ctrl-C meant for the user's program is ours to handle, not the child's
        )
        try:
            self.url = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.url

    def _wait_ready(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        buf = b""
        try:
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ServerUnreachable(
                        f"embedded llama.cpp engine did not start within {self.start_timeout:g} s{self._log_tail()}"
                    )
                if not sel.select(timeout=min(left, 0.5)):
                    if self.proc.poll() is not None:
                        break
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
        finally:
            sel.close()
        line = buf.split(b"\n", 1)[0]
        try:
            info = json.loads(line) if line else {}
        except ValueError:
            info = {}
        if "url" not in info:
            self.proc.wait(timeout=5) if self.proc.poll() is None else None
            reason = info.get("error") or f"exit code {self.proc.returncode}"
            raise ServerUnreachable(f"embedded llama.cpp engine failed to start ({reason}){self._log_tail()}")
        return str(info["url"])

    def _log_tail(self, lines: int = 8) -> str:
        try:
            self._log.seek(0, os.SEEK_END)
            size = self._log.tell()
            self._log.seek(max(0, size - 4000))
            tail = self._log.read().decode("utf-8", "replace").strip().splitlines()[-lines:]
        except (OSError, ValueError):
            return ""
        return (":\n  " + "\n  ".join(tail)) if tail else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()  # the child's cue to exit
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        finally:
            if proc.stdout:
                proc.stdout.close()
            self._log.close()


_lock = threading.Lock()
_engines: dict[tuple[str, tuple[str, ...]], tuple[EngineProcess, int]] = {}


def acquire_engine(model: str | Path, args: Sequence[str] = DEFAULT_ENGINE_ARGS) -> EngineProcess:
    """Start (or share) the engine for this model and arguments."""
    key = (str(Path(model).expanduser().resolve()), tuple(args))
    with _lock:
        found = _engines.get(key)
        if found is not None and found[0].alive():
            _engines[key] = (found[0], found[1] + 1)
            return found[0]
        engine = EngineProcess(key[0], args)
        engine.start()
        _engines[key] = (engine, 1)
        return engine


def release_engine(engine: EngineProcess) -> None:
    with _lock:
        for key, (e, count) in list(_engines.items()):
            if e is engine:
                if count > 1:
                    _engines[key] = (e, count - 1)
                    return
                del _engines[key]
                break
    engine.stop()


@atexit.register
def _stop_all() -> None:
    with _lock:
        engines = [e for e, _ in _engines.values()]
        _engines.clear()
    for e in engines:
        e.stop(grace=2.0)
