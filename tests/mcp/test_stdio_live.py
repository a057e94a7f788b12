"""`corral mcp` over stdio, spawned and driven by the official MCP SDK client, against the real
llama.cpp server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp_types import CallToolResult, TextContent

from corral import Client

from .conftest import stdio_session

pytestmark = [pytest.mark.live, pytest.mark.timeout(240)]

SIX = {
    "chat_completion",
    "stream_chat",
    "list_available_models",
    "get_system_info",
    "benchmark_model",
    "validate_model",
}


def text_of(result: CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


def ok(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content


async def test_lists_exactly_the_six_tools_with_schemas(mcp_config: Path) -> None:
    async with stdio_session(mcp_config) as session:
        tools = (await session.list_tools()).tools
    assert {t.name for t in tools} == SIX
    assert len(tools) == 6
    for tool in tools:
        assert tool.input_schema["type"] == "object", tool.name
        assert tool.output_schema is not None and tool.output_schema["type"] == "object", tool.name
        assert tool.description, tool.name
    schemas = {t.name: t.input_schema for t in tools}
    for name in ("chat_completion", "stream_chat"):
        props = schemas[name]["properties"]
        assert {"messages", "prompt", "model", "provider", "max_tokens", "temperature", "response_format"} <= set(props)
        assert "ctx" not in props
    assert schemas["benchmark_model"]["required"] == ["model"]
    assert schemas["validate_model"]["required"] == ["model"]


async def test_chat_completion(mcp_config: Path) -> None:
    async with stdio_session(mcp_config) as session:
        by_prompt = ok(await session.call_tool("chat_completion", {"prompt": "Say hi.", "max_tokens": 8}))
        by_messages = ok(
            await session.call_tool(
                "chat_completion",
                {
                    "messages": [
                        {"role": "system", "content": "You answer in one word."},
                        {"role": "user", "content": "Name a colour."},
                    ],
                    "max_tokens": 8,
                    "temperature": 0,
                    "provider": "local",
                },
            )
        )
    for r in (by_prompt, by_messages):
        assert r["content"].strip()
        assert r["usage"]["prompt_tokens"] > 0 and r["usage"]["completion_tokens"] > 0
        assert r["usage"]["total_tokens"] == r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"]
        assert r["finish_reason"] in ("stop", "length")
        assert r["provider"] == "local"
        assert r["tool_calls"] == []


async def test_chat_completion_structured_output(mcp_config: Path) -> None:
    schema = {
        "type": "object",
        "properties": {"colour": {"type": "string", "maxLength": 12}},
        "required": ["colour"],
    }
    async with stdio_session(mcp_config) as session:
        r = ok(
            await session.call_tool(
                "chat_completion",
                {
                    "prompt": "Name a colour as JSON.",
                    "max_tokens": 24,
                    "temperature": 0,
                    "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
                },
            )
        )
    assert isinstance(r["parsed"], dict) and isinstance(r["parsed"]["colour"], str)


async def test_stream_chat_sends_progress_before_the_result(mcp_config: Path) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with stdio_session(mcp_config) as session:
        result = await session.call_tool(
            "stream_chat", {"prompt": "Count from one to five.", "max_tokens": 16}, progress_callback=on_progress
        )
        # the result arrived; every notification sent before it has been delivered already
        r = ok(result)
    assert seen, "no progress notification before the result"
    assert [p for p, _, _ in seen] == sorted({p for p, _, _ in seen})  # strictly increasing
    assert seen[-1][2] == r["content"]  # the last one carries the whole text
    assert r["content"].strip()
    assert r["usage"]["completion_tokens"] > 0
    assert r["progress_notifications"] == len(seen)


async def test_list_available_models(mcp_config: Path, llama_url: str) -> None:
    with Client(f"llamacpp://{llama_url.split('://', 1)[1]}") as c:
        served = {m.id for m in c.models()}
    async with stdio_session(mcp_config) as session:
        r = ok(await session.call_tool("list_available_models", {}))
        only_local = ok(await session.call_tool("list_available_models", {"provider": "local"}))
    local = [m for m in r["models"] if m["provider"] == "local"]
    assert served <= {m["id"] for m in local}
    for m in local:
        assert m["state"] == "loaded"
        assert {"chat", "stream", "embeddings", "props", "slots"} <= set(m["capabilities"])
    status = {p["name"]: p for p in r["providers"]}
    assert status["local"]["ok"] and status["local"]["default"]
    assert not status["down"]["ok"] and "127.0.0.1:9" in status["down"]["error"]
    assert [p["name"] for p in only_local["providers"]] == ["local"]


async def test_get_system_info(mcp_config: Path) -> None:
    async with stdio_session(mcp_config) as session:
        r = ok(await session.call_tool("get_system_info", {}))
    assert r["cpu"]["cores"] > 0 and r["cpu"]["model"]
    assert r["memory"]["total_bytes"] > 0 and r["memory"]["available_bytes"] > 0
    assert isinstance(r["gpus"], list)
    assert r["corral_version"]
    providers = {p["name"]: p for p in r["providers"]}
    local = providers["local"]
    assert local["status"] == "ok" and local["default"]
    assert local["llama_cpp"]["build_info"]
    assert "system_info" in local["llama_cpp"]  # this llama-server build does not send one: null
    assert local["llama_cpp"]["n_ctx"] and local["llama_cpp"]["total_slots"] == 2
    assert providers["down"]["status"] == "error" and providers["down"]["detail"]


async def test_bad_arguments_are_tool_errors_naming_the_argument(mcp_config: Path) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("chat_completion", {"prompt": "hi", "max_tokens": -1}, "max_tokens"),
        ("chat_completion", {}, "messages"),
        ("chat_completion", {"prompt": "hi", "messages": [{"role": "user", "content": "hi"}]}, "messages"),
        ("chat_completion", {"prompt": "hi", "provider": "nope"}, "provider"),
        ("chat_completion", {"prompt": "hi", "temperature": 7}, "temperature"),
        ("chat_completion", {"messages": [{"role": "robot", "content": "hi"}]}, "role"),
        ("chat_completion", {"prompt": "hi", "response_format": {"type": "yaml"}}, "response_format"),
        ("stream_chat", {"prompt": "hi", "max_tokens": 0}, "max_tokens"),
        ("list_available_models", {"provider": "nope"}, "provider"),
        ("benchmark_model", {"model": "m", "runs": 0}, "runs"),
        ("validate_model", {}, "model"),
    ]
    async with stdio_session(mcp_config) as session:
        for tool, args, argument in cases:
            result = await session.call_tool(tool, args)
            text = text_of(result)
            assert result.is_error, (tool, args)
            assert argument in text, (tool, args, text)
            assert "Traceback" not in text
        # the server is still there after all of that
        assert ok(await session.call_tool("chat_completion", {"prompt": "hi", "max_tokens": 2}))["content"] is not None


async def test_provider_down_is_a_tool_error(mcp_config: Path) -> None:
    async with stdio_session(mcp_config) as session:
        result = await session.call_tool("chat_completion", {"prompt": "hi", "provider": "down"})
    assert result.is_error
    assert "not running at http://127.0.0.1:9" in text_of(result) or "127.0.0.1:9" in text_of(result)


async def test_benchmark_model_reports_progress(mcp_config: Path, served_model: str) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with stdio_session(mcp_config) as session:
        r = ok(
            await session.call_tool(
                "benchmark_model",
                {"model": served_model, "prompt_tokens": 32, "max_tokens": 8, "runs": 1},
                progress_callback=on_progress,
            )
        )
    assert r["generation_tps"] > 0 and r["ttft_ms"] > 0
    assert len(r["runs"]) == 1 and r["runs"][0]["completion_tokens"] > 0
    assert r["source"] == "timings"  # llama.cpp's own measurements
    assert r["provider"] == "local"
    assert seen and seen[-1][0] == seen[-1][1]  # ends at total
    assert [p for p, _, _ in seen] == sorted({p for p, _, _ in seen})


async def test_validate_model(mcp_config: Path, served_model: str) -> None:
    seen: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message)

    async with stdio_session(mcp_config) as session:
        r = ok(await session.call_tool("validate_model", {"model": served_model}, progress_callback=on_progress))
    probes = {p["name"]: p for p in r["probes"]}
    assert probes["chat"]["passed"] is True and probes["chat"]["evidence"]
    assert "stream" in probes and "embeddings" in probes
    assert "chat" in r["passed"]
    assert "chat" in seen


async def test_validate_model_never_reads_a_path_the_caller_names(mcp_config: Path, tmp_path: Path) -> None:
    """Issue 12 (low): a tool call names models, not files; a path in it must not tell whether a GGUF
    exists on the machine or what it holds."""
    hidden = tmp_path / "private" / "secret.gguf"
    hidden.parent.mkdir()
    hidden.write_bytes(b"GGUF" + b"\0" * 64)
    async with stdio_session(mcp_config) as session:
        r = ok(await session.call_tool("validate_model", {"model": str(hidden)}))
    checked = [p for p in r["probes"] if p["name"] == "gguf_integrity"]
    assert all(p["detail"].get("path") != str(hidden) for p in checked)
    assert "secret.gguf" not in json.dumps([r["probes"], r.get("gguf")])  # only the name it was given comes back
