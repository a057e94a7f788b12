"""The llama-swap provider against respx mocks shaped like llama-swap's own handlers
(internal/server/api.go, apigroup.go, internal/router/loading.go, swaputil/httperror.go)."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import httpx
import pytest
import respx

import corral
from corral import (
    Authentication,
    Capability,
    ContentDelta,
    Done,
    GeneratedImage,
    ModelNotFound,
    ProviderError,
    ReasoningDelta,
    RunningModel,
    ServerError,
    ServerUnreachable,
    Usage,
)
from corral.providers.llamaswap import LlamaSwapProvider
from corral.providers.llamaswap.stream import LoadingStateFilter, loading_text

ROOT = "http://127.0.0.1:8080"
CHAT = f"{ROOT}/v1/chat/completions"
DSN = "llama-swap://tok@127.0.0.1:8080"
KEYLESS = "llama-swap://127.0.0.1:8080"


def loading(text: str) -> dict[str, Any]:
    """Exactly what llama-swap's loadingWriter.sendData marshals."""
    return {"choices": [{"delta": {"reasoning_content": text}}]}


def delta_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "choices": [{"finish_reason": finish, "index": 0, "delta": delta}],
        "created": 1,
        "id": "chatcmpl-q",
        "model": "qwen",
        "system_fingerprint": "b6000",
        "object": "chat.completion.chunk",
    }


USAGE = {"completion_tokens": 2, "prompt_tokens": 9, "total_tokens": 11}
LOADING = [
    loading("━━━━━"),
    loading("\n"),
    loading("llama-swap loading model: qwen"),
    loading("\n"),
    loading("."),
    loading("\n"),
    loading("Reticulating splines"),
    loading(" "),
    loading("\n"),
    loading("Done! (4.21s)"),
    loading("\n"),
    loading("━━━━━"),
    loading("\n"),
    loading(" "),
    loading("\n"),
]
REAL = [
    delta_chunk({"role": "assistant", "content": None}),
    delta_chunk({"reasoning_content": "The user greets. "}),
    delta_chunk({"reasoning_content": "Reply."}),
    delta_chunk({"content": "Hi"}),
    delta_chunk({"content": "!"}),
    delta_chunk({}, "stop"),
    {
        "choices": [],
        "created": 1,
        "id": "chatcmpl-q",
        "model": "qwen",
        "object": "chat.completion.chunk",
        "usage": USAGE,
    },
]
WHOLE = {
    "choices": [
        {
            "finish_reason": "stop",
            "index": 0,
            "message": {"role": "assistant", "content": "Hi!", "reasoning_content": "The user greets. Reply."},
        }
    ],
    "created": 1,
    "id": "chatcmpl-q",
    "model": "qwen",
    "object": "chat.completion",
    "usage": USAGE,
}


def sse(payloads: list[dict[str, Any]]) -> bytes:
    return ("".join(f"data: {json.dumps(p, ensure_ascii=False)}\n\n" for p in payloads) + "data: [DONE]\n\n").encode()


def streamed(body: bytes, *, step: int = 9) -> httpx.Response:
    pieces = [body[i : i + step] for i in range(0, len(body), step)]
    return httpx.Response(200, content=iter(pieces), headers={"content-type": "text/event-stream"})


def envelope(status_code: str, message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    """swaputil.NewErrorEnvelope"""
    return {"src": "llama-swap", "error": {"message": message, "type": kind, "param": None, "code": status_code}}


@pytest.fixture
def router():
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def client():
    c = corral.Client(DSN, model="qwen", max_retries=0)
    yield c
    c.close()


# -- chat through {root}/v1 ------------------------------------------------------------------------------


def test_chat_uses_v1_with_token_and_legacy_max_tokens(client, router):
    route = router.post(CHAT).mock(return_value=httpx.Response(200, json=WHOLE))
    resp = client.chat("hello", max_tokens=32)
    request = route.calls.last.request
    assert request.headers["authorization"] == "Bearer tok"
    body = json.loads(request.content)
    assert body["model"] == "qwen"
    assert body["max_tokens"] == 32
    assert "max_completion_tokens" not in body
    assert (resp.content, resp.reasoning, resp.usage) == ("Hi!", "The user greets. Reply.", Usage(9, 2))
    assert resp.provider == "llama-swap"


def test_keyless_instance_gets_placeholder_bearer(router):
    route = router.post(CHAT).mock(return_value=httpx.Response(200, json=WHOLE))
    with corral.Client(KEYLESS, model="qwen") as c:
        c.chat("hello")
    assert route.calls.last.request.headers["authorization"] == "Bearer no-key"


def test_v1_suffix_is_stripped_and_no_client_timeout(router):
    route = router.post(CHAT).mock(return_value=httpx.Response(200, json=WHOLE))
    with corral.Client(provider="llama-swap", base_url=f"{ROOT}/v1/", model="qwen") as c:
        c.chat("hello")
        assert c.provider.base_url == ROOT
        assert c.provider.config.timeout is None
    assert route.called
    assert corral.Client(DSN).config.timeout is None


def test_capabilities_add_management_and_images():
    p = LlamaSwapProvider(corral.parse_dsn(DSN))
    assert {Capability.MANAGEMENT, Capability.IMAGES, Capability.CHAT, Capability.EMBEDDINGS} <= p.capabilities
    assert Capability.GRAMMAR not in p.capabilities


# -- loading state ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [1, 9, 100_000])
def test_loading_state_is_not_reasoning_but_real_reasoning_is(client, router, step):
    route = router.post(CHAT).mock(side_effect=lambda request: streamed(sse(LOADING + REAL), step=step))
    with client.stream("hello") as s:
        events = list(s)
        final = s.final()
    assert route.calls.last.request.headers["authorization"] == "Bearer tok"
    assert events[:4] == [
        ReasoningDelta("The user greets. "),
        ReasoningDelta("Reply."),
        ContentDelta("Hi"),
        ContentDelta("!"),
    ]
    assert isinstance(events[-1], Done)
    assert final.reasoning == "The user greets. Reply."
    assert final.content == "Hi!"
    assert "loading" not in (final.reasoning or "")

    route.mock(return_value=httpx.Response(200, json=WHOLE))
    assert client.chat("hello") == final


def test_filter_keeps_the_loading_log_and_stops_filtering_once_upstream_started():
    state = LoadingStateFilter("llama-swap")
    events = []
    for p in [*LOADING, *REAL[:2], loading("bare but after upstream"), *REAL[2:]]:
        events += state.feed(p)
    assert "llama-swap loading model: qwen" in state.loading_log
    assert state.loading_log.endswith("━━━━━\n \n")
    assert state.finish().reasoning == "The user greets. bare but after upstreamReply."
    assert [e for e in events if isinstance(e, ReasoningDelta)][1] == ReasoningDelta("bare but after upstream")


def test_loading_text_matches_only_the_exact_shape():
    assert loading_text(loading("x")) == "x"
    assert loading_text(delta_chunk({"reasoning_content": "x"})) is None  # a real chunk has id/object/...
    assert loading_text({"choices": [{"delta": {"reasoning_content": "x"}, "index": 0}]}) is None
    assert loading_text({"choices": [{"delta": {"reasoning_content": "x", "content": "y"}}]}) is None
    assert loading_text({"choices": [{"delta": {"content": "x"}}]}) is None
    assert loading_text({"choices": [loading("a")["choices"][0], loading("b")["choices"][0]]}) is None


# -- management routes -----------------------------------------------------------------------------------

RUNNING = {
    "running": [
        {
            "model": "qwen",
            "state": "ready",
            "cmd": "llama-server --port ${PORT} -m /models/qwen.gguf",
            "proxy": "http://127.0.0.1:5800",
            "ttl": 300,
            "name": "Qwen 3",
            "description": "",
        },
        {"model": "sd", "state": "starting", "cmd": "", "proxy": "", "ttl": 0, "name": "", "description": ""},
    ]
}


def test_running(client, router):
    route = router.get(f"{ROOT}/running").mock(return_value=httpx.Response(200, json=RUNNING))
    running = client.running()
    assert route.calls.last.request.headers["authorization"] == "Bearer tok"
    assert running == [
        RunningModel("qwen", "ready", RUNNING["running"][0]),
        RunningModel("sd", "starting", RUNNING["running"][1]),
    ]
    assert running[0].meta["ttl"] == 300


def test_running_empty(client, router):
    router.get(f"{ROOT}/running").mock(return_value=httpx.Response(200, json={"running": []}))
    assert client.running() == []


def test_unload_all(client, router):
    route = router.post(f"{ROOT}/api/models/unload").mock(return_value=httpx.Response(200, json={"msg": "ok"}))
    assert client.unload() is None
    request = route.calls.last.request
    assert (request.method, request.url.path) == ("POST", "/api/models/unload")
    assert request.content == b""
    assert request.headers["authorization"] == "Bearer tok"


def test_unload_one_keeps_slashes_and_quotes_the_rest(client, router):
    route = router.post(url__startswith=f"{ROOT}/api/models/unload/").mock(return_value=httpx.Response(200, text="OK"))
    assert client.unload("org/Qwen3 8B:Q4") is None
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url.raw_path == b"/api/models/unload/org/Qwen3%208B%3AQ4"
    assert request.content == b""


def test_unload_call_objects_directly():
    p = LlamaSwapProvider(corral.parse_dsn(DSN))
    call = p.unload("qwen")
    assert (call.request.method, call.request.url, call.request.json) == (
        "POST",
        f"{ROOT}/api/models/unload/qwen",
        None,
    )
    assert call.parse(200, b"OK") is None
    assert p.unload(None).request.url == f"{ROOT}/api/models/unload"
    with pytest.raises(corral.ConfigurationError):
        p.unload("/")


def test_unload_unknown_model_is_a_404_provider_error(client, router):
    router.post(f"{ROOT}/api/models/unload/nope").mock(
        return_value=httpx.Response(404, json=envelope("not_found", "model not found"))
    )
    with pytest.raises(ProviderError) as info:
        client.unload("nope")
    assert info.value.status == 404
    assert info.value.message == "model not found"


def test_health(client, router):
    route = router.get(f"{ROOT}/health").mock(return_value=httpx.Response(200, text="OK"))
    assert client.health().ok
    route.mock(return_value=httpx.Response(502, text="Bad Gateway"))
    health = client.health()
    assert health.status == "error"
    assert "502" in health.detail


# -- images ------------------------------------------------------------------------------------------------

PIXELS = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


def test_images_b64(client, router):
    answer = {
        "created": 1735000000,
        "data": [{"b64_json": base64.b64encode(PIXELS).decode()}, {"b64_json": base64.b64encode(b"two").decode()}],
    }
    route = router.post(f"{ROOT}/v1/images/generations").mock(return_value=httpx.Response(200, json=answer))
    images = client.images("a cat in a hat", model="sd", n=2, size="512x512")
    assert json.loads(route.calls.last.request.content) == {
        "model": "sd",
        "prompt": "a cat in a hat",
        "n": 2,
        "size": "512x512",
        "response_format": "b64_json",
    }
    assert [i.data() for i in images] == [PIXELS, b"two"]
    assert isinstance(images[0], GeneratedImage)


def test_images_call_defaults_to_configured_model():
    p = LlamaSwapProvider(corral.parse_dsn(f"{DSN}?model=sd"))
    call = p.images("a cat", {})
    assert call.request.json == {"prompt": "a cat", "n": 1, "response_format": "b64_json", "model": "sd"}
    assert call.request.url == f"{ROOT}/v1/images/generations"
    with pytest.raises(corral.ResponseError):
        call.parse(200, b'{"data": [{}]}')


# -- models and errors -------------------------------------------------------------------------------------

MODELS = {
    "object": "list",
    "data": [
        {
            "id": "qwen",
            "object": "model",
            "created": 1735000000,
            "owned_by": "llama-swap",
            "name": "Qwen 3",
            "meta": {"llamaswap": {"port": 5800}, "n_ctx": 32768},
            "context_length": 32768,
            "status": {"value": "loaded"},
        },
        {
            "id": "sd",
            "object": "model",
            "created": 1735000000,
            "owned_by": "llama-swap",
            "status": {"value": "unloaded"},
        },
    ],
}


def test_models(client, router):
    route = router.get(f"{ROOT}/v1/models").mock(return_value=httpx.Response(200, json=MODELS))
    models = client.models()
    assert route.calls.last.request.headers["authorization"] == "Bearer tok"
    assert [(m.id, m.owned_by, m.context_length) for m in models] == [
        ("qwen", "llama-swap", 32768),
        ("sd", "llama-swap", None),
    ]
    assert models[1].meta["status"] == {"value": "unloaded"}


def test_embeddings_through_v1(client, router):
    answer = {"object": "list", "data": [{"index": 0, "embedding": [0.5, -0.25]}], "model": "emb", "usage": USAGE}
    route = router.post(f"{ROOT}/v1/embeddings").mock(return_value=httpx.Response(200, json=answer))
    assert client.embed("x", model="emb").vectors == [[0.5, -0.25]]
    assert json.loads(route.calls.last.request.content) == {"input": ["x"], "model": "emb"}


def test_unknown_model_404_and_bad_key_401(client, router):
    route = router.post(CHAT).mock(
        return_value=httpx.Response(404, json=envelope("not_found", "no local server found for requested model"))
    )
    # A 404 on the chat route (which names a model) is that model missing.
    with pytest.raises(ModelNotFound) as info:
        client.chat("hi", model="nope")
    assert info.value.status == 404
    assert info.value.code == "not_found"
    assert info.value.message == "no local server found for requested model"
    route.mock(
        return_value=httpx.Response(
            401, json=envelope("unauthorized", "unauthorized: invalid or missing API key", "authentication_error")
        )
    )
    with pytest.raises(Authentication):
        client.chat("hi")


def test_unreachable_message(client, router):
    router.get(f"{ROOT}/running").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(ServerUnreachable, match=re.escape("llama-swap not running at http://127.0.0.1:8080")):
        client.running()


# -- async -------------------------------------------------------------------------------------------------


async def test_async_chat_and_loading_stream():
    async def pieces(body: bytes):
        for i in range(0, len(body), 6):
            yield body[i : i + 6]

    with respx.mock(assert_all_mocked=True) as router:
        route = router.post(CHAT).mock(
            side_effect=lambda request: httpx.Response(200, content=pieces(sse(LOADING + REAL)))
        )
        async with corral.AsyncClient(KEYLESS, model="qwen") as c:
            async with c.stream("hello") as s:
                events = [e async for e in s]
                final = await s.final()
            assert route.calls.last.request.headers["authorization"] == "Bearer no-key"
            route.mock(return_value=httpx.Response(200, json=WHOLE))
            whole = await c.chat("hello")
    assert [e for e in events if isinstance(e, ReasoningDelta)] == [
        ReasoningDelta("The user greets. "),
        ReasoningDelta("Reply."),
    ]
    assert final == whole


def test_bare_json_error_after_loading_messages_is_raised(client, router):
    # When loading fails after its progress messages went out, llama-swap writes the error object
    # straight into the already-started event stream, without "data:" and without a newline.
    body = (
        f"data: {json.dumps(loading('llama-swap loading model: qwen'))}\n\n".encode()
        + json.dumps(
            {"error": {"message": "upstream command exited prematurely", "type": "server_error", "code": 502}}
        ).encode()
    )
    router.post(CHAT).mock(
        return_value=httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
    )
    with pytest.raises(ServerError, match="upstream command exited prematurely"), client.stream("hi") as s:
        list(s)


def test_no_timeout_but_a_deadline_bounds_the_call():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        port = listener.getsockname()[1]
        client = corral.Client(f"llama-swap://127.0.0.1:{port}?deadline=0.4", model="qwen", max_retries=0)
        assert client.config.timeout is None
        with pytest.raises(corral.RequestTimeout) as info:
            client.chat("hi")
        assert str(info.value) == "llama-swap request exceeded its deadline of 0.4 s"
    finally:
        listener.close()
