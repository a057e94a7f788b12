"""One llama-server child: spawn on a free loopback port with its own key, wait for health, stop.

States: stopped → starting → ready → stopping → stopped; starting or ready → failed when the child
exits on its own (a crash) or never becomes healthy. The scheduler owns the transitions' order;
this class does the I/O of each.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import secrets
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

from .spec import ModelSpec

__all__ = ["ManagedProcess", "State", "free_port"]

log = logging.getLogger("corral.manager")


class State(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class ManagedProcess:
    def __init__(
        self,
        spec: ModelSpec,
        engine: tuple[str, ...],
        *,
        embedded: bool,
        slot_dir: Path,
        load_timeout: float,
        stop_grace: float,
    ) -> None:
        self.spec = spec
        self.engine = engine
        self.embedded = embedded
        self.slot_dir = slot_dir
        self.load_timeout = load_timeout
        self.stop_grace = stop_grace
        self.state = State.STOPPED
        self.url = ""
        self.api_key = secrets.token_urlsafe(24)
        self.proc: asyncio.subprocess.Process | None = None
        self.error = ""
        # bookkeeping the scheduler keeps under its lock
        self.inflight = 0
        self.waiters = 0
        self.draining = False
        self.last_used = time.monotonic()
        self.started_at = 0.0
        #: idle seconds before unload asked by a client (Ollama's keep_alive), over ``spec.ttl``;
        #: 0 = as soon as idle, negative = never. Kept until the next request that sets it.
        self.keep_alive: float | None = None
        self._log = tempfile.TemporaryFile(prefix=f"corral-{spec.name}-")  # noqa: SIM115  # closed in stop()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def idle_ttl(self) -> float | None:
        """Seconds idle before this child is unloaded; None: never."""
        if self.keep_alive is not None:
            return self.keep_alive if self.keep_alive >= 0 else None
        return self.spec.ttl if self.spec.ttl > 0 else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def argv(self, port: int) -> list[str]:
        self.slot_dir.mkdir(parents=True, exist_ok=True)
        extra = ["--props"] if self.embedded else []  # the embedded engine serves /props only when asked
        return [
            *self.engine, "-m", str(self.spec.gguf), "--host", "127.0.0.1", "--port", str(port),
            "--slots", "--metrics", *extra, "--slot-save-path", str(self.slot_dir), *self.spec.args,
        ]  # fmt: skip

    async def start(self) -> None:
        """Spawn and wait until /health answers 200 (503 while loading is waiting, not failure)."""
        if not self.spec.gguf.is_file():
            raise RuntimeError(f"GGUF file not found: {self.spec.gguf}")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = dict(os.environ, LLAMA_ARG_API_KEY=self.api_key)
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv(port),
            stdin=asyncio.subprocess.PIPE,  # the embedded engine exits when this closes (parent gone)
            stdout=asyncio.subprocess.DEVNULL,
            stderr=self._log,
            env=env,
            start_new_session=True,  # its own process group: a Ctrl-C for the gateway is the gateway's
            preexec_fn=_die_with_parent,
        )
        self.started_at = time.monotonic()
        try:
            await asyncio.wait_for(self._wait_healthy(), self.load_timeout)
        except TimeoutError:
            raise RuntimeError(f"not healthy within {self.load_timeout:g} s{self.log_tail()}") from None
        for note in self.engine_notes():  # e.g. GPU flags accepted on a machine without a GPU
            log.info("model %s: %s", self.spec.name, note)

    def engine_notes(self) -> list[str]:
        """The embedded engine's own notes ("corral-engine: …" lines of its log)."""
        try:
            self._log.seek(0)
            text = self._log.read(65536).decode("utf-8", "replace")
        except (OSError, ValueError):
            return []
        return [ln.split("corral-engine: ", 1)[1] for ln in text.splitlines() if "corral-engine: " in ln]

    async def _wait_healthy(self) -> None:
        import httpx

        async with httpx.AsyncClient(timeout=2.0) as http:
            # Poll often: every millisecond between "healthy" and the next poll is added to a cold start.
            delay = 0.01
            while True:
                if not self.alive():
                    code = self.proc.returncode if self.proc else None
                    raise RuntimeError(f"exited with code {code} while starting{self.log_tail()}")
                try:
                    r = await http.get(f"{self.url}/health", headers={"Authorization": f"Bearer {self.api_key}"})
                    if r.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass  # not listening yet
                await asyncio.sleep(delay)
                delay = min(delay * 1.2, 0.05)

    async def stop(self) -> None:
        """SIGTERM to the child's group, SIGKILL after the grace period; always reaped."""
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                if proc.stdin is not None:
                    proc.stdin.close()
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self.stop_grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        else:
            await proc.wait()
        self.close_log()

    def close_log(self) -> None:
        with contextlib.suppress(OSError):
            self._log.close()

    def log_tail(self, lines: int = 6) -> str:
        try:
            self._log.seek(0, os.SEEK_END)
            self._log.seek(max(0, self._log.tell() - 3000))
            tail = self._log.read().decode("utf-8", "replace").strip().splitlines()[-lines:]
        except (OSError, ValueError):
            return ""
        return (": " + " | ".join(tail)) if tail else ""
