"""Errors and usage: the same situation gives the same corral answer on every provider.

Error bodies are each API's own (OpenAI ``{"error":{"message","type","param","code"}}``, Anthropic
``{"type":"error","error":{...},"request_id"}``, Ollama ``{"error":"..."}``, llama-swap's
``{"src":"llama-swap","error":{...}}`` envelope, llama-server's ``{"error":{"code","message","type"}}``),
taken from their documentation and sources. A provider whose API has no such answer is left out of
that situation. Retries are off (``max_retries=0``): one request each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import respx

from corral import (
    Authentication,
    BadRequest,
    Client,
    ContentDelta,
    ContextLengthExceeded,
    CorralError,
    ModelLoading,
    ModelNotFound,
    ProviderError,
    RateLimited,
    ServerError,
    Usage,
)
from corral.retry import falls_back

from .conftest import (
    CACHED_TOKENS,
    CHAT_URLS,
    COMPLETION_TOKENS,
    MODELS,
    PROMPT_TOKENS,
    PROVIDERS,
    Chunked,
    FakeAPIs,
    sse,
    swap_loading,
)

REQUEST_ID = "req_011CSHoEeqs5C35K2UUqR7Fy"


@dataclass(frozen=True)
class Wire:
    status: int
    body: Any  # JSON value, or bytes sent as they are
    expected: type[CorralError]
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> httpx.Response:
        content = self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()
        kind = "text/event-stream" if self.status == 200 else "application/json"
        headers = {"content-type": kind, **self.headers}
        return httpx.Response(self.status, headers=headers, stream=Chunked(content, 17))


def openai_error(message: str, kind: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def anthropic_error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": REQUEST_ID}


def swap_envelope(message: str, kind: str, code: str) -> dict[str, Any]:
    """swaputil.NewErrorEnvelope"""
    return {"src": "llama-swap", "error": {"message": message, "type": kind, "param": None, "code": code}}


def llama_error(code: int, message: str, kind: str, **extra: Any) -> dict[str, Any]:
    """llama-server's format_error_response"""
    return {"error": {"code": code, "message": message, "type": kind, **extra}}


LLAMA_CONTEXT = llama_error(
    400,
    "request (3009 tokens) exceeds the available context size (2048 tokens), try increasing it",
    "exceed_context_size_error",
    n_prompt_tokens=3009,
    n_ctx=2048,
)


def _oai_chunk(content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }


ANTHROPIC_STREAM_START = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 1},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
]
OLLAMA_LINE = {
    "model": MODELS["ollama"],
    "created_at": "2025-10-26T17:21:21.196249Z",
    "message": {"role": "assistant", "content": "Hel"},
    "done": False,
}

SITUATIONS: dict[str, dict[str, Wire]] = {
    "authentication": {
        "openai": Wire(
            401,
            openai_error(
                "Incorrect API key provided: sk-proj-********cdef. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            ),
            Authentication,
        ),
        "anthropic": Wire(401, anthropic_error("authentication_error", "invalid x-api-key"), Authentication),
        # ollama.com cloud models through a local Ollama that is not signed in (server/cloud_proxy.go)
        "ollama": Wire(
            401, {"error": "unauthorized", "signin_url": "https://ollama.com/connect?name=host&key=abc"}, Authentication
        ),
        "llama-swap": Wire(
            401,
            swap_envelope("unauthorized: invalid or missing API key", "authentication_error", "unauthorized"),
            Authentication,
        ),
        "llamacpp": Wire(401, llama_error(401, "Invalid API Key", "authentication_error"), Authentication),
    },
    "rate_limited": {
        "openai": Wire(
            429,
            openai_error(
                "Rate limit reached for gpt-4.1-mini in organization org-abc on requests per min (RPM): "
                "Limit 3, Used 3, Requested 1. Please try again in 20s.",
                "requests",
                "rate_limit_exceeded",
            ),
            RateLimited,
            {"retry-after": "20", "x-ratelimit-limit-requests": "3", "x-ratelimit-reset-requests": "20s"},
        ),
        "anthropic": Wire(
            429,
            anthropic_error("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
            RateLimited,
            {"retry-after": "20", "anthropic-ratelimit-requests-remaining": "0"},
        ),
        # swaputil.ConcurrencyLimitError
        "llama-swap": Wire(
            429,
            swap_envelope("Too many requests", "rate_limit_error", "concurrency_limit"),
            RateLimited,
            {"Retry-After": "1"},
        ),
    },
    "unavailable": {
        "openai": Wire(
            503,
            openai_error("The engine is currently overloaded, please try again later", "server_error", None),
            ServerError,
        ),
        "anthropic": Wire(529, anthropic_error("overloaded_error", "Overloaded"), ServerError),
        # server/sched.go ErrMaxQueue
        "ollama": Wire(
            503, {"error": "server busy, please try again.  maximum pending requests exceeded"}, ModelLoading
        ),
        # process_command.go: the model's process is not ready
        "llama-swap": Wire(
            503,
            swap_envelope(f"[{MODELS['llama-swap']}] process is not ready", "server_error", "service_unavailable"),
            ServerError,
        ),
        "llamacpp": Wire(503, llama_error(503, "Loading model", "unavailable_error"), ModelLoading),
    },
    "model_not_found": {
        "openai": Wire(
            404,
            openai_error(
                f"The model `{MODELS['openai']}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            ),
            ModelNotFound,
        ),
        "anthropic": Wire(404, anthropic_error("not_found_error", f"model: {MODELS['anthropic']}"), ModelNotFound),
        "ollama": Wire(404, {"error": f'model "{MODELS["ollama"]}" not found, try pulling it first'}, ModelNotFound),
        "llama-swap": Wire(
            404,
            swap_envelope("no local server found for requested model", "invalid_request_error", "not_found"),
            ModelNotFound,
        ),
    },
    "context_length": {
        "openai": Wire(
            400,
            openai_error(
                "This model's maximum context length is 128000 tokens. However, your messages resulted in "
                "130532 tokens. Please reduce the length of the messages.",
                "invalid_request_error",
                "context_length_exceeded",
                "messages",
            ),
            ContextLengthExceeded,
        ),
        # Anthropic says so only in the message text: a plain BadRequest (corral never matches on text)
        "anthropic": Wire(
            400,
            anthropic_error("invalid_request_error", "prompt is too long: 208310 tokens > 200000 maximum"),
            BadRequest,
        ),
        # llama-swap passes llama-server's own answer through
        "llama-swap": Wire(400, LLAMA_CONTEXT, ContextLengthExceeded),
        "llamacpp": Wire(400, LLAMA_CONTEXT, ContextLengthExceeded),
    },
}

OPENAI_500 = "The server had an error while processing your request. Sorry about that!"


def ndjson(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


#: a 200 stream that fails after it started, in each API's way of saying so
MID_STREAM: dict[str, Wire] = {
    "openai": Wire(
        200,
        sse([_oai_chunk("Hel"), openai_error(OPENAI_500, "server_error", None)]),
        ServerError,
    ),
    "anthropic": Wire(
        200,
        sse(ANTHROPIC_STREAM_START, named=True) + sse([anthropic_error("overloaded_error", "Overloaded")], named=True),
        ServerError,
    ),
    "ollama": Wire(
        200,
        ndjson([OLLAMA_LINE, {"error": "an error was encountered while running the model"}]),
        ServerError,
    ),
    # after its loading messages llama-swap writes the error envelope straight into the event stream
    "llama-swap": Wire(
        200,
        sse([swap_loading("llama-swap loading model: qwen2.5-7b\n")])
        + json.dumps(
            swap_envelope("unspecific error: upstream command exited prematurely", "server_error", "internal_error")
        ).encode(),
        ServerError,
    ),
    "llamacpp": Wire(
        200, sse([_oai_chunk("Hel"), llama_error(500, "decode failed: out of memory", "server_error")]), ServerError
    ),
}

#: what every provider shares for a situation: the class, retried?, does a fallback chain move on?
#: (retry.falls_back: only failures of the server itself move on, never a 4xx such as a 429)
COMMON = {
    "authentication": (Authentication, False, False),
    "rate_limited": (RateLimited, True, False),
    "unavailable": ((ServerError, ModelLoading), True, True),
    "model_not_found": (ModelNotFound, False, False),
    "context_length": (BadRequest, False, False),
}

CASES = [
    pytest.param(situation, name, id=f"{situation}-{name}")
    for situation, wires in SITUATIONS.items()
    for name in PROVIDERS
    if name in wires
]


def message_of(body: Any) -> str:
    err = body["error"]
    return err if isinstance(err, str) else err["message"]


@pytest.mark.parametrize("mode", ["chat", "stream"])
@pytest.mark.parametrize(("situation", "name"), CASES)
def test_same_situation_same_error(situation: str, name: str, mode: str, contract_config: dict[str, Any]) -> None:
    wire = SITUATIONS[situation][name]
    contract_config["default_provider"] = name
    with respx.mock(assert_all_mocked=True) as router, Client(config=contract_config, max_retries=0) as client:
        route = router.post(CHAT_URLS[name]).mock(side_effect=lambda request: wire.response())
        with pytest.raises(ProviderError) as info:
            if mode == "chat":
                client.chat("hi", max_tokens=8)
            else:
                with client.stream("hi", max_tokens=8) as s:
                    pytest.fail(f"the stream opened despite HTTP {wire.status}: {list(s)}")
    exc = info.value
    assert type(exc) is wire.expected, (type(exc), wire.expected)
    common, retryable, moves_on = COMMON[situation]
    assert isinstance(exc, common)
    assert (exc.retryable, falls_back(exc)) == (retryable, moves_on)
    assert (exc.status, exc.provider, exc.message) == (wire.status, name, message_of(wire.body))
    assert route.call_count == 1
    if isinstance(exc, RateLimited):
        assert exc.retry_after == float(wire.headers.get("retry-after") or wire.headers["Retry-After"])


@pytest.mark.parametrize("name", PROVIDERS)
def test_failure_inside_a_started_stream(name: str, contract_config: dict[str, Any]) -> None:
    wire = MID_STREAM[name]
    contract_config["default_provider"] = name
    seen: list[Any] = []
    with respx.mock(assert_all_mocked=True) as router, Client(config=contract_config, max_retries=0) as client:
        route = router.post(CHAT_URLS[name]).mock(side_effect=lambda request: wire.response())
        # the stream opens (the status is 200); the failure comes while reading it
        with client.stream("hi", max_tokens=8) as s, pytest.raises(ServerError) as info:
            for event in s:
                seen.append(event)
    assert route.call_count == 1
    assert info.value.provider == name and info.value.retryable
    # what arrived before the failure reached the application (llama-swap had only sent loading messages)
    assert seen == ([] if name == "llama-swap" else [ContentDelta("Hel")])


@pytest.mark.live
@pytest.mark.parametrize("mode", ["chat", "stream"])
def test_context_overflow_on_the_real_server(mode: str, contract_config: dict[str, Any], fake_apis: FakeAPIs) -> None:
    contract_config["default_provider"] = "llamacpp"
    with Client(config=contract_config, max_retries=0) as client, pytest.raises(ContextLengthExceeded) as info:
        if mode == "chat":
            client.chat("word " * 3000, max_tokens=8)
        else:
            with client.stream("word " * 3000, max_tokens=8) as s:
                list(s)
    exc = info.value
    assert (exc.status, exc.provider, exc.error_type) == (400, "llamacpp", "exceed_context_size_error")
    assert not exc.retryable and not falls_back(exc)


# -- usage ------------------------------------------------------------------------------------------------------

#: Ollama reports no prompt-cache count
EXPECTED_USAGE = {
    name: Usage(PROMPT_TOKENS, COMPLETION_TOKENS, 0 if name == "ollama" else CACHED_TOKENS) for name in PROVIDERS
}


@pytest.mark.parametrize("name", PROVIDERS)
def test_usage_from_each_apis_own_fields(name: str, contract_config: dict[str, Any], fake_apis: FakeAPIs) -> None:
    contract_config["default_provider"] = name
    with Client(config=contract_config, max_retries=0) as client:
        whole = client.chat("hi", max_tokens=8)
        with client.stream("hi", max_tokens=8) as s:
            streamed = s.final()
    assert whole.usage == streamed.usage == EXPECTED_USAGE[name]
    assert whole.usage.total_tokens == PROMPT_TOKENS + COMPLETION_TOKENS


@pytest.mark.live
def test_usage_on_the_real_server(contract_config: dict[str, Any], fake_apis: FakeAPIs) -> None:
    contract_config["default_provider"] = "llamacpp"
    with Client(config=contract_config, max_retries=0) as client:
        prompt = [{"role": "user", "content": "Count from one to five."}]
        n_prompt = len(client.tokenize(client.apply_template(prompt), add_special=False))
        whole = client.chat(prompt, max_tokens=8, temperature=0)
        with client.stream(prompt, max_tokens=8, temperature=0) as s:
            streamed = s.final()
    for r in (whole, streamed):
        assert r.usage.completion_tokens == 8 and r.finish_reason == "length"
        assert abs(r.usage.prompt_tokens - n_prompt) <= 2, (r.usage, n_prompt)  # BOS handling aside
        assert 0 <= r.usage.cached_tokens <= r.usage.prompt_tokens
    assert streamed.usage.prompt_tokens == whole.usage.prompt_tokens
    assert streamed.usage.cached_tokens > 0  # the same prompt again: llama-server reused its cache
