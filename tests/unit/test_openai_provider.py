"""The generic OpenAI-compatible provider: per-host token field, model-list shapes, image generation."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
import respx

import corral

CHAT = {"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}]}


@pytest.mark.parametrize(
    ("base_url", "field"),
    [
        ("https://api.openai.com/v1", "max_completion_tokens"),
        ("https://openrouter.ai/api/v1", "max_tokens"),
        ("http://127.0.0.1:8000/v1", "max_tokens"),
    ],
)
def test_token_limit_field_follows_the_host(base_url: str, field: str) -> None:
    with respx.mock() as router:
        route = router.post(f"{base_url}/chat/completions").mock(return_value=httpx.Response(200, json=CHAT))
        corral.Client(provider="openai", base_url=base_url, api_key="k").chat("hi", max_tokens=7)
    sent = json.loads(route.calls.last.request.content)
    assert sent[field] == 7 and len({"max_tokens", "max_completion_tokens"} & sent.keys()) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"object": "list", "data": [{"id": "gpt-x", "owned_by": "openai", "created": 1}]},
        [{"id": "gpt-x", "owned_by": "openai", "created": 1}],  # a bare list, as some servers answer
    ],
)
def test_models_accept_both_list_shapes(body: object) -> None:
    with respx.mock() as router:
        router.get("http://127.0.0.1:8000/v1/models").mock(return_value=httpx.Response(200, json=body))
        models = corral.Client("openai://k@127.0.0.1:8000/v1").models()
    assert [(m.id, m.owned_by, m.created) for m in models] == [("gpt-x", "openai", 1)]


def test_images_come_back_as_bytes() -> None:
    png = b"\x89PNG\r\n\x1a\nfake"
    answer = {"created": 1, "data": [{"b64_json": base64.b64encode(png).decode(), "revised_prompt": "a cat"}]}
    with respx.mock() as router:
        route = router.post("https://api.example.com/v1/images/generations").mock(
            return_value=httpx.Response(200, json=answer)
        )
        images = corral.Client("openai://k@api.example.com/v1").images("a cat", model="img-1", size="256x256")
    assert images[0].data() == png and images[0].revised_prompt == "a cat"
    assert json.loads(route.calls.last.request.content) == {
        "prompt": "a cat", "n": 1, "response_format": "b64_json", "model": "img-1", "size": "256x256"
    }  # fmt: skip


def test_llamacpp_does_not_claim_image_generation() -> None:
    with respx.mock(assert_all_mocked=True), pytest.raises(corral.UnsupportedCapability, match="image generation"):
        corral.Client("llamacpp://127.0.0.1:8080").images("a cat")
