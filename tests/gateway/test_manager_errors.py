"""Unknown models with only [manager] configured: 404s in OpenAI's shape that name what is served;
a models_dirs entry that does not exist is reported at startup."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from corral.config import load_settings
from corral.gateway import create_app

from .conftest import RunningGateway


@pytest.fixture(scope="module")
def managed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("managed")
    gguf = tmp / "fake.gguf"
    gguf.write_bytes(b"GGUF")
    # Never started here: every request below is refused before a model would be loaded.
    models = {f"model-{i:02d}": {"gguf": str(gguf), "engine": ["false"]} for i in range(30)}
    models["alpha"] = {"gguf": str(gguf), "engine": ["false"], "aliases": ["a1"]}
    gw = RunningGateway({"manager": {"state_dir": str(tmp), "models": models}})
    yield gw
    gw.stop()


def test_unknown_model_names_the_managed_ones(managed: RunningGateway) -> None:
    r = httpx.post(
        f"{managed.url}/v1/chat/completions",
        json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"
    message = error["message"]
    assert "(models: none)" not in message
    assert "a1" in message and "alpha" in message and "model-00" in message
    assert "more)" in message and len(message) < 600  # bounded: 32 names are not all listed


@pytest.mark.parametrize(("method", "path"), [("POST", "/models/nope/load"), ("GET", "/upstream/nope/props")])
def test_manager_routes_answer_404_for_an_unknown_model(managed: RunningGateway, method: str, path: str) -> None:
    r = httpx.request(method, f"{managed.url}{path}", timeout=10)
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "model" and "nope" in error["message"]
    assert error["code"] == "model_not_found"


def test_missing_models_dir_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = tmp_path / "no-such-dir"
    present = tmp_path / "models"
    present.mkdir()
    settings = load_settings(
        data={"manager": {"state_dir": str(tmp_path), "models_dirs": [str(missing), str(present)]}}
    )
    with caplog.at_level(logging.WARNING, logger="corral.gateway"):
        create_app(settings)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(missing) in w for w in warnings), warnings
    assert not any(str(present) in w for w in warnings), warnings
