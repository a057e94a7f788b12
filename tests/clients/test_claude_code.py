"""Claude Code (``@anthropic-ai/claude-code``, headless ``claude -p … --output-format stream-json``) against
`corral serve`, run as a user would: its own system prompt and 24 tools, its default ``max_tokens`` and
thinking, no output-token overrides, a throwaway HOME so no user config is read.

- A turn on the real llama.cpp server (bundled gemma, 32k context, the bundled tools template): it ends,
  and its time is llama.cpp's prompt processing plus the output the gateway capped (``max_output_tokens``),
  nothing else. One such run only: its ~19k-token prompt costs minutes of prompt processing on two cores.
- A tool turn on scripted backends (the small model cannot call tools): the backend asks for ``Read`` on a
  file, Claude Code reads it and sends the ``tool_result`` back, the backend's second reply ends the turn.
  Both paths: an Anthropic backend (passed through) and a llama.cpp one (translated onto its chat route).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.gateway.anthropic.routes import AnthropicMessages
from corral.manager.bundled import BUNDLED_TEMPLATE
from corral.manager.engine import EngineProcess

from ..conftest import start_engine
from ..gateway.conftest import GATEWAY_KEY, RunningGateway, gateway_config
from ..gateway.scripted import Call, Scripted, Text
from ..npm_tools import npm_tool

CLAUDE_CODE_VERSION = "2.1.197"  # the version whose requests are in tests/gateway/data/claude_code
OUTPUT_CAP = 48  # [models.gemma] max_output_tokens: what bounds a request (Claude Code asks for 32,000+)
TEMPLATES = Path(__file__).parents[1] / "gateway" / "templates"


@pytest.fixture(scope="session")
def claude_code() -> Path:
    return npm_tool("@anthropic-ai/claude-code", CLAUDE_CODE_VERSION, "claude")


def run_claude(exe: Path, home: Path, url: str, prompt: str, *args: str, timeout: float = 300) -> dict[str, Any]:
    """``claude -p PROMPT --output-format stream-json --verbose`` in a throwaway home, working in
    ``home/work``; its events, the final ``result`` event, and the wall time."""
    work = home / "work"
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE", "API_TIMEOUT"))}
    env |= {
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": url,
        "ANTHROPIC_API_KEY": GATEWAY_KEY,
        "ANTHROPIC_MODEL": "gemma",  # a [models] name; the haiku one serves Claude Code's background calls
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "gemma",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        # README's setting for a CPU: the prompt takes minutes, more than Claude Code's 300 s stream idle limit
        "CLAUDE_STREAM_IDLE_TIMEOUT_MS": "1800000",
    }
    cmd = [str(exe), "-p", prompt, "--output-format", "stream-json", "--verbose", *args]
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    seconds = time.monotonic() - started
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0, f"claude exit {done.returncode}: {done.stderr[-2000:]}\n{done.stdout[-3000:]}"
    result = next((e for e in events if e.get("type") == "result"), None)
    assert result is not None and result.get("is_error") is False, done.stdout[-3000:]
    return {"events": events, "result": result, "seconds": seconds}


# -- a turn on the real llama.cpp server -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def long_context_engine(gguf_path: Path) -> Iterator[EngineProcess]:
    """The bundled model with room for Claude Code's prompt and tools (32k tokens, one slot) and the
    bundled tools template, without the demo's 128-token -n: the gateway's cap is what limits a request.
    A default grammar ends each answer after a short line, as an instruct model would end its turn: the
    bundled base model rarely stops, and Claude Code answers an answer cut at max_tokens by asking to
    continue, three times, then fails the turn. Flash attention and a 2048-token batch speed up the prompt."""
    engine = start_engine(
        gguf_path, "-c", "32768", "-np", "1", "--props", "--slots", "--metrics", "--jinja",
        "--chat-template-file", str(BUNDLED_TEMPLATE), "--grammar-file", str(TEMPLATES / "short-answer.gbnf"),
        "-fa", "on", "-b", "2048", "-ub", "2048",
    )  # fmt: skip
    yield engine
    engine.stop()


def engine_metrics(engine: EngineProcess) -> dict[str, float]:
    text = httpx.get(f"{engine.url}/metrics", timeout=30).text
    pairs = (line.split() for line in text.splitlines() if line and not line.startswith("#"))
    return {p[0].removeprefix("llamacpp:"): float(p[1]) for p in pairs if len(p) == 2}


@pytest.mark.live
@pytest.mark.timeout(1200)  # minutes of prompt processing on two shared cores
def test_a_claude_code_turn_on_the_real_llama_server_is_prompt_processing_plus_the_capped_output(
    claude_code: Path, long_context_engine: EngineProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = long_context_engine
    sent: list[dict[str, Any]] = []  # the bodies Claude Code sent, as the gateway read them
    parse = AnthropicMessages.parse
    monkeypatch.setattr(AnthropicMessages, "parse", lambda self, body, raw: sent.append(body) or parse(self, body, raw))
    provider = {"type": "llamacpp", "base_url": engine.url, "timeout": 900}
    models = {"gemma": {"provider": "local", "max_output_tokens": OUTPUT_CAP}}
    gw = RunningGateway(gateway_config({"local": provider}, gateway={"api_keys": [GATEWAY_KEY]}, models=models))
    before = engine_metrics(engine)
    try:
        run = run_claude(claude_code, tmp_path / "home", gw.url, "Say hi.", timeout=900)
    except BaseException:
        gw.stop()
        raise
    after = engine_metrics(engine)
    # What corral's count_tokens says of the same request (Claude Code's context accounting), before
    # the gateway stops; llama.cpp's own count is the prompt it processed.
    assert len(sent) == 1
    ask = {k: sent[0][k] for k in ("model", "messages", "system", "tools") if k in sent[0]}
    count = httpx.post(f"{gw.url}/v1/messages/count_tokens", json=ask, headers={"x-api-key": GATEWAY_KEY}, timeout=60)
    gw.stop()
    figures = {k: after[k] - before.get(k, 0.0) for k in ("prompt_tokens_total", "prompt_seconds_total",
               "tokens_predicted_total", "tokens_predicted_seconds_total")}  # fmt: skip
    print(
        f"\nClaude Code {CLAUDE_CODE_VERSION} on llama.cpp: prompt {figures['prompt_tokens_total']:.0f} tokens in "
        f"{figures['prompt_seconds_total'] * 1000:.0f} ms, output {figures['tokens_predicted_total']:.0f} tokens in "
        f"{figures['tokens_predicted_seconds_total'] * 1000:.0f} ms, turn {run['seconds']:.1f} s; "
        f"count_tokens {count.json().get('input_tokens')}"
    )
    processed = figures["prompt_tokens_total"]
    assert count.status_code == 200 and abs(count.json()["input_tokens"] - processed) <= processed * 0.02
    result = run["result"]
    assert result["subtype"] == "success" and result["num_turns"] == 1 and result["result"].strip()
    # The gateway's cap reached llama.cpp: Claude Code's 32,000 (with its thinking budget) became 48.
    slot = httpx.get(f"{engine.url}/slots", timeout=30).json()[0]
    assert sent[0]["max_tokens"] >= 32000 and slot["params"]["n_predict"] == OUTPUT_CAP
    # One request reached llama.cpp: the whole prompt with the 24 tools, and at most the capped output.
    assert figures["prompt_tokens_total"] > 15000
    assert 1 <= figures["tokens_predicted_total"] <= OUTPUT_CAP
    assert result["usage"]["output_tokens"] <= OUTPUT_CAP and result["usage"]["input_tokens"] > 15000
    # The turn is the engine's work and nothing else: Claude Code's start and exit take seconds.
    engine_seconds = figures["prompt_seconds_total"] + figures["tokens_predicted_seconds_total"]
    assert run["seconds"] - engine_seconds < 60, (run["seconds"], engine_seconds)


# -- a tool turn on scripted backends ----------------------------------------------------------------------------
def scripted_read_turn(path: Path) -> Scripted:
    """First reply: Claude Code's ``Read`` on ``path``; second: the final text."""
    return Scripted([Call("Read", {"file_path": str(path)}), Text("The note says corral-cc-ok.")])


@pytest.mark.parametrize("kind", ["anthropic", "llamacpp"], ids=["passed-through", "translated"])
def test_a_claude_code_tool_turn_carries_the_tool_result_both_ways(
    claude_code: Path, tmp_path: Path, kind: str
) -> None:
    home = tmp_path / "home"
    note = home / "work" / "note.txt"
    note.parent.mkdir(parents=True)
    note.write_text("corral-cc-ok: the secret word is heliotrope\n")
    up = scripted_read_turn(note)
    path = "/v1/messages" if kind == "anthropic" else "/v1/chat/completions"
    provider = {"type": kind, "base_url": up.url, "api_key": "k"}
    models = {"gemma": {"provider": "up", "max_output_tokens": 4096}}
    gw = RunningGateway(gateway_config({"up": provider}, gateway={"api_keys": [GATEWAY_KEY]}, models=models))
    try:
        run = run_claude(claude_code, home, gw.url, "What does note.txt say?", timeout=300)
    finally:
        gw.stop()
        up.close()
    first, second = up.bodies(path)[:2]
    # Claude Code's own request reached the backend, its 32,000-token ask clamped by the gateway.
    tools = first["tools"]
    names = {t["name"] if kind == "anthropic" else t["function"]["name"] for t in tools}
    assert {"Read", "Bash", "Write"} <= names and len(names) >= 20
    assert first["max_tokens"] == 4096
    # Claude Code ran the Read and sent its result back: the file's content reached the backend.
    assert "heliotrope" in json.dumps(second["messages"])
    if kind == "anthropic":
        results = [b for m in second["messages"] if m["role"] == "user" and isinstance(m["content"], list)
                   for b in m["content"] if b.get("type") == "tool_result"]  # fmt: skip
        assert results and results[-1]["tool_use_id"] == "toolu_scripted_1"  # the id the backend gave
    else:
        results = [m for m in second["messages"] if m["role"] == "tool"]
        assert results and results[-1]["tool_call_id"] == "call_scripted_1" and "heliotrope" in json.dumps(results)
    # Its events show the call, the result, and the backend's final text as the turn's answer.
    events = run["events"]
    uses = [b for e in events if e.get("type") == "assistant" for b in e["message"]["content"]
            if b.get("type") == "tool_use"]  # fmt: skip
    assert [(u["name"], u["input"]) for u in uses] == [("Read", {"file_path": str(note)})]
    assert run["result"]["result"] == "The note says corral-cc-ok." and run["result"]["num_turns"] == 2
