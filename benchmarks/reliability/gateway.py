"""The gateway under test: ``python -m corral serve --config F --port P`` in a child process, so its
RSS, open files and children are its own and are measured from outside (psutil), as an operator would.

Its log (stderr, level info: one line per request) goes to a file the checks read afterwards. The
child is stopped with SIGTERM, then SIGKILL after a grace period, and always reaped.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

__all__ = ["GatewayProcess", "Sample", "free_port", "toml_text"]

REPO = Path(__file__).resolve().parents[2]
FAKE_ENGINE = REPO / "tests" / "manager" / "fake_llama_server.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def toml_text(config: Mapping[str, Any]) -> str:
    """TOML for a config made of tables, strings, numbers, booleans and lists of those (what corral's
    config uses). JSON's string, number and array syntax is TOML's, so values are written with json."""
    lines: list[str] = []

    def table(prefix: str, data: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in data.items() if not isinstance(v, Mapping)}
        tables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
        if prefix and (scalars or not tables):
            lines.append(f"[{prefix}]")
        for key, value in scalars.items():
            lines.append(f"{json.dumps(str(key))} = {json.dumps(value)}")
        for key, value in tables.items():
            table(f"{prefix}.{json.dumps(str(key))}" if prefix else json.dumps(str(key)), value)

    table("", config)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    rss_mb: float
    fds: int
    children: tuple[tuple[int, str, str], ...]  # (pid, status, gguf path or "")


@dataclass
class GatewayProcess:
    """``with GatewayProcess(config) as gw:``; ``gw.url``, ``gw.log_text()``, ``gw.samples``."""

    config: Mapping[str, Any]
    key: str | None = None  # the gateway key clients send (also put in [gateway] api_keys by the caller)
    env: Mapping[str, str] | None = None
    sample_every: float = 0.25
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="corral-battery-")))
    url: str = ""
    proc: subprocess.Popen[bytes] | None = None
    samples: list[Sample] = field(default_factory=list)
    _sampler: threading.Thread | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def log_path(self) -> Path:
        return self.workdir / "gateway.log"

    @property
    def config_path(self) -> Path:
        return self.workdir / "corral.toml"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def __enter__(self) -> GatewayProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> None:
        self.config_path.write_text(toml_text(self.config))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_") and k != "OPENAI_API_KEY"
               and k != "ANTHROPIC_API_KEY"}  # fmt: skip
        env.update({"CORRAL_CACHE_DIR": str(self.workdir / "cache"), "PYTHONUNBUFFERED": "1"})
        env.update(self.env or {})
        argv = [sys.executable, "-m", "corral", "serve", "--config", str(self.config_path), "--port", str(port),
                "--log-level", "info"]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                         cwd=self.workdir)  # fmt: skip
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        with httpx.Client() as http:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"corral serve exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
                try:
                    if http.get(f"{self.url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"corral serve did not answer /health within {timeout} s")
                time.sleep(0.05)
        self._sampler = threading.Thread(target=self._sample_loop, name="gateway-sampler", daemon=True)
        self._sampler.start()

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` s; reaped. Returns the exit code."""
        self._stopping.set()
        if self._sampler is not None:
            self._sampler.join(5)
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- what it costs ----------------------------------------------------------------------------------
    def sample(self) -> Sample | None:
        try:
            p = psutil.Process(self.pid)
            with p.oneshot():
                rss = p.memory_info().rss / 2**20
                fds = p.num_fds()
            kids = []
            for child in p.children():
                try:
                    kids.append((child.pid, child.status(), _gguf(child.cmdline())))
                except psutil.Error:
                    continue
            return Sample(time.monotonic(), rss, fds, tuple(kids))
        except psutil.Error:
            return None

    def _sample_loop(self) -> None:
        while not self._stopping.wait(self.sample_every):
            s = self.sample()
            if s is not None:
                self.samples.append(s)

    def peak_rss(self) -> float:
        return max((s.rss_mb for s in self.samples), default=0.0)


def _gguf(cmdline: list[str]) -> str:
    for flag, value in itertools.pairwise(cmdline):
        if flag in ("-m", "--model"):
            return value
    return ""
