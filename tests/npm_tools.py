"""Command-line clients from the npm registry (Codex CLI, …), installed once into a cache directory for
the tests that run them: ``$CORRAL_TEST_NPM_CACHE``, else ``~/.cache/corral-tests/npm``. Pinned
versions, so a run is reproducible. In CI (``CI=true``) a tool that cannot be installed fails the test;
elsewhere the test is skipped with the reason."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

__all__ = ["IN_CI", "npm_tool"]


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"npm tool unavailable in CI: {reason}")
    pytest.skip(f"npm tool unavailable: {reason}")


def npm_tool(package: str, version: str, binary: str, timeout: float = 600) -> Path:
    """The path of ``binary`` from ``package@version``, installed into the cache on first use."""
    root = Path(os.environ.get("CORRAL_TEST_NPM_CACHE") or Path.home() / ".cache" / "corral-tests" / "npm")
    prefix = root / f"{package.replace('/', '+')}@{version}"
    exe = prefix / "node_modules" / ".bin" / binary
    if exe.exists():
        return exe
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        _unavailable("node and npm are not on PATH")
        raise AssertionError("unreachable")
    prefix.mkdir(parents=True, exist_ok=True)
    cmd = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--no-save", f"{package}@{version}"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        _unavailable(f"npm install {package}@{version} took more than {timeout:g} s")
        raise AssertionError("unreachable") from None
    if done.returncode != 0 or not exe.exists():
        _unavailable(f"npm install {package}@{version} failed: {(done.stderr or done.stdout)[-800:]}")
    return exe
