"""Simon Willison's ``llm`` (CLI and library) against `corral serve` on the real llama.cpp server, set up
as its docs say for an OpenAI-compatible server: ``extra-openai-models.yaml`` in its user directory, a
completion model (``completion: true``, /v1/completions) and a chat model, the gateway key stored with
``llm keys set``. Streamed (the CLI's default) and whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..gateway.conftest import GATEWAY_KEY, RunningGateway

pytestmark = pytest.mark.live

LLM = Path(sys.executable).with_name("llm")  # the console script installed with the dev extra


def llm_home(tmp_path: Path, gw: RunningGateway) -> dict[str, str]:
    """An llm user directory with corral's models and key; the environment that points llm at it."""
    home = tmp_path / "llm"
    home.mkdir()
    (home / "extra-openai-models.yaml").write_text(f"""\
- model_id: corral-complete
  model_name: local-model
  api_base: "{gw.url}/v1"
  api_key_name: corral
  completion: true
- model_id: corral-chat
  model_name: local-model
  api_base: "{gw.url}/v1"
  api_key_name: corral
""")
    (home / "keys.json").write_text(json.dumps({"corral": GATEWAY_KEY}))  # what `llm keys set corral` writes
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_"))}
    return env | {"LLM_USER_PATH": str(home)}


def llm(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(LLM), *args], env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_llm_completion_model(live_gateway: RunningGateway, tmp_path: Path, stream: bool) -> None:
    env = llm_home(tmp_path, live_gateway)
    args = [] if stream else ["--no-stream"]
    text = llm(env, "-m", "corral-complete", "The sea is", "-o", "max_tokens", "8", "-o", "temperature", "0", *args)
    assert text.strip()
    logged = json.loads(llm(env, "logs", "list", "--json", "-n", "1"))[0]
    assert logged["model"] == "corral-complete" and logged["prompt"] == "The sea is"
    assert logged["response"] and logged["response"].strip() == text.strip()


def test_llm_chat_model_cli_and_library(
    live_gateway: RunningGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = llm_home(tmp_path, live_gateway)
    assert llm(env, "-m", "corral-chat", "Say hi.", "-o", "max_tokens", "8").strip()
    models = llm(env, "models", "list")
    assert "corral-complete" in models and "corral-chat" in models
    # The library, as an application would use it.
    import llm as llm_lib

    monkeypatch.setenv("LLM_USER_PATH", env["LLM_USER_PATH"])
    model = llm_lib.get_model("corral-chat")
    response = model.prompt("Say hi.", max_tokens=8, temperature=0)
    assert response.text().strip()
    usage = response.usage()
    assert usage.input and usage.input > 0 and usage.output and usage.output > 0
    assert response.json()["model"] == "local-model"  # type: ignore[index]  # the name asked, not a path
