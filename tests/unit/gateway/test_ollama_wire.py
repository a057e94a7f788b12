"""The Ollama side of the gateway, checked with the official ``ollama`` client on the other end: what
the client sends must parse into the right corral request, and what the gateway writes (whole and
as NDJSON lines) must be what the client's models accept."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from corral.events import ContentDelta, Done, ReasoningDelta, StreamEvent, ToolCallDelta, ToolCallEnd
from corral.gateway.ollama.models import display_name, managed_capabilities
from corral.gateway.ollama.options import parse_keep_alive, parse_options, provider_extras
from corral.gateway.ollama.request import chat_call, generate_call
from corral.gateway.ollama.response import OllamaLineWriter, ollama_chat, ollama_generate
from corral.gateway.wire_errors import WireError
from corral.manager.scan import GGUFInfo
from corral.types import ChatResponse, Completion, ImagePart, TextPart, Timings, ToolCall, Usage

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
LLAMA = frozenset({"llamacpp"})


class Wire:
    """A mock transport: records what the ollama client sent, answers with what the test gives."""

    def __init__(self, answer: Callable[[dict[str, Any]], httpx.Response] | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self._answer = answer or (
            lambda body: httpx.Response(200, json={"model": "m", "message": {"role": "assistant"}})
        )

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.sent.append(body)
        return self._answer(body)

    def client(self) -> ollama.Client:
        return ollama.Client(host="http://gw", transport=httpx.MockTransport(self.handler))


def sent_chat(**kwargs: Any) -> dict[str, Any]:
    wire = Wire()
    wire.client().chat(**kwargs)
    return wire.sent[0]


def sent_generate(**kwargs: Any) -> dict[str, Any]:
    wire = Wire(lambda body: httpx.Response(200, json={"model": "m", "response": ""}))
    wire.client().generate(**kwargs)
    return wire.sent[0]


def bad(fn: Callable[[], Any]) -> WireError:
    with pytest.raises(WireError) as info:
        fn()
    assert info.value.status == 400
    return info.value


# -- requests ---------------------------------------------------------------------------------------------------
def test_a_conversation_from_the_client_becomes_corral_messages() -> None:
    body = sent_chat(
        model="gemma",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is this?", "images": [PNG, JPEG]},
            {
                "role": "assistant",
                "content": "",
                "thinking": "I should call the tool.",
                "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
            },
            {"role": "tool", "content": "18 C", "tool_name": "get_weather"},
        ],
        tools=[WEATHER],
    )
    call = chat_call(body, b"")
    system, user, assistant, tool = call.req.messages
    assert system.content == "Be brief." and system.role == "system"
    assert isinstance(user.content, tuple)
    text, png, jpeg = user.content
    assert text == TextPart("What is this?")
    assert isinstance(png, ImagePart) and png.url == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert isinstance(jpeg, ImagePart) and jpeg.url.startswith("data:image/jpeg;base64,")
    assert assistant.reasoning == "I should call the tool." and assistant.content is None
    (tc,) = assistant.tool_calls
    assert tc.name == "get_weather" and json.loads(tc.arguments) == {"city": "Paris"}
    assert tool.role == "tool" and tool.tool_call_id == tc.id and tool.name == "get_weather"  # answered by name
    assert call.req.tools[0]["function"]["name"] == "get_weather"
    assert call.stream is False and call.options["load_only"] is False  # the python client sends stream: false


def test_tool_results_answer_calls_by_id_then_name_then_order() -> None:
    calls = [
        {"id": "a", "function": {"name": "f", "arguments": {}}},
        {"function": {"name": "g", "arguments": '{"x": 1}'}},
    ]
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "", "tool_calls": calls},
            {"role": "tool", "content": "from g", "tool_name": "g"},
            {"role": "tool", "content": "from a"},
        ],
    }
    msgs = chat_call(body, b"").req.messages
    g_id = msgs[1].tool_calls[1].id
    assert json.loads(msgs[1].tool_calls[1].arguments) == {"x": 1}  # JSON text is taken too
    assert (msgs[2].tool_call_id, msgs[3].tool_call_id) == (g_id, "a")


def test_ollama_streams_unless_told_not_to_and_no_messages_means_load() -> None:
    call = chat_call({"model": "m"}, b"")
    assert call.stream is True and call.options["load_only"] is True
    gen = generate_call({"model": "m", "keep_alive": 0}, b"")
    assert gen.options["load_only"] is True and gen.options["keep_alive"] == 0


def test_options_reach_the_request_and_the_rest_is_named() -> None:
    body = sent_chat(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        options={
            "num_predict": 12,
            "temperature": 0.3,
            "top_p": 0.9,
            "seed": 7,
            "stop": ["\n"],
            "top_k": 20,
            "repeat_penalty": 1.1,
            "num_ctx": 8192,
            "num_keep": 4,
        },
        format={"type": "object", "properties": {"a": {"type": "integer"}}},
    )
    call = chat_call(body, b"")
    req = call.req
    assert (req.max_tokens, req.temperature, req.top_p, req.seed, req.stop) == (12, 0.3, 0.9, 7, ("\n",))
    assert req.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}},
    }
    opts = call.options["opts"]
    extra, skipped = provider_extras(opts, None, None, LLAMA, managed=False)
    assert extra == {"top_k": 20, "repeat_penalty": 1.1, "n_keep": 4}
    assert skipped == ["options.num_ctx"]  # fixed when llama-server starts
    extra, skipped = provider_extras(opts, None, None, frozenset({"openai"}), managed=False)
    assert extra == {} and set(skipped) == {
        "options.top_k",
        "options.repeat_penalty",
        "options.num_ctx",
        "options.num_keep",
    }
    extra, skipped = provider_extras(opts, None, None, frozenset({"anthropic"}), managed=False)
    assert extra == {"top_k": 20}
    extra, skipped = provider_extras(opts, None, None, frozenset({"llamacpp", "openai"}), managed=False)
    assert extra == {} and "options.top_k" in skipped  # a mixed fallback chain gets what all take


def test_unknown_option_names_are_counted_never_echoed() -> None:
    # A client's option name in a response header: a name outside Latin-1 made the gateway fail
    # with a 500 after the model had answered (the fuzz battery's finding).
    opts = parse_options({"\U000134df=\U000c0021": 50.0, "x\r\nset-cookie: a": 1, "top_k": 3, "num_ctx": 99})
    extra, skipped = provider_extras(opts, None, None, frozenset({"anthropic"}), managed=False)
    assert extra == {"top_k": 3}
    assert skipped == ["options.num_ctx", "2 unknown options"]
    ", ".join(skipped).encode("latin-1")  # what starlette does with a header value


def test_num_predict_minus_one_means_no_limit_and_json_mode() -> None:
    call = chat_call(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "options": {"num_predict": -1},
            "format": "json",
        },
        b"",
    )
    assert call.req.max_tokens is None and call.req.response_format == {"type": "json_object"}


@pytest.mark.parametrize(
    ("think", "fields"),
    [
        (None, (None, None)),
        (False, (False, None)),
        (True, (True, None)),
        ("high", (True, "high")),
    ],
)
def test_think_becomes_the_requests_thinking_fields(think: Any, fields: tuple[Any, Any]) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "think": think}
    req = chat_call(body, b"").req
    assert (req.thinking, req.reasoning_effort) == fields  # each provider says them its own way


def test_logprobs_are_asked_for_and_the_text_is_relayed_as_written() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "logprobs": True,
        "top_logprobs": 3,
        "format": "json",
    }
    req = chat_call(body, b"").req
    assert req.logprobs and req.top_logprobs == 3 and req.parse_output is False


def test_think_a_provider_cannot_take_is_named_and_keep_alive_too() -> None:
    extra, skipped = provider_extras(parse_options(None), True, "5m", frozenset({"openai"}), managed=False)
    assert extra == {} and skipped == ["think", "keep_alive"]
    _, skipped = provider_extras(parse_options(None), None, "5m", LLAMA, managed=True)
    assert skipped == []  # the manager applies it


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        (0, 0.0),
        (300, 300.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("-1", -1.0),
        ("-1s", -1.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        (None, None),
    ],
)
def test_keep_alive_takes_seconds_and_go_durations(given: Any, seconds: float | None) -> None:
    assert parse_keep_alive(given) == seconds


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": []}, "model"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"model": "m", "options": {"temperature": 5}}, "options.temperature"),
        ({"model": "m", "options": {"top_k": "many"}}, "options.top_k"),
        ({"model": "m", "options": {"num_predict": 0}}, "options.num_predict"),
        ({"model": "m", "options": [1]}, "options"),
        ({"model": "m", "think": "max"}, "think"),
        ({"model": "m", "keep_alive": "soon"}, "keep_alive"),
        ({"model": "m", "format": "yaml"}, "format"),
        ({"model": "m", "logprobs": "yes"}, "logprobs"),
        ({"model": "m", "top_logprobs": 50}, "top_logprobs"),
        ({"model": "m", "stream": "yes"}, "stream"),
        ({"model": "m", "messages": [{"role": "user", "content": "x", "images": ["%%%"]}]}, "messages[0].images[0]"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x", "images": ["aGVsbG8="]}]},
            "messages[0].images[0]",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"function": {}}]},
            "tools[0].function.name",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": 3}}]}],
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
    ],
)
def test_bad_chat_input_is_a_400_naming_the_field(body: dict[str, Any], param: str) -> None:
    err = bad(lambda: chat_call(body, b""))
    assert err.param == param and param.split("[")[0].split(".")[0] in err.message


def test_generate_is_a_chat_of_system_and_prompt_with_images() -> None:
    body = sent_generate(model="m", prompt="Describe.", system="Be short.", images=[PNG], options={"num_predict": 5})
    call = generate_call(body, b"")
    system, user = call.req.messages
    assert system.content == "Be short."
    assert isinstance(user.content, tuple) and user.content[0] == TextPart("Describe.")
    assert call.req.max_tokens == 5 and call.options["kind"] == "generate" and not call.options["completion"]


def test_generate_raw_and_suffix_are_completions_and_templates_are_refused() -> None:
    assert generate_call({"model": "m", "prompt": "<s>[INST] hi", "raw": True}, b"").options["completion"]
    fim = generate_call({"model": "m", "prompt": "def f(", "suffix": "    return x"}, b"").options
    assert fim["completion"] and fim["suffix"] == "    return x"
    assert (
        bad(lambda: generate_call({"model": "m", "prompt": "p", "template": "{{ .Prompt }}"}, b"")).param == "template"
    )
    assert bad(lambda: generate_call({"model": "m", "prompt": "p", "context": [1, 2]}, b"")).param == "context"
    assert bad(lambda: generate_call({"model": "m", "prompt": "p", "raw": True, "system": "s"}, b"")).param == "system"
    err = bad(
        lambda: generate_call(
            {"model": "m", "prompt": "p", "raw": True, "images": [base64.b64encode(PNG).decode()]}, b""
        )
    )
    assert err.param == "images"
    assert bad(lambda: generate_call({"model": "m", "prompt": "p", "images": ["%"]}, b"")).param == "images[0]"


# -- answers ----------------------------------------------------------------------------------------------------
def _options(kind: str = "chat") -> dict[str, Any]:
    return {"kind": kind, "asked": "gemma:latest", "started": 0, "routed": 5_000_000}


TIMINGS = Timings(
    prompt_tokens=9,
    prompt_ms=12.5,
    prompt_per_second=720.0,
    predicted_tokens=4,
    predicted_ms=40.0,
    predicted_per_second=100.0,
)


def _client_answer(payload: bytes | dict[str, Any], stream: bool = False, kind: str = "chat") -> Any:
    """What the ollama client makes of a gateway answer."""
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    wire = Wire(lambda body: httpx.Response(200, content=content))
    client = wire.client()
    if kind == "chat":
        return client.chat(model="m", messages=[{"role": "user", "content": "x"}], stream=stream)  # type: ignore[call-overload]
    return client.generate(model="m", prompt="x", stream=stream)  # type: ignore[call-overload]


def test_a_whole_chat_answer_with_llama_cpp_timings() -> None:
    resp = ChatResponse(
        "It is sunny.",
        "stop",
        Usage(9, 4),
        reasoning="Check the tool.",
        tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris"}'),),
        timings=TIMINGS,
    )
    out = _client_answer(ollama_chat(resp, _options(), "gemma:latest"))
    assert isinstance(out, ollama.ChatResponse)
    assert out.model == "gemma:latest" and out.done and out.done_reason == "stop"
    assert out.message.content == "It is sunny." and out.message.thinking == "Check the tool."
    assert out.message.tool_calls and out.message.tool_calls[0].function.arguments == {"city": "Paris"}
    assert (out.prompt_eval_count, out.eval_count) == (9, 4)
    assert (out.prompt_eval_duration, out.eval_duration) == (12_500_000, 40_000_000)  # nanoseconds
    assert out.load_duration == 5_000_000 and out.total_duration is not None and out.total_duration >= 5_000_000


def test_a_cut_answer_is_done_reason_length_and_invalid_arguments_stay_visible() -> None:
    resp = ChatResponse("", "length", Usage(3, 8), tool_calls=(ToolCall("c", "f", "{not json"),))
    out = _client_answer(ollama_chat(resp, _options(), "m"))
    assert out.done_reason == "length"
    assert out.message.tool_calls[0].function.arguments == {"_invalid_arguments": "{not json"}


def test_a_whole_generate_answer_from_a_chat_and_from_a_completion() -> None:
    out = _client_answer(
        ollama_generate(ChatResponse("blue", "stop", Usage(5, 1)), _options("generate"), "m"), kind="generate"
    )
    assert out.response == "blue" and out.done and out.eval_count == 1 and out.eval_duration is not None
    completion = Completion("x = 1", "length", Usage(4, 3), timings=TIMINGS)
    out = _client_answer(ollama_generate(completion, _options("generate"), "m"), kind="generate")
    assert out.response == "x = 1" and out.done_reason == "length" and out.eval_duration == 40_000_000


def _stream(kind: str, events: list[StreamEvent]) -> bytes:
    w = OllamaLineWriter("gemma:latest", _options(kind))
    return w.start() + b"".join(w.event(e) for e in events) + w.end()


def test_a_streamed_chat_as_the_client_reads_it() -> None:
    call = ToolCall("call_1", "get_weather", '{"city": "Rome"}')
    final = ChatResponse("Hello world", "stop", Usage(7, 3), reasoning="hmm", tool_calls=(call,), timings=TIMINGS)
    raw = _stream(
        "chat",
        [
            ReasoningDelta("hm"),
            ReasoningDelta("m"),
            ContentDelta("Hello"),
            ContentDelta(" world"),
            ToolCallDelta(0, "call_1", "get_weather", '{"city"'),
            ToolCallEnd(0, call),
            Done(final),
        ],
    )
    assert all(line.startswith(b"{") for line in raw.splitlines()) and raw.endswith(b"\n")
    parts = list(_client_answer(raw, stream=True))
    assert "".join(p.message.content or "" for p in parts) == "Hello world"
    assert "".join(p.message.thinking or "" for p in parts) == "hmm"
    calls = [tc for p in parts for tc in p.message.tool_calls or ()]
    assert (
        len(calls) == 1 and calls[0].function.name == "get_weather" and calls[0].function.arguments == {"city": "Rome"}
    )
    assert [p.done for p in parts].count(True) == 1 and parts[-1].done
    assert parts[-1].done_reason == "stop" and parts[-1].eval_count == 3 and parts[-1].eval_duration == 40_000_000


def test_done_alone_sends_what_was_never_streamed() -> None:
    final = ChatResponse("whole", "stop", Usage(1, 1), tool_calls=(ToolCall("c", "f", "{}"),))
    parts = list(_client_answer(_stream("chat", [Done(final)]), stream=True))
    assert "".join(p.message.content or "" for p in parts) == "whole"
    assert sum(len(p.message.tool_calls or ()) for p in parts) == 1
    # without timings, the stream's own clock: prompt until the first token, then generation
    assert parts[-1].prompt_eval_duration is not None and parts[-1].eval_duration is not None


def test_a_streamed_generate_and_an_error_line() -> None:
    parts = list(
        _client_answer(
            _stream(
                "generate", [ContentDelta("a"), ContentDelta("b"), Done(ChatResponse("ab", "length", Usage(2, 2)))]
            ),
            stream=True,
            kind="generate",
        )
    )
    assert "".join(p.response for p in parts) == "ab" and parts[-1].done_reason == "length"
    w = OllamaLineWriter("m", _options())
    with pytest.raises(ollama.ResponseError, match="upstream died"):
        list(_client_answer(w.event(ContentDelta("a")) + w.error(502, "api_error", "upstream died"), stream=True))


# -- model routes -----------------------------------------------------------------------------------------------
def test_names_are_listed_with_a_tag() -> None:
    assert [display_name(n) for n in ("gemma", "qwen:7b", "two/gemma", "hf.co/org/x:Q4_K_M")] == [
        "gemma:latest",
        "qwen:7b",
        "two/gemma:latest",
        "hf.co/org/x:Q4_K_M",
    ]


def test_a_managed_models_capabilities_come_from_its_args_and_gguf() -> None:
    info = GGUFInfo(
        "m",
        Path("m.gguf"),
        1,
        template="{% if tools %}<think>{% endif %}",
        metadata={"tokenizer.ggml.fim_pre_token_id": 1},
    )
    assert managed_capabilities(info, ["--jinja", "--mmproj", "p.gguf"]) == [
        "completion",
        "tools",
        "insert",
        "vision",
        "thinking",
    ]
    assert managed_capabilities(info, []) == ["completion", "insert", "thinking"]  # no --jinja: no tools


def test_logprobs_reach_the_client_whole_and_streamed() -> None:
    item = {"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": [{"token": "Hi", "logprob": -0.1}]}
    whole = ChatResponse("Hi", "stop", Usage(1, 1), logprobs=(item,))
    out = _client_answer(ollama_chat(whole, _options(), "m"))
    assert out.logprobs and out.logprobs[0].token == "Hi" and out.logprobs[0].top_logprobs[0].logprob == -0.1
    parts = list(_client_answer(_stream("chat", [ContentDelta("Hi", (item,)), Done(whole)]), stream=True))
    assert [lp.token for p in parts for lp in p.logprobs or ()] == ["Hi"]


def test_a_lone_surrogate_from_the_upstream_goes_out_as_its_escape() -> None:
    w = OllamaLineWriter("m", _options())
    line = w.event(ContentDelta("a\ud800b"))  # what json.loads makes of an upstream's "a\ud800b"
    assert json.loads(line)["message"]["content"] == "a\ud800b"
    assert json.loads(ollama_chat_line := w.error(502, "api_error", "bad \udfff"))["error"] == "bad \udfff"
    assert ollama_chat_line.endswith(b"\n")
