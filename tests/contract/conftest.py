"""The provider contract suite's canned APIs.

One respx router answers for four cloud/local APIs and a recorded llama-server, each in its own
wire format, taken from the public API documentation and the servers' sources:

* OpenAI chat completions (``chat.completion`` / ``chat.completion.chunk`` SSE ending in ``[DONE]``),
* Anthropic Messages (``message`` / ``event:``-named SSE from ``message_start`` to ``message_stop``),
* Ollama's native ``/api/chat`` (one JSON object / NDJSON lines, the last ``done: true`` with stats),
* llama-swap (llama-server's OpenAI shape under ``/v1``, streams opened by its loading-state chunks),
* llama-server itself (its OpenAI shape plus ``timings``; ``/props`` for the tools probe).

Each responder first *reads* the request the way that API would and asserts what the API requires
(headers, field names, block shapes, role alternation, tool-call/tool-result pairing…), reducing it
to a provider-neutral :class:`Ask`; then it answers the same :func:`decide`-d reply in its own
format. A failed assertion inside a responder fails the test that sent the request; every failure
is also kept in ``FakeAPIs.failures`` and re-raised at teardown of a test that passed anyway, so
nothing on the way (an ``except``, a retry) can swallow it.

Traffic to 127.0.0.1 (the real llama.cpp server of the live tests) passes through the router.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import pytest
import respx

# -- the one configuration ------------------------------------------------------------------------------

LLAMACPP_FAKE = "http://llama-server.test:8080"  # the recorded llama-server (tool calls, errors)
OPENAI_BASE = "https://api.openai-compatible.test/v1"
ANTHROPIC_BASE = "https://api.anthropic.test"
OLLAMA_BASE = "http://ollama.test:11434"
SWAP_BASE = "http://swap.test:8080"

OPENAI_KEY = "sk-proj-contract-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-api03-contract-0123456789abcdef"
MODELS = {"openai": "gpt-4.1-mini", "anthropic": "claude-sonnet-4-5", "ollama": "llama3.2", "llama-swap": "qwen2.5-7b"}

#: The configuration every contract test starts from; tests change only ``default_provider``
#: (the live tests point ``llamacpp`` at the real server, see :func:`contract_config`).
CONFIG: dict[str, Any] = {
    "default_provider": "llamacpp",
    "providers": {
        "llamacpp": {"type": "llamacpp", "base_url": LLAMACPP_FAKE},
        "openai": {"type": "openai", "base_url": OPENAI_BASE, "api_key": OPENAI_KEY, "model": MODELS["openai"]},
        "anthropic": {
            "type": "anthropic",
            "base_url": ANTHROPIC_BASE,
            "api_key": ANTHROPIC_KEY,
            "model": MODELS["anthropic"],
        },
        "ollama": {"type": "ollama", "base_url": OLLAMA_BASE, "model": MODELS["ollama"]},
        "llama-swap": {"type": "llama-swap", "base_url": SWAP_BASE, "model": MODELS["llama-swap"]},
    },
}
PROVIDERS = ("llamacpp", "openai", "anthropic", "ollama", "llama-swap")
CANNED = ("openai", "anthropic", "ollama", "llama-swap")

CHAT_URLS = {
    "llamacpp": f"{LLAMACPP_FAKE}/v1/chat/completions",
    "openai": f"{OPENAI_BASE}/chat/completions",
    "anthropic": f"{ANTHROPIC_BASE}/v1/messages",
    "ollama": f"{OLLAMA_BASE}/api/chat",
    "llama-swap": f"{SWAP_BASE}/v1/chat/completions",
}

# -- what the application asks, what the canned model answers --------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ROUND_TRIP = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "18 C and sunny"},
]
PARIS = {"city": "Paris"}
TOOL_RESULT = "18 C and sunny"
#: the canned model's get_weather arguments, streamed in these fragments (they join to valid JSON)
ARG_FRAGMENTS = ('{"ci', 'ty": "Pa', 'ris"}')
GREETING = ("Hello", "! I am", " a canned", " model.")
ANSWER = ("It is 18 C", " and sunny", " in Paris.")
PERSON = {"name": "Ada", "age": 36}
PERSON_FRAGMENTS = ('{"name": "Ada"', ', "age"', ": 36}")

#: usage every canned API reports, each in its own fields: 11 prompt tokens (4 of them from the
#: prompt cache, where the API says so) and 7 completion tokens
PROMPT_TOKENS, COMPLETION_TOKENS, CACHED_TOKENS = 11, 7, 4

#: tool-call ids the canned APIs issue (Ollama's documented answers carry none)
ISSUED_IDS: dict[str, str | None] = {
    "openai": "call_Qm9vT2ZQYXJpczIwMjU",
    "anthropic": "toolu_01A09q90qw90lq917835lq9",
    "ollama": None,
    "llama-swap": "call_c3dhcHBlZFBhcmlz",
    "llamacpp": "Kd3fQx8ZpLr2Ws9TbVn4HmYcUe7A1oJi",  # llama-server: 32 random alphanumerics
}

assert json.loads("".join(ARG_FRAGMENTS)) == PARIS and json.loads("".join(PERSON_FRAGMENTS)) == PERSON


@dataclass
class Ask:
    """A request as the API understood it, reduced to what the canned model needs."""

    provider: str
    stream: bool
    system: str | None = None
    user_texts: list[str] = field(default_factory=list)
    tools: list[tuple[str, str | None, Any]] = field(default_factory=list)  # name, description, schema
    tool_choice: str | None = None  # "auto", "none", "required" or a tool name
    schema: Mapping[str, Any] | None = None  # structured output asked for
    history_calls: list[tuple[str | None, str, Any]] = field(default_factory=list)  # id, name, arguments
    results: list[tuple[str | None, str]] = field(default_factory=list)  # answered call id, content
    answering: bool = False  # the conversation ends with tool results: the model answers them
    max_tokens: int | None = None
    temperature: float | None = None


@dataclass(frozen=True)
class Reply:
    pieces: tuple[str, ...] = ()  # text, streamed piece by piece
    call: bool = False  # get_weather(city="Paris")
    json: bool = False  # PERSON as structured output


def decide(ask: Ask, person: tuple[str, ...] = PERSON_FRAGMENTS) -> Reply:
    if ask.schema is not None:
        check_person_schema(ask.schema)
        return Reply(pieces=person, json=True)
    if ask.answering:
        assert all(isinstance(content, str) and content for _, content in ask.results), ask.results
        return Reply(pieces=ANSWER)
    if ask.tools and ask.tool_choice != "none":
        return Reply(call=True)
    return Reply(pieces=GREETING)


def check_person_schema(schema: Mapping[str, Any]) -> None:
    """The canned model answers PERSON: the schema must be the app's Person model."""
    assert schema.get("type") == "object", schema
    props = schema.get("properties", {})
    assert props["name"]["type"] == "string" and props["age"]["type"] == "integer", schema
    assert set(schema.get("required", ())) == {"name", "age"}, schema


# -- request checks shared by the OpenAI-shaped APIs --------------------------------------------------------

_OPENAI_FIELDS = {
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop", "stream",
    "stream_options", "tools", "tool_choice", "response_format", "n", "user", "parallel_tool_calls",
}  # fmt: skip
_LLAMA_SERVER_FIELDS = _OPENAI_FIELDS | {
    "json_schema", "grammar", "cache_prompt", "n_predict", "top_k", "min_p", "timings_per_token", "verbose",
    "chat_template_kwargs", "thinking_budget_tokens", "reasoning_effort", "logprobs", "top_logprobs",
}  # fmt: skip


def _openai_tool(tool: Any) -> tuple[str, str | None, Any]:
    assert isinstance(tool, dict) and tool.get("type") == "function", tool
    fn = tool["function"]
    assert set(fn) <= {"name", "description", "parameters", "strict"}, fn
    return fn["name"], fn.get("description"), fn.get("parameters")


def parse_openai_family(variant: str, request: httpx.Request) -> Ask:
    """OpenAI's chat-completions request, as OpenAI, llama-swap (→ llama-server) or llama-server read it."""
    headers = request.headers
    assert headers["content-type"] == "application/json"
    expected_auth = {"openai": f"Bearer {OPENAI_KEY}", "llama-swap": "Bearer no-key", "llamacpp": None}[variant]
    assert headers.get("authorization") == expected_auth, headers.get("authorization")
    body = json.loads(request.content)
    allowed = _OPENAI_FIELDS if variant == "openai" else _LLAMA_SERVER_FIELDS
    assert set(body) <= allowed, f"fields the API does not know: {set(body) - allowed}"
    assert body.get("model") == MODELS.get(variant), body.get("model")
    assert "max_completion_tokens" not in body  # an OpenAI-compatible host, not api.openai.com
    ask = Ask(variant, bool(body.get("stream")), max_tokens=body.get("max_tokens"), temperature=body.get("temperature"))
    if ask.stream:
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}, body
    else:
        assert "stream_options" not in body
    messages = body["messages"]
    assert messages, "messages must not be empty"
    open_calls: dict[str, str] = {}
    for i, m in enumerate(messages):
        role = m["role"]
        assert role in ("system", "user", "assistant", "tool"), m
        if role == "system":
            assert i == 0 and isinstance(m["content"], str), m
            ask.system = m["content"]
        elif role == "user":
            assert isinstance(m["content"], str | list), m
            ask.user_texts.append(m["content"] if isinstance(m["content"], str) else json.dumps(m["content"]))
        elif role == "assistant":
            for tc in m.get("tool_calls") or ():
                assert set(tc) == {"id", "type", "function"} and tc["type"] == "function", tc
                assert isinstance(tc["id"], str) and tc["id"], tc
                args = tc["function"]["arguments"]
                assert isinstance(args, str), f"OpenAI tool-call arguments are JSON text, got {args!r}"
                ask.history_calls.append((tc["id"], tc["function"]["name"], json.loads(args)))
                open_calls[tc["id"]] = tc["function"]["name"]
            if m.get("tool_calls"):
                assert m.get("content") in (None, ""), m
        else:  # tool
            assert set(m) == {"role", "tool_call_id", "content"}, m
            assert m["tool_call_id"] in open_calls, f"tool result for an unknown call: {m}"
            ask.results.append((m["tool_call_id"], m["content"]))
    ask.answering = messages[-1]["role"] == "tool"
    ask.tools = [_openai_tool(t) for t in body.get("tools") or ()]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        ask.tool_choice = choice["function"]["name"]
    else:
        assert choice in (None, "auto", "none", "required"), choice
        ask.tool_choice = choice or ("auto" if ask.tools else None)
    rf = body.get("response_format")
    if variant == "llamacpp":
        # llama-server gets the schema as its native json_schema field (compiled to a grammar)
        assert rf is None, rf
        ask.schema = body.get("json_schema")
    elif rf is not None:
        assert rf["type"] == "json_schema" and set(rf["json_schema"]) <= {"name", "schema", "strict", "description"}
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", rf["json_schema"]["name"]), rf
        ask.schema = rf["json_schema"]["schema"]
    return ask


# -- Anthropic Messages ---------------------------------------------------------------------------------------

_ANTHROPIC_FIELDS = {
    "model", "max_tokens", "messages", "system", "temperature", "top_p", "top_k", "stop_sequences", "stream",
    "tools", "tool_choice", "metadata", "thinking", "service_tier",
}  # fmt: skip
_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")


def parse_anthropic(request: httpx.Request) -> Ask:
    headers = request.headers
    assert headers["x-api-key"] == ANTHROPIC_KEY and "authorization" not in headers, dict(headers)
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["content-type"] == "application/json"
    body = json.loads(request.content)
    assert set(body) <= _ANTHROPIC_FIELDS, f"fields the API does not know: {set(body) - _ANTHROPIC_FIELDS}"
    assert body["model"] == MODELS["anthropic"]
    assert isinstance(body["max_tokens"], int) and body["max_tokens"] >= 1, "max_tokens is required"
    ask = Ask(
        "anthropic", body.get("stream") is True, max_tokens=body["max_tokens"], temperature=body.get("temperature")
    )
    assert body.get("stream") in (None, True)
    system = body.get("system")
    assert system is None or isinstance(system, str), system
    ask.system = system
    messages = body["messages"]
    assert messages and messages[0]["role"] == "user", "the conversation must open with a user turn"
    pending: dict[str, str] = {}  # tool_use ids of the previous assistant turn, awaiting their results
    seen_ids: set[str] = set()
    for i, m in enumerate(messages):
        assert set(m) == {"role", "content"}, m
        assert m["role"] == ("user" if i % 2 == 0 else "assistant"), "user and assistant turns must alternate"
        blocks = m["content"]
        if isinstance(blocks, str):
            blocks = [{"type": "text", "text": blocks}]
        assert blocks, m
        if m["role"] == "user":
            kinds = [b["type"] for b in blocks]
            assert kinds == sorted(kinds, key=lambda k: k != "tool_result"), "tool_result blocks must come first"
            answered = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
            assert sorted(answered) == sorted(pending), f"every tool_use needs its tool_result: {answered} {pending}"
            pending = {}
        else:
            assert not pending
        for b in blocks:
            kind = b["type"]
            if kind == "text":
                assert set(b) == {"type", "text"} and b["text"], b
                if m["role"] == "user":
                    ask.user_texts.append(b["text"])
            elif kind == "tool_use":
                assert m["role"] == "assistant" and set(b) == {"type", "id", "name", "input"}, b
                assert _TOOL_ID.fullmatch(b["id"]), f"tool_use id {b['id']!r} does not match ^[a-zA-Z0-9_-]+$"
                # the API answers 400 "messages.N.content.M: `tool_use` ids must be unique"
                assert b["id"] not in seen_ids, f"`tool_use` ids must be unique: {b['id']!r} again"
                seen_ids.add(b["id"])
                assert isinstance(b["input"], dict), f"tool_use input must be an object, got {b['input']!r}"
                pending[b["id"]] = b["name"]
                ask.history_calls.append((b["id"], b["name"], b["input"]))
            elif kind == "tool_result":
                assert m["role"] == "user" and set(b) <= {"type", "tool_use_id", "content", "is_error"}, b
                content = b.get("content", "")
                text = content if isinstance(content, str) else "".join(p["text"] for p in content)
                ask.results.append((b["tool_use_id"], text))
            else:
                raise AssertionError(f"unexpected content block {b!r}")
    assert not pending, f"tool_use blocks without a tool_result after them: {pending}"
    last = messages[-1]["content"]
    ask.answering = isinstance(last, list) and last[-1]["type"] == "tool_result"
    tools: list[tuple[str, str | None, Any]] = []
    for t in body.get("tools") or ():
        assert set(t) <= {"name", "description", "input_schema", "cache_control"}, f"not an Anthropic tool: {t}"
        assert t["input_schema"].get("type") == "object", t
        tools.append((t["name"], t.get("description"), t["input_schema"]))
    choice = body.get("tool_choice")
    if choice is not None:
        assert choice["type"] in ("auto", "any", "tool", "none"), choice
        if choice["type"] == "tool":
            assert choice["name"] in [name for name, _, _ in tools], choice
    names = [name for name, _, _ in tools]
    if choice == {"type": "tool", "name": "json_output"}:
        ask.schema = tools[names.index("json_output")][2]
        tools = [t for t in tools if t[0] != "json_output"]
        choice = None  # the app asked for structured output, not for a tool
    else:
        assert "json_output" not in names
    ask.tools = tools
    if choice is None:
        ask.tool_choice = "auto" if tools else None
    elif choice["type"] == "tool":
        ask.tool_choice = choice["name"]
    else:
        ask.tool_choice = {"auto": "auto", "any": "required", "none": "none"}[choice["type"]]
    return ask


# -- Ollama /api/chat ---------------------------------------------------------------------------------------


def parse_ollama(request: httpx.Request) -> Ask:
    assert "authorization" not in request.headers  # no key configured
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.content)
    allowed = {"model", "messages", "tools", "format", "options", "stream", "keep_alive", "think"}
    assert set(body) <= allowed, f"fields the API does not know: {set(body) - allowed}"
    assert body["model"] == MODELS["ollama"]
    # Ollama streams unless told otherwise: a non-streamed call must say stream: false.
    assert isinstance(body.get("stream"), bool), "stream must be sent explicitly"
    options = body.get("options", {})
    assert set(options) <= {"num_predict", "temperature", "top_p", "seed", "stop", "num_ctx", "top_k"}, options
    ask = Ask("ollama", body["stream"], max_tokens=options.get("num_predict"), temperature=options.get("temperature"))
    calls: dict[str, str] = {}
    for i, m in enumerate(body["messages"]):
        assert m["role"] in ("system", "user", "assistant", "tool"), m
        assert isinstance(m["content"], str), f"Ollama message content is a string: {m}"
        if m["role"] == "system":
            assert i == 0, m
            ask.system = m["content"]
        elif m["role"] == "user":
            ask.user_texts.append(m["content"])
        elif m["role"] == "assistant":
            for tc in m.get("tool_calls") or ():
                assert set(tc) <= {"id", "function"} and set(tc["function"]) <= {"name", "arguments", "index"}, tc
                args = tc["function"]["arguments"]
                assert isinstance(args, dict), f"Ollama tool-call arguments are an object, got {args!r}"
                ask.history_calls.append((tc.get("id"), tc["function"]["name"], args))
                calls[tc.get("id") or tc["function"]["name"]] = tc["function"]["name"]
        else:  # tool: Ollama matches the result to its call by tool_name
            assert set(m) <= {"role", "content", "tool_name", "tool_call_id"}, m
            assert m.get("tool_name") in calls.values(), f"tool result without the name of its call: {m}"
            if m.get("tool_call_id") is not None:
                assert calls.get(m["tool_call_id"]) == m["tool_name"], m
            ask.results.append((m.get("tool_call_id"), m["content"]))
    ask.answering = body["messages"][-1]["role"] == "tool"
    ask.tools = [_openai_tool(t) for t in body.get("tools") or ()]
    ask.tool_choice = "auto" if ask.tools else None  # Ollama has no tool_choice
    fmt = body.get("format")
    if fmt is not None:
        assert isinstance(fmt, dict), f"a JSON schema goes into format, got {fmt!r}"
        ask.schema = fmt
    return ask


# -- answers in each wire format ----------------------------------------------------------------------------

CREATED = 1741569952


class Chunked(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body delivered in small pieces, to sync and async clients alike (split anywhere)."""

    def __init__(self, body: bytes, step: int = 13) -> None:
        self.body, self.step = body, step

    def __iter__(self) -> Iterator[bytes]:
        for i in range(0, len(self.body), self.step):
            yield self.body[i : i + self.step]

    async def __aiter__(self) -> Any:
        for piece in self:
            yield piece


def sse(payloads: list[Any], *, done: bool = False, named: bool = False) -> bytes:
    out = []
    for p in payloads:
        out.append(f"event: {p['type']}\n" if named else "")
        out.append(f"data: {json.dumps(p, ensure_ascii=False)}\n\n")
    if done:
        out.append("data: [DONE]\n\n")
    return "".join(out).encode()


def streamed(body: bytes, content_type: str) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": content_type}, stream=Chunked(body))


def _oai_call(call_id: str | None, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}


def _oai_usage(variant: str) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS},
    }
    if variant == "openai":
        usage["prompt_tokens_details"]["audio_tokens"] = 0
        usage["completion_tokens_details"] = {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    return usage


LLAMA_TIMINGS = {
    "cache_n": CACHED_TOKENS,
    "prompt_n": PROMPT_TOKENS - CACHED_TOKENS,
    "prompt_ms": 31.2,
    "prompt_per_token_ms": 4.457,
    "prompt_per_second": 224.4,
    "predicted_n": COMPLETION_TOKENS,
    "predicted_ms": 92.5,
    "predicted_per_token_ms": 13.21,
    "predicted_per_second": 75.7,
}


def _oai_envelope(variant: str, obj: str) -> dict[str, Any]:
    if variant == "openai":
        return {
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "object": obj,
            "created": CREATED,
            "model": "gpt-4.1-mini-2025-04-14",
            "service_tier": "default",
            "system_fingerprint": "fp_b376dfbbd5",
        }
    return {  # llama-server, directly or behind llama-swap
        "created": CREATED,
        "id": "chatcmpl-uvJwIHRsujomfxdyJ7znJJ4Vo0ghszZD",
        "model": MODELS.get(variant, "gemma-3-270m-it-Q4_K_M.gguf"),
        "system_fingerprint": "b6000-ab12cd34",
        "object": obj,
    }


def openai_family_answer(variant: str, ask: Ask, reply: Reply) -> httpx.Response:
    finish = "tool_calls" if reply.call else "stop"
    call_id = ISSUED_IDS[variant]
    if not ask.stream:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(reply.pieces) or None}
        if reply.call:
            message["tool_calls"] = [_oai_call(call_id, "".join(ARG_FRAGMENTS))]
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish}
        if variant == "openai":
            message.update(refusal=None, annotations=[])
            choice["logprobs"] = None
        whole = {**_oai_envelope(variant, "chat.completion"), "choices": [choice], "usage": _oai_usage(variant)}
        if variant != "openai":
            whole["timings"] = LLAMA_TIMINGS
        return httpx.Response(200, json=whole)

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        c: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        out = {**_oai_envelope(variant, "chat.completion.chunk"), "choices": [c]}
        if variant == "openai":
            c["logprobs"] = None
            out["usage"] = None  # include_usage: null on every chunk but the last
        return out

    first: dict[str, Any] = {"role": "assistant", "content": "" if variant == "openai" else None}
    if variant == "openai":
        first["refusal"] = None
    chunks = [chunk(first)]
    chunks += [chunk({"content": piece}) for piece in reply.pieces]
    if reply.call:
        chunks.append(chunk({"tool_calls": [{"index": 0, **_oai_call(call_id, "")}]}))
        chunks += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": f}}]}) for f in ARG_FRAGMENTS]
    chunks.append(chunk({}, finish))
    final = {**_oai_envelope(variant, "chat.completion.chunk"), "choices": [], "usage": _oai_usage(variant)}
    if variant != "openai":
        final["timings"] = LLAMA_TIMINGS
    chunks.append(final)
    if variant == "llama-swap":
        chunks = SWAP_LOADING + chunks
    return streamed(sse(chunks, done=True), "text/event-stream")


def swap_loading(text: str) -> dict[str, Any]:
    """What llama-swap's loadingWriter.sendData marshals while it starts the model (sendLoadingState)."""
    return {"choices": [{"delta": {"reasoning_content": text}}]}


SWAP_LOADING = [
    swap_loading("━━━━━\n"),
    swap_loading(f"llama-swap loading model: {MODELS['llama-swap']}\n"),
    swap_loading("."),
    swap_loading("."),
    swap_loading("Done! (3.81s)\n"),
    swap_loading("━━━━━\n"),
]


def anthropic_answer(ask: Ask, reply: Reply) -> httpx.Response:
    usage = {
        "input_tokens": PROMPT_TOKENS - CACHED_TOKENS,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": CACHED_TOKENS,
        "output_tokens": COMPLETION_TOKENS,
        "service_tier": "standard",
    }
    if reply.call or reply.json:
        call_id = ISSUED_IDS["anthropic"] if reply.call else "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
        name, value, fragments = (
            ("get_weather", PARIS, ARG_FRAGMENTS) if reply.call else ("json_output", PERSON, reply.pieces)
        )
        block: dict[str, Any] = {"type": "tool_use", "id": call_id, "name": name, "input": value}
        stop = "tool_use"
    else:
        block = {"type": "text", "text": "".join(reply.pieces)}
        stop = "end_turn"
    message = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [block],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }
    if not ask.stream:
        return httpx.Response(200, json=message, headers={"request-id": "req_011CSHoEeqs5C35K2UUqR7Fy"})
    start_usage = {**usage, "output_tokens": 1}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {**message, "content": [], "stop_reason": None, "usage": start_usage}}
    ]
    if block["type"] == "text":
        events.append({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        events.append({"type": "ping"})
        deltas = [{"type": "text_delta", "text": p} for p in reply.pieces]
    else:
        events.append({"type": "content_block_start", "index": 0, "content_block": {**block, "input": {}}})
        events.append({"type": "ping"})
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in ("", *fragments)]
    events += [{"type": "content_block_delta", "index": 0, "delta": d} for d in deltas]
    events.append({"type": "content_block_stop", "index": 0})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": COMPLETION_TOKENS},
        }
    )
    events.append({"type": "message_stop"})
    return streamed(sse(events, named=True), "text/event-stream; charset=utf-8")


OLLAMA_STATS = {
    "total_duration": 182242375,
    "load_duration": 41295167,
    "prompt_eval_count": PROMPT_TOKENS,
    "prompt_eval_duration": 24573166,
    "eval_count": COMPLETION_TOKENS,
    "eval_duration": 115959084,
}


def ollama_answer(ask: Ask, reply: Reply) -> httpx.Response:
    def line(message: dict[str, Any], done: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": MODELS["ollama"],
            "created_at": "2025-07-07T20:22:19.184789Z",
            "message": {"role": "assistant", "content": "", **message},
            "done": done,
        }
        if done:
            out.update(done_reason="stop", **OLLAMA_STATS)  # "stop" also after tool calls
        return out

    calls = [{"function": {"index": 0, "name": "get_weather", "arguments": PARIS}}] if reply.call else None
    if not ask.stream:
        message: dict[str, Any] = {"content": "".join(reply.pieces)}
        if calls:
            message["tool_calls"] = calls
        return httpx.Response(200, json=line(message, True))
    lines = [line({"content": piece}, False) for piece in reply.pieces]
    if calls:
        lines.append(line({"tool_calls": calls}, False))  # Ollama sends each call whole
    lines.append(line({}, True))
    body = "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines).encode()
    return streamed(body, "application/x-ndjson")


LLAMA_PROPS = {
    "default_generation_settings": {"n_ctx": 4096, "params": {"n_predict": -1}},
    "total_slots": 1,
    "model_path": "/models/gemma-3-270m-it-Q4_K_M.gguf",
    "chat_template": "{{ messages }}",
    "chat_template_caps": {
        "supports_parallel_tool_calls": True,
        "supports_preserve_reasoning": False,
        "supports_string_content": True,
        "supports_system_role": True,
        "supports_tool_calls": True,
        "supports_tools": True,
        "supports_typed_content": False,
    },
    "modalities": {"vision": False, "audio": False},
    "build_info": "b6000-ab12cd34",
}


# -- the router -----------------------------------------------------------------------------------------------

PARSERS = {
    "llamacpp": partial(parse_openai_family, "llamacpp"),
    "openai": partial(parse_openai_family, "openai"),
    "llama-swap": partial(parse_openai_family, "llama-swap"),
    "anthropic": parse_anthropic,
    "ollama": parse_ollama,
}
ANSWERS = {
    "llamacpp": partial(openai_family_answer, "llamacpp"),
    "openai": partial(openai_family_answer, "openai"),
    "llama-swap": partial(openai_family_answer, "llama-swap"),
    "anthropic": anthropic_answer,
    "ollama": ollama_answer,
}


class FakeAPIs:
    """The canned APIs on one respx router; ``asks`` records every request as the API read it."""

    def __init__(self, router: respx.MockRouter) -> None:
        self.router = router
        self.asks: list[Ask] = []
        self.failures: list[BaseException] = []
        #: how the canned model streams its structured answer (any split of any valid JSON text)
        self.person_pieces = PERSON_FRAGMENTS
        for name, url in CHAT_URLS.items():
            router.post(url, name=name).mock(side_effect=partial(self.handle, name))
        router.get(f"{LLAMACPP_FAKE}/props").respond(json=LLAMA_PROPS)

    def handle(self, name: str, request: httpx.Request) -> httpx.Response:
        try:
            ask = PARSERS[name](request)
            self.asks.append(ask)
            return ANSWERS[name](ask, decide(ask, self.person_pieces))
        except AssertionError as exc:
            self.failures.append(exc)
            raise

    def asks_for(self, name: str) -> list[Ask]:
        return [a for a in self.asks if a.provider == name]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[CALL_REPORT] = report
    return report


CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.fixture
def fake_apis(request: pytest.FixtureRequest) -> Iterator[FakeAPIs]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()  # the real llama.cpp server
        fake = FakeAPIs(router)
        yield fake
    report = request.node.stash.get(CALL_REPORT, None)
    passed = report is not None and report.passed and not hasattr(report, "wasxfail")
    if fake.failures and passed:  # a responder's complaint was swallowed somewhere: fail anyway
        raise fake.failures[0]


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """No CORRAL_* variables or config files of the developer's leak into the contract."""
    for key in list(os.environ):
        if key.startswith("CORRAL_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def contract_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A fresh copy of CONFIG. For a test marked ``live`` (e.g. its llamacpp parameter), ``llamacpp``
    is the real llama.cpp server with the tool-aware template; otherwise the recorded one."""
    config = copy.deepcopy(CONFIG)
    if request.node.get_closest_marker("live") is not None:
        server = request.getfixturevalue("templated_server")
        config["providers"]["llamacpp"]["base_url"] = server.url
    return config
