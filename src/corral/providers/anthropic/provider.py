"""Anthropic's Messages API over plain HTTP (no SDK): chat, streaming, tools, structured output."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ...capabilities import Capability
from ...config import ProviderConfig
from ...errors import ResponseError
from ...types import ChatResponse, Health, ModelInfo
from ..base import Call, ChatRequest, HTTPRequest, Provider, StreamCall, decode_json
from .assembler import MessageAssembler
from .request import build_body
from .response import parse_message
from .stream import AnthropicStreamState

__all__ = ["API_VERSION", "AnthropicProvider"]

API_VERSION = "2023-06-01"


class AnthropicProvider(Provider):
    type_name = "anthropic"
    server_label = "Anthropic API"
    capabilities = frozenset(
        {
            Capability.CHAT,
            Capability.STREAM,
            Capability.TOOLS,
            Capability.STRUCTURED_OUTPUT,
            Capability.MODELS,
            Capability.HEALTH,
            Capability.VISION,
        }
    )

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        # Routes live under /v1; tolerate a base_url that already names it.
        self.v1_base = self.base_url if self.base_url.endswith("/v1") else f"{self.base_url}/v1"

    def url(self, path: str) -> str:
        return f"{self.v1_base}{path}"

    def headers(self) -> dict[str, str]:
        options = self.config.options
        out = {"anthropic-version": str(options.get("anthropic_version") or API_VERSION)}
        beta = options.get("anthropic_beta")
        if beta:
            out["anthropic-beta"] = beta if isinstance(beta, str) else ",".join(map(str, beta))
        key = self.config.api_key
        if key:
            out["x-api-key"] = key.get()
        return out

    # -- chat -------------------------------------------------------------------------------------------
    def new_assembler(self, req: ChatRequest) -> MessageAssembler:
        return MessageAssembler(
            self.name, response_format=req.response_format, output_type=req.output_type, parse=req.parse_output
        )

    def chat(self, req: ChatRequest) -> Call[ChatResponse]:
        body = build_body(req, self.config, stream=False)
        return Call(
            HTTPRequest("POST", self.url("/messages"), body, model_route=True),
            lambda status, raw: parse_message(raw, self.new_assembler(req)),
        )

    def stream_chat(self, req: ChatRequest) -> StreamCall:
        body = build_body(req, self.config, stream=True)
        return StreamCall(
            HTTPRequest("POST", self.url("/messages"), body, model_route=True),
            lambda: AnthropicStreamState(self.new_assembler(req)),
            decoder="sse",
        )

    # -- other routes -----------------------------------------------------------------------------------
    def models(self) -> Call[list[ModelInfo]]:
        def parse(status: int, raw: bytes) -> list[ModelInfo]:
            data = decode_json(raw, "models")
            items = data.get("data") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise ResponseError(f"model list has no data: {raw[:300]!r}")
            return [self.model_info(m) for m in items if isinstance(m, dict)]

        # One page of up to 1000 (the API's maximum; the default page is 20).
        return Call(HTTPRequest("GET", self.url("/models?limit=1000")), parse)

    def model_info(self, m: dict[str, Any]) -> ModelInfo:
        ctx = m.get("max_input_tokens")
        return ModelInfo(
            id=str(m.get("id") or ""),
            owned_by="anthropic",
            created=_epoch(m.get("created_at")),
            context_length=ctx if isinstance(ctx, int) and not isinstance(ctx, bool) else None,
            provider=self.name,
            meta=m,
        )

    def health(self) -> Call[Health]:
        # The API has no health route; an answered model list (which checks the key) is health.
        def parse(status: int, raw: bytes) -> Health:
            ok = status < 400
            return Health("ok" if ok else "error", self.name, self.endpoint, "" if ok else f"HTTP {status}")

        return Call(HTTPRequest("GET", self.url("/models?limit=1")), parse, parse_errors=True)


def _epoch(value: Any) -> int | None:
    """RFC 3339 ``created_at`` -> Unix seconds."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())
