"""Shared fixtures: the real llama.cpp server (xllamacpp + the bundled gemma GGUF) as a child process.

In CI (CI=true) a live test whose server cannot start fails; elsewhere it is skipped
with the reason, so a developer without the `local` extra can still run the unit tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.manager.bundled import BUNDLED_TEMPLATE
from corral.manager.engine import EngineProcess

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# The bundled Gemma template (turn format plus tool rendering): llama-server reports and accepts tools.
TOOLS_TEMPLATE = BUNDLED_TEMPLATE


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"live llama.cpp server unavailable in CI: {reason}")
    pytest.skip(f"live llama.cpp server unavailable: {reason}")


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    try:
        from corral.manager.bundled import bundled_model_path

        return bundled_model_path()
    except Exception as exc:  # any failure here means "no live tests possible"
        _unavailable(f"bundled model: {exc}")
        raise


def start_engine(gguf: Path, *args: str, api_key: str = "") -> EngineProcess:
    engine = EngineProcess(gguf, args, api_key=api_key, start_timeout=120)
    try:
        engine.start()
    except Exception as exc:
        _unavailable(f"engine failed to start: {exc}")
    return engine


@pytest.fixture(scope="session")
def slot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("slots")


@pytest.fixture(scope="session")
def llama_server(gguf_path: Path, slot_dir: Path) -> Iterator[EngineProcess]:
    """llama-server with embeddings, slots (save path), props and metrics; 2 slots of 1024 tokens."""
    engine = start_engine(
        gguf_path,
        "-c", "2048", "-np", "2", "--embeddings", "--slots", "--props", "--metrics",
        "--slot-save-path", str(slot_dir),
    )  # fmt: skip
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def llama_url(llama_server: EngineProcess) -> str:
    assert llama_server.url
    return llama_server.url


@pytest.fixture(scope="session")
def templated_server(gguf_path: Path) -> Iterator[EngineProcess]:
    """A second server with a jinja chat template (Gemma's turns, tools rendered), and no embeddings."""
    engine = start_engine(
        gguf_path, "-c", "2048", "-np", "1", "--props", "--jinja", "--chat-template-file", str(TOOLS_TEMPLATE)
    )
    yield engine
    engine.stop()
