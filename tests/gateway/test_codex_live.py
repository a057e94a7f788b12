"""Codex CLI (``@openai/codex``, which speaks only the Responses API) against `corral serve`: a turn on the
real llama.cpp server, and a tool turn (Codex runs the command, sends its output back, then answers) on
a scripted backend, since the small model cannot call tools. Codex is installed from npm (tests/npm_tools)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.manager.engine import EngineProcess

from ..conftest import start_engine
from ..npm_tools import npm_tool
from .conftest import GATEWAY_KEY, RunningGateway, gateway_config
from .scripted import Call, Scripted, Text

CODEX_VERSION = "0.171.0"
TEMPLATES = Path(__file__).parent / "templates"


@pytest.fixture(scope="session")
def codex() -> Path:
    return npm_tool("@openai/codex", CODEX_VERSION, "codex")


def codex_config(base_url: str, model: str) -> str:
    """The config.toml the README gives (wire_api must be "responses": Codex refuses "chat")."""
    return f"""\
model = "{model}"
model_provider = "corral"

[model_providers.corral]
name = "corral"
base_url = "{base_url}/v1"
wire_api = "responses"
env_key = "CORRAL_API_KEY"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false
"""


def run_codex(codex: Path, home: Path, gw: RunningGateway, model: str, prompt: str, *args: str) -> list[dict[str, Any]]:
    """``codex exec --json`` in a throwaway home; its JSONL events."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(codex_config(gw.url, model))
    work = home / "work"
    work.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_"))}
    env |= {"CODEX_HOME": str(home), "HOME": str(home), "CORRAL_API_KEY": GATEWAY_KEY}
    cmd = [str(codex), "exec", "--json", "--skip-git-repo-check", *args, prompt]
    done = subprocess.run(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0, f"codex exit {done.returncode}: {done.stderr[-2000:]}\n{done.stdout[-2000:]}"
    return events


def messages(events: list[dict[str, Any]]) -> list[str]:
    items = [e["item"] for e in events if e.get("type") == "item.completed"]
    return [str(i.get("text", "")) for i in items if i.get("type") == "agent_message"]


@pytest.fixture(scope="module")
def agent_engine(gguf_path: Path) -> Iterator[EngineProcess]:
    """llama-server with a tools template in Gemma's turn format, room for Codex's prompt, and a default
    grammar that ends each answer after a short line (the bundled base model rarely stops by itself)."""
    engine = start_engine(
        gguf_path, "-c", "8192", "-np", "1", "--props", "--jinja",
        "--chat-template-file", str(TEMPLATES / "gemma3-agent.jinja"),
        "--grammar-file", str(TEMPLATES / "short-answer.gbnf"), "-n", "64",
    )  # fmt: skip
    yield engine
    engine.stop()


@pytest.mark.live
def test_codex_turn_on_the_real_llama_server(codex: Path, agent_engine: EngineProcess, tmp_path: Path) -> None:
    assert agent_engine.url
    provider = {"type": "llamacpp", "base_url": agent_engine.url, "timeout": 600}
    keys = {"api_keys": [GATEWAY_KEY]}
    config = gateway_config({"local": provider}, gateway=keys, models={"gemma": {"provider": "local"}})
    gw = RunningGateway(config)
    try:
        # Codex's default tools and environment, with short base instructions: its own 17 KB prompt would
        # cost minutes of prompt processing on two CPU cores.
        short = tmp_path / "instructions.md"
        short.write_text("You are Codex, a coding agent. Answer in one short sentence.")
        events = run_codex(codex, tmp_path / "home", gw, "gemma", "Say hello.",
                           "-c", f'model_instructions_file="{short}"')  # fmt: skip
    finally:
        gw.stop()
    assert any(e.get("type") == "turn.completed" for e in events)
    said = messages(events)
    assert said and said[-1].strip()
    usage = next(e["usage"] for e in events if e.get("type") == "turn.completed")
    assert usage["input_tokens"] > 1000 and usage["output_tokens"] > 0  # Codex's tools reached the model


def test_codex_tool_turn(codex: Path, tmp_path: Path) -> None:
    up = Scripted([Call("exec_command", {"cmd": "echo corral-codex-ok"}), Text("The command printed corral-codex-ok.")])
    provider = {"type": "openai", "base_url": f"{up.url}/v1", "api_key": "k", "max_retries": 0}
    keys = {"api_keys": [GATEWAY_KEY]}
    config = gateway_config({"chat": provider}, gateway=keys, models={"gpt-local": {"provider": "chat"}})
    gw = RunningGateway(config)
    try:
        events = run_codex(codex, tmp_path / "home", gw, "gpt-local", "Run echo corral-codex-ok",
                           "--dangerously-bypass-approvals-and-sandbox")  # fmt: skip
    finally:
        gw.stop()
        up.close()
    first, second = up.bodies("/v1/chat/completions")[:2]
    names = [t["function"]["name"] for t in first["tools"]]
    assert "exec_command" in names and "multi_agent_v1__spawn_agent" in names  # namespaced tools flattened
    assert not any("web_search" in n for n in names)  # a hosted tool: left out
    tool_results = [m for m in second["messages"] if m["role"] == "tool"]
    assert tool_results and "corral-codex-ok" in json.dumps(tool_results)  # Codex ran it and sent the output
    assert messages(events)[-1] == "The command printed corral-codex-ok."
    assert any(e.get("type") == "turn.completed" for e in events)
