"""llama-server's flags on the real embedded engine, and the bundled demo model's defaults."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.errors import ServerUnreachable
from corral.manager.bundled import BUNDLED_ALIAS, bundled_engine_args
from corral.manager.engine import EngineProcess

from ..conftest import start_engine
from ..gateway.conftest import RunningGateway
from ..projector import IMAGE_TOKENS, tiny_png, write_tiny_projector

pytestmark = pytest.mark.live

WEATHER = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]  # fmt: skip


def _http(engine: EngineProcess) -> httpx.Client:
    headers = {"Authorization": f"Bearer {engine.api_key}"} if engine.api_key else {}
    return httpx.Client(base_url=str(engine.url), headers=headers, timeout=170)


def test_bundled_model_has_a_short_name_renders_tools_and_stops(gguf_path: Path) -> None:
    engine = start_engine(gguf_path, *bundled_engine_args())
    try:
        with _http(engine) as http:
            assert [m["id"] for m in http.get("/v1/models").json()["data"]] == [BUNDLED_ALIAS]
            assert http.get("/props").json()["chat_template_caps"]["supports_tools"] is True
            body = {"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": WEATHER,
                    "max_tokens": 8, "temperature": 0}  # fmt: skip
            r = http.post("/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text  # not "400 … does not support tools"
            assert r.json()["model"] == BUNDLED_ALIAS
            # No max_tokens: the demo default caps the answer instead of letting a base model loop.
            r = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Who are you?"}]})
            assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 128
    finally:
        engine.stop()


def test_gpu_and_kv_cache_flags_start_on_a_cpu_machine_and_are_reported(gguf_path: Path) -> None:
    engine = start_engine(gguf_path, "-ngl", "99", "-fa", "on", "--cache-type-k", "q8_0", "-c", "512")
    try:
        with _http(engine) as http:
            r = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                        "max_tokens": 2})  # fmt: skip
            assert r.status_code == 200
        engine._log.seek(0)
        log = engine._log.read().decode("utf-8", "replace")
        assert "corral-engine: accepted -ngl 99: no GPU device" in log
    finally:
        engine.stop()


def test_mmproj_reaches_llama_cpps_multimodal_loader(gguf_path: Path, tmp_path: Path) -> None:
    # A projector that is not there: --mmproj is handed to llama.cpp (not "unrecognized"), which names the file.
    # A real one is loaded in test_gateway_runs_a_managed_vision_model_with_gpu_flags.
    engine = EngineProcess(gguf_path, ["-c", "512", "--mmproj", str(tmp_path / "x.gguf")], start_timeout=120)
    with pytest.raises(ServerUnreachable) as info:
        engine.start()
    assert "multimodal" in str(info.value) and "x.gguf" in str(info.value)


@pytest.fixture(scope="session")
def tiny_mmproj(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_projector(gguf_path, tmp_path_factory.mktemp("mmproj") / "mmproj-tiny.gguf")


PNG = base64.b64encode(tiny_png()).decode()
ASK = "What colour is this?"


def _image_chat(model: str, with_image: bool) -> dict[str, object]:
    parts: list[dict[str, object]] = [{"type": "text", "text": ASK}]
    parts += [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}] if with_image else []
    return {"model": model, "messages": [{"role": "user", "content": parts}], "max_tokens": 1, "temperature": 0}


# One image in each wire protocol's own shape, and where that protocol reports the prompt's size.
IMAGE_REQUESTS: dict[str, tuple[str, dict[str, object], Callable[[dict[str, Any]], int]]] = {
    "openai": ("/v1/chat/completions", _image_chat("eyes", with_image=True), lambda r: r["usage"]["prompt_tokens"]),
    "anthropic": ("/v1/messages", {"model": "eyes", "max_tokens": 1, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": ASK}]}]}, lambda r: r["usage"]["input_tokens"]),
    "responses": ("/v1/responses", {"model": "eyes", "max_output_tokens": 1, "input": [{"role": "user", "content": [
        {"type": "input_text", "text": ASK}, {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"}]}]},
        lambda r: r["usage"]["input_tokens"]),
    "ollama": ("/api/chat", {"model": "eyes", "stream": False, "options": {"num_predict": 1},
               "messages": [{"role": "user", "content": ASK, "images": [PNG]}]}, lambda r: r["prompt_eval_count"]),
}  # fmt: skip


def test_gateway_runs_a_managed_vision_model_with_gpu_flags(gguf_path: Path, tiny_mmproj: Path,
                                                            tmp_path: Path) -> None:  # fmt: skip
    # Issue 13's "done when": -ngl/-fa/--cache-type-k/--mmproj together on the embedded engine, behind `corral serve`.
    args = ["-c", "512", "-ngl", "99", "-fa", "on", "--cache-type-k", "q8_0", "--mmproj", str(tiny_mmproj)]
    config = {"manager": {"state_dir": str(tmp_path), "models": {"eyes": {"gguf": str(gguf_path), "args": args}}}}
    gw = RunningGateway(config)
    try:
        with httpx.Client(base_url=gw.url, timeout=170) as http:
            text = http.post("/v1/chat/completions", json=_image_chat("eyes", with_image=False))
            assert text.status_code == 200, text.text
            assert http.get("/upstream/eyes/props").json()["modalities"]["vision"] is True
            assert "vision" in http.post("/api/show", json={"model": "eyes"}).json()["capabilities"]
            for protocol, (path, body, prompt_tokens) in IMAGE_REQUESTS.items():
                r = http.post(path, json=body)
                assert r.status_code == 200, (protocol, r.text)
                # The image reached the projector: it became prompt tokens (plus begin/end-of-image markers).
                grown = prompt_tokens(r.json()) - text.json()["usage"]["prompt_tokens"]
                assert grown >= IMAGE_TOKENS, (protocol, r.json())
    finally:
        gw.stop()


def test_unknown_flag_fails_naming_it_and_the_nearest(gguf_path: Path) -> None:
    engine = EngineProcess(gguf_path, ["-ngll", "99"], start_timeout=60)
    with pytest.raises(ServerUnreachable, match=r"unknown engine flag -ngll \(did you mean -ngl\?\)"):
        engine.start()


def test_gateway_runs_a_managed_model_with_gpu_flags(gguf_path: Path, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    args = ["-c", "512", "-ngl", "99", "-fa", "on", "--cache-type-k", "q8_0"]
    config = {"manager": {"state_dir": str(tmp_path), "models": {"gpu": {"gguf": str(gguf_path), "args": args}}}}
    caplog.set_level(logging.INFO, logger="corral.manager")
    gw = RunningGateway(config)
    try:
        body = {"model": "gpu", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        r = httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=170)
        assert r.status_code == 200, r.text
        # Without --mmproj an image is a clear client error, not a 500 or a silent text-only answer.
        r = httpx.post(f"{gw.url}/v1/chat/completions", json=_image_chat("gpu", with_image=True), timeout=170)
        assert r.status_code == 400 and "does not support image input" in r.json()["error"]["message"], r.text
    finally:
        gw.stop()
    assert any("accepted -ngl 99" in rec.getMessage() for rec in caplog.records)


def test_managed_model_with_a_draft_runs_speculative_decoding(gguf_path: Path, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    # The bundled GGUF as its own draft: it proves the wiring (a same-size draft does not speed anything up).
    spec = {"gguf": str(gguf_path), "args": ["-c", "512"], "draft": str(gguf_path)}
    caplog.set_level(logging.INFO, logger="corral.manager")
    gw = RunningGateway({"manager": {"state_dir": str(tmp_path), "models": {"spec": spec}}})
    try:
        body = {"model": "spec", "prompt": "1, 2, 3,", "max_tokens": 4, "temperature": 0}
        r = httpx.post(f"{gw.url}/upstream/spec/completion", json={**body, "n_predict": 4}, timeout=170)
        assert r.status_code == 200, r.text
        assert r.json()["timings"]["draft_n"] > 0  # llama.cpp drafted tokens with the draft model
    finally:
        gw.stop()
    assert any("settings:" in rec.getMessage() and "-md" in rec.getMessage() for rec in caplog.records)


def test_bench_reports_tokens_per_second_with_and_without_a_draft(gguf_path: Path) -> None:
    import json

    from ..cli.test_cli import corral

    done = corral("bench", "--draft", str(gguf_path), "--runs", "1", "--max-tokens", "8", "--prompt-tokens", "16",
                  "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["baseline"]["generation_tps"] > 0 and report["speculative"]["generation_tps"] > 0
    assert report["draft"] == str(gguf_path) and report["speedup"] is not None
