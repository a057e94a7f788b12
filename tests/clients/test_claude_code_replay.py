"""The exact requests Claude Code 2.1.197 sent (tests/gateway/data/claude_code: a 27 KB system prompt,
24 tools, betas, ``context_management``, ``cache_control``, ``output_config``, a mid-conversation system
message, adaptive and budgeted thinking, tool results), replayed with their headers through both paths:

- passed through to an Anthropic backend: it gets the body as sent (model and output limit aside) and
  Claude Code's betas, and the client gets the backend's answer;
- translated for a llama.cpp backend (canned): the system prompt, the tools and the history reach its
  chat route, and the client gets a valid Anthropic answer, streamed or whole as it asked.

And Claude Code's own count_tokens request on the real llama.cpp server, against llama.cpp's own count."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pydantic
import pytest

from ..gateway.canned import Canned, Reply, json_reply, sse, sse_reply
from ..gateway.conftest import GATEWAY_KEY, RunningGateway, gateway_config
from ..gateway.test_wire_items import LlamaLike, chunk

DATA = Path(__file__).parents[1] / "gateway" / "data" / "claude_code"
CAPTURED = {p.stem: json.loads(p.read_text()) for p in sorted(DATA.glob("*.json"))}
MESSAGES = [name for name, c in CAPTURED.items() if c["path"] == "/v1/messages"]
CAP = 8192  # [gateway] max_output_tokens: Claude Code asks for 32,000 or 64,000

EVENT = pydantic.TypeAdapter(anthropic.types.RawMessageStreamEvent)


def send(gw: RunningGateway, name: str) -> httpx.Response:
    """The captured request as Claude Code sent it: its path, query, headers and bytes."""
    c = CAPTURED[name]
    headers = {k: v for k, v in c["headers"].items() if k.lower() not in ("content-length", "host")}
    headers["x-api-key"] = GATEWAY_KEY
    return httpx.post(f"{gw.url}{c['path']}", params=c["query"], headers=headers, content=json.dumps(c["body"]),
                      timeout=30)  # fmt: skip


def answer_of(r: httpx.Response, stream: bool) -> anthropic.types.Message:
    """The Anthropic answer, each streamed event checked against the SDK's types and assembled."""
    assert r.status_code == 200, r.text
    if not stream:
        return anthropic.types.Message.model_validate(r.json())
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [EVENT.validate_python(json.loads(line[6:])) for line in r.text.splitlines() if line.startswith("data: ")]
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "message_delta" in kinds
    message = events[0].message.model_dump()  # type: ignore[union-attr]
    blocks: dict[int, Any] = {}
    for e in events:
        if e.type == "content_block_start":
            blocks[e.index] = e.content_block.model_dump()
        elif e.type == "content_block_delta" and e.delta.type == "text_delta":
            blocks[e.index]["text"] += e.delta.text
        elif e.type == "message_delta":
            message["stop_reason"] = e.delta.stop_reason
    return anthropic.types.Message.model_validate({**message, "content": [blocks[i] for i in sorted(blocks)]})


def texts(content: Any) -> list[str]:
    """The texts of a message's content: a string, text blocks, and tool results' contents."""
    if isinstance(content, str):
        return [content]
    found: list[str] = []
    for block in content:
        if block.get("type") == "text":
            found.append(block["text"])
        elif block.get("type") == "tool_result":
            found += texts(block.get("content", ""))
    return found


# -- passed through to an Anthropic backend ------------------------------------------------------------------
def _anthropic_answer(body: dict[str, Any]) -> Reply:
    message = {"id": "msg_up", "type": "message", "role": "assistant", "model": body["model"],
               "stop_reason": "end_turn", "stop_sequence": None}  # fmt: skip
    usage = {"input_tokens": 21000, "output_tokens": 2}
    if not body.get("stream"):
        return json_reply({**message, "content": [{"type": "text", "text": "hi"}], "usage": usage})
    events = [
        {"type": "message_start", "message": {**message, "stop_reason": None, "content": [], "usage": usage}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": usage},
        {"type": "message_stop"},
    ]
    return sse_reply([f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events])


@pytest.fixture(scope="module")
def anthropic_up() -> Iterator[Canned]:
    server = Canned({"/v1/messages": _anthropic_answer})
    yield server
    server.close()


@pytest.fixture(scope="module")
def passing(anthropic_up: Canned) -> Iterator[RunningGateway]:
    provider = {"type": "anthropic", "base_url": anthropic_up.url, "api_key": "sk-ant-upstream-canary-0001"}
    keys = {"api_keys": [GATEWAY_KEY], "max_output_tokens": CAP}
    gw = RunningGateway(gateway_config({"claude": provider}, gateway=keys))
    yield gw
    gw.stop()


@pytest.mark.parametrize("name", MESSAGES)
def test_claude_codes_requests_pass_through_to_anthropic_as_sent(
    passing: RunningGateway, anthropic_up: Canned, name: str
) -> None:
    sent = CAPTURED[name]["body"]
    r = send(passing, name)
    message = answer_of(r, bool(sent.get("stream")))
    assert message.model == sent["model"] and message.content[0].text == "hi"  # type: ignore[union-attr]
    _, headers, raw = anthropic_up.requests[-1]
    got = json.loads(raw)
    # As sent, but for the output limit (and a thinking budget, which must stay below it).
    expected = {**sent, "max_tokens": CAP}
    if sent.get("thinking", {}).get("type") == "enabled":
        expected["thinking"] = {**sent["thinking"], "budget_tokens": CAP - 1}
    assert got == expected
    assert r.headers["x-corral-max-tokens"] == f"requested={sent['max_tokens']}; applied={CAP}; by=max_output_tokens"
    lower = {k.lower(): v for k, v in headers.items()}
    # Claude Code's betas go with it: Anthropic refuses context_management without its beta.
    assert lower["anthropic-beta"] == CAPTURED[name]["headers"]["anthropic-beta"]
    assert lower["x-api-key"] == "sk-ant-upstream-canary-0001" and GATEWAY_KEY not in json.dumps(lower)


# -- translated for a llama.cpp backend ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaLike]:
    server = LlamaLike(n_ctx=200_000)  # room for the 64,000 asked: the model's cap is what applies
    server.stream = sse(chunk({"role": "assistant", "content": "Hi"}), chunk({"content": " there."}), chunk({}, "stop"),
                        {"choices": [], "usage": {"prompt_tokens": 19000, "completion_tokens": 3}})  # fmt: skip
    yield server
    server.server.close()


@pytest.fixture(scope="module")
def translating(llama: LlamaLike) -> Iterator[RunningGateway]:
    gw = RunningGateway(gateway_config({"local": {"type": "llamacpp", "base_url": llama.server.url}},
                                       gateway={"api_keys": [GATEWAY_KEY], "max_output_tokens": CAP}))  # fmt: skip
    yield gw
    gw.stop()


@pytest.mark.parametrize("name", MESSAGES)
def test_claude_codes_requests_are_translated_for_llama_cpp(
    translating: RunningGateway, llama: LlamaLike, name: str
) -> None:
    sent = CAPTURED[name]["body"]
    r = send(translating, name)
    message = answer_of(r, bool(sent.get("stream")))
    assert message.model == sent["model"] and message.role == "assistant" and message.stop_reason == "end_turn"
    assert [(b.type, b.text) for b in message.content] == [("text", "Hi there.")]  # type: ignore[union-attr]
    up = llama.server.last("/v1/chat/completions")
    # Everything the model needs arrived in OpenAI's shape: the tools, the system prompt, the turns.
    assert [t["function"]["name"] for t in up["tools"]] == [t["name"] for t in sent["tools"]]
    assert up["tools"][0]["function"]["parameters"] == sent["tools"][0]["input_schema"]
    upstream = [m["content"] for m in up["messages"] if isinstance(m["content"], str)]
    # The system prompt and a mid-conversation system message become the one system message.
    assert up["messages"][0]["role"] == "system"
    system = texts(sent["system"]) + [t for m in sent["messages"] if m["role"] == "system" for t in texts(m["content"])]
    billing = [t for t in system if t.startswith("x-anthropic-billing-header:")]
    assert billing and all(t not in up["messages"][0]["content"] for t in billing)  # per-conversation: no prompt cache
    for text in system:
        assert text in billing or text.strip() in up["messages"][0]["content"]
    # The last turn (the user's words, or the tool result Claude Code sends back) arrived.
    assert up["messages"][-1]["role"] in ("user", "tool")
    for text in texts(sent["messages"][-1]["content"]):
        assert any(text.strip() in u for u in upstream), text[:200]
    assert up["max_tokens"] == CAP and up["stream"] is True  # a whole answer is streamed upstream, assembled here
    assert "cache_control" not in json.dumps(up) and "context_management" not in up


# -- count_tokens on the real llama.cpp server ----------------------------------------------------------------
@pytest.mark.live
def test_claude_codes_count_tokens_matches_llama_cpps_own_count(templated_server: Any) -> None:
    """Claude Code counts its tool definitions with "foo" + 16 tools: corral's answer (on the bundled tools
    template) against llama.cpp rendering and tokenizing the same conversation and tools itself."""
    gw = RunningGateway(gateway_config({"tpl": {"type": "llamacpp", "base_url": templated_server.url}},
                                       gateway={"api_keys": [GATEWAY_KEY]}))  # fmt: skip
    try:
        r = send(gw, "count_tokens_tools")
    finally:
        gw.stop()
    assert r.status_code == 200, r.text
    counted = r.json()["input_tokens"]
    body = CAPTURED["count_tokens_tools"]["body"]
    tools = [{"type": "function", "function": {"name": t["name"], "description": t.get("description", ""),
              "parameters": t["input_schema"]}} for t in body["tools"]]  # fmt: skip
    prompt = httpx.post(f"{templated_server.url}/apply-template", json={"messages": body["messages"], "tools": tools},
                        timeout=30).json()["prompt"]  # fmt: skip
    own = len(httpx.post(f"{templated_server.url}/tokenize", json={"content": prompt, "add_special": True},
                         timeout=30).json()["tokens"])  # fmt: skip
    print(f"\ncount_tokens (foo + {len(tools)} tools): corral {counted}, llama.cpp {own}, "
          f"{(counted - own) / own * 100:+.2f} %")  # fmt: skip
    assert own > 3000 and abs(counted - own) <= own * 0.02
