"""Bad arguments and missing capabilities fail at the call site, before anything is sent."""

from __future__ import annotations

from typing import Any

import pytest
import respx

import corral
from corral import Capability, ConfigurationError, UnsupportedCapability

NOWHERE = "llamacpp://127.0.0.1:1"  # nothing listens on port 1

BAD_CALLS: list[tuple[str, Any, dict[str, Any], str]] = [
    ("max_tokens=0", "hi", {"max_tokens": 0}, "max_tokens"),
    ("max_tokens=-5", "hi", {"max_tokens": -5}, "max_tokens"),
    ("max_tokens=1.5", "hi", {"max_tokens": 1.5}, "max_tokens"),
    ("temperature=5", "hi", {"temperature": 5}, "temperature"),
    ("temperature=-0.1", "hi", {"temperature": -0.1}, "temperature"),
    ("top_p=2", "hi", {"top_p": 2}, "top_p"),
    ("messages=[]", [], {}, "messages"),
    ("role robot", [{"role": "robot", "content": "beep"}], {}, "role"),
    (
        "second message role",
        [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}],
        {},
        "messages[1].role",
    ),
    ("message not a dict", [42], {}, "messages[0]"),
    ("tools bad", "hi", {"tools": [{"bad": 1}]}, "tools[0]"),
    ("response_format xml", "hi", {"response_format": {"type": "xml"}}, "response_format"),
    ("response_format str", "hi", {"response_format": "json"}, "response_format"),
    ("grammar and format", "hi", {"grammar": "root ::= x", "response_format": {"type": "json_object"}}, "grammar"),
]


@pytest.fixture
def no_network():
    """respx with no routes: any request at all fails the test (and is recorded)."""
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        yield mock
        assert mock.calls.call_count == 0


@pytest.mark.parametrize(("messages", "kwargs", "field"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_chat_rejects_bad_input_before_sending(no_network, messages, kwargs, field):
    with corral.Client(NOWHERE) as client, pytest.raises(ConfigurationError) as info:
        client.chat(messages, **kwargs)
    assert field in str(info.value)


@pytest.mark.parametrize(("messages", "kwargs", "field"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_stream_rejects_bad_input_at_call_site(no_network, messages, kwargs, field):
    with corral.Client(NOWHERE) as client, pytest.raises(ConfigurationError) as info:
        client.stream(messages, **kwargs)
    assert field in str(info.value)


@pytest.mark.parametrize(("messages", "kwargs", "field"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
async def test_async_chat_rejects_bad_input_before_sending(no_network, messages, kwargs, field):
    async with corral.AsyncClient(NOWHERE) as client:
        with pytest.raises(ConfigurationError) as info:
            await client.chat(messages, **kwargs)
        with pytest.raises(ConfigurationError):
            client.stream(messages, **kwargs)
    assert field in str(info.value)


def test_complete_and_embed_validate_before_sending(no_network):
    with corral.Client(NOWHERE) as client:
        with pytest.raises(ConfigurationError, match="max_tokens"):
            client.complete("once upon", max_tokens=0)
        with pytest.raises(ConfigurationError, match="at least one"):
            client.embed([])
        with pytest.raises(ConfigurationError, match=r"inputs\[1\]"):
            client.embed(["a", 2])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("kwargs", "field"), [({"temperature": 5}, "temperature"), ({"max_tokens": True}, "max_tokens")]
)
def test_complete_validates_like_chat(no_network, kwargs, field):
    with corral.Client(NOWHERE) as client:
        with pytest.raises(ConfigurationError, match=field):
            client.chat("once upon", **kwargs)
        with pytest.raises(ConfigurationError, match=field):
            client.complete("once upon", **kwargs)


def test_slot_filename_with_path_is_rejected(no_network):
    with corral.Client(NOWHERE) as client, pytest.raises(ConfigurationError, match="file name"):
        client.save_slot(0, "../etc/passwd")


def openai_client() -> corral.Client:
    return corral.Client(provider="openai", base_url="http://127.0.0.1:1/v1", api_key="x")


@pytest.mark.parametrize(
    ("call", "capability"),
    [
        (lambda c: c.tokenize("hi"), Capability.TOKENIZE),
        (lambda c: c.detokenize([1, 2]), Capability.TOKENIZE),
        (lambda c: c.apply_template("hi"), Capability.TEMPLATES),
        (lambda c: c.props(), Capability.PROPS),
        (lambda c: c.slots(), Capability.SLOTS),
        (lambda c: c.metrics(), Capability.METRICS),
        (lambda c: c.chat("hi", grammar="root ::= x"), Capability.GRAMMAR),
        # the stream is opened (and checked, before any request) on entering its block
        (lambda c: c.stream("hi", grammar="root ::= x").__enter__(), Capability.GRAMMAR),
    ],
    ids=["tokenize", "detokenize", "apply_template", "props", "slots", "metrics", "chat-grammar", "stream-grammar"],
)
def test_openai_provider_lacks_llamacpp_features(no_network, call, capability):
    with openai_client() as client, pytest.raises(UnsupportedCapability) as info:
        call(client)
    assert info.value.provider == "openai"
    assert info.value.capability == str(capability)
    assert "openai" in str(info.value)
    assert str(capability) in str(info.value)
    assert not info.value.retryable


async def test_async_openai_provider_lacks_tokenize(no_network):
    async with corral.AsyncClient(provider="openai", base_url="http://127.0.0.1:1/v1", api_key="x") as client:
        with pytest.raises(UnsupportedCapability, match="tokenize"):
            await client.tokenize("hi")


def test_tokenize_message_names_provider_and_capability(no_network):
    with openai_client() as client, pytest.raises(UnsupportedCapability) as info:
        client.tokenize("hi")
    assert str(info.value) == "provider 'openai' does not support tokenize/detokenize"
