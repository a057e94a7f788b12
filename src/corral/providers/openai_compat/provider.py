"""Any server that speaks OpenAI's /v1 API: OpenAI, vLLM, OpenRouter, llama-server, …"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ...capabilities import Capability
from ...config import ProviderConfig
from ...errors import ResponseError
from ...types import ChatResponse, Completion, Embeddings, GeneratedImage, Health, ModelInfo, Usage
from ..base import Call, ChatRequest, HTTPRequest, Provider, StreamCall, decode_json
from .messages import message_to_openai
from .stream import ChunkAssembler

__all__ = ["OpenAICompatProvider"]


class OpenAICompatProvider(Provider):
    type_name = "openai"
    server_label = "OpenAI-compatible server"
    capabilities = frozenset(
        {
            Capability.CHAT,
            Capability.STREAM,
            Capability.TOOLS,
            Capability.STRUCTURED_OUTPUT,
            Capability.EMBEDDINGS,
            Capability.COMPLETION,
            Capability.MODELS,
            Capability.HEALTH,
            Capability.VISION,
            Capability.IMAGES,
            Capability.LOGPROBS,
        }
    )

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        #: where the OpenAI routes live: base_url itself ("https://api.openai.com/v1")
        self.v1_base = self.base_url
        # OpenAI's own API deprecated max_tokens (o-series models reject it); OpenAI-compatible servers
        # (vLLM, llama.cpp, OpenRouter, zen-style clouds) mostly know only the legacy name.
        official = urlsplit(self.base_url).hostname == "api.openai.com"
        default_field = "max_completion_tokens" if official else "max_tokens"
        self.max_tokens_field = str(config.options.get("max_tokens_field", default_field))

    def url(self, path: str) -> str:
        return f"{self.v1_base}{path}"

    # -- chat -------------------------------------------------------------------------------------------
    def chat_body(self, req: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"messages": [message_to_openai(m) for m in req.messages]}
        model = req.model or self.config.model
        if model:
            body["model"] = model
        if req.max_tokens is not None:
            body[self.max_tokens_field] = req.max_tokens
        for key in ("temperature", "top_p", "seed"):
            value = getattr(req, key)
            if value is not None:
                body[key] = value
        if req.stop:
            body["stop"] = list(req.stop)
        if req.tools:
            body["tools"] = [dict(t) for t in req.tools]
        if req.tool_choice is not None:
            body["tool_choice"] = req.tool_choice
        if req.response_format is not None:
            body["response_format"] = dict(req.response_format)
        if req.logprobs:
            body["logprobs"] = True
            if req.top_logprobs is not None:
                body["top_logprobs"] = req.top_logprobs
        self.reasoning_fields(req, body)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if req.extra_body:
            body.update(req.extra_body)
        return body

    def reasoning_fields(self, req: ChatRequest, body: dict[str, Any]) -> None:
        """OpenAI's wire knows only ``reasoning_effort`` (a budget has no equivalent there)."""
        if req.reasoning_effort is not None:
            body["reasoning_effort"] = req.reasoning_effort

    def new_assembler(self, req: ChatRequest) -> ChunkAssembler:
        return ChunkAssembler(
            self.name,
            response_format=req.response_format if req.parse_output else None,
            output_type=req.output_type,
            tools=req.tools,
            stop=req.stop,
        )

    def chat(self, req: ChatRequest) -> Call[ChatResponse]:
        def parse(status: int, body: bytes) -> ChatResponse:
            data = decode_json(body, "chat")
            if not isinstance(data, dict) or not data.get("choices"):
                raise ResponseError(
                    f"chat response has no choices: {body[:300]!r}", raw=body.decode("utf-8", "replace")
                )
            state = self.new_assembler(req)
            state.feed(data)
            return state.finish()

        request = HTTPRequest(
            "POST", self.url("/chat/completions"), self.chat_body(req, stream=False), model_route=True
        )
        return Call(request, parse)

    #: extra headers on streamed requests
    stream_headers: Mapping[str, str] = {}

    def stream_chat(self, req: ChatRequest) -> StreamCall:
        return StreamCall(
            HTTPRequest(
                "POST", self.url("/chat/completions"), self.chat_body(req, stream=True), self.stream_headers, True
            ),
            lambda: self.new_assembler(req),
        )

    # -- other routes -----------------------------------------------------------------------------------
    def complete(self, prompt: str, params: dict[str, Any]) -> Call[Completion]:
        body: dict[str, Any] = {"prompt": prompt, **params}
        if "model" not in body and self.config.model:
            body["model"] = self.config.model

        def parse(status: int, raw: bytes) -> Completion:
            data = decode_json(raw, "completion")
            try:
                choice = data["choices"][0]
            except (KeyError, IndexError, TypeError):
                raise ResponseError(f"completion response has no choices: {raw[:300]!r}") from None
            usage = data.get("usage") or {}
            return Completion(
                text=str(choice.get("text", "")),
                finish_reason=str(choice.get("finish_reason") or "stop"),
                usage=Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
                model=str(data.get("model", "")),
                provider=self.name,
            )

        return Call(HTTPRequest("POST", self.url("/completions"), body), parse)

    def embed(self, inputs: Sequence[str], model: str | None) -> Call[Embeddings]:
        body: dict[str, Any] = {"input": list(inputs)}
        if model or self.config.model:
            body["model"] = model or self.config.model

        def parse(status: int, raw: bytes) -> Embeddings:
            data = decode_json(raw, "embeddings")
            items = data.get("data") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise ResponseError(f"embeddings response has no data list: {raw[:300]!r}")
            ordered = sorted(items, key=lambda d: d.get("index", 0))
            usage = data.get("usage") or {}
            return Embeddings(
                vectors=[list(map(float, d["embedding"])) for d in ordered],
                model=str(data.get("model", "")),
                usage=Usage(int(usage.get("prompt_tokens", 0))),
                provider=self.name,
            )

        return Call(HTTPRequest("POST", self.url("/embeddings"), body, model_route=True), parse)

    def models(self) -> Call[list[ModelInfo]]:
        def parse(status: int, raw: bytes) -> list[ModelInfo]:
            data = decode_json(raw, "models")
            # {"object":"list","data":[...]} from OpenAI; a bare list from some servers (seed 004).
            items = data.get("data") if isinstance(data, dict) else data
            if not isinstance(items, list):
                raise ResponseError(f"model list has no data: {raw[:300]!r}")
            return [self.model_info(m) for m in items if isinstance(m, dict)]

        return Call(HTTPRequest("GET", self.url("/models")), parse)

    def model_info(self, m: dict[str, Any]) -> ModelInfo:
        meta = m.get("meta")
        meta = meta if isinstance(meta, dict) else {}
        ctx = meta.get("n_ctx") or m.get("context_length") or m.get("max_model_len")
        return ModelInfo(
            id=str(m.get("id") or m.get("name") or ""),
            owned_by=str(m.get("owned_by", "")),
            created=m.get("created") if isinstance(m.get("created"), int) else None,
            context_length=int(ctx) if isinstance(ctx, int) else None,
            provider=self.name,
            meta=m,
        )

    def images(self, prompt: str, params: dict[str, Any]) -> Call[list[GeneratedImage]]:
        body: dict[str, Any] = {"prompt": prompt, **params}
        if "model" not in body and self.config.model:
            body["model"] = self.config.model

        def parse(status: int, raw: bytes) -> list[GeneratedImage]:
            data = decode_json(raw, "images")
            items = data.get("data") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise ResponseError(f"image response has no data list: {raw[:300]!r}")
            return [
                GeneratedImage(d.get("b64_json"), d.get("url"), d.get("revised_prompt"))
                for d in items
                if isinstance(d, dict)
            ]

        return Call(HTTPRequest("POST", self.url("/images/generations"), body), parse)

    def health(self) -> Call[Health]:
        # OpenAI-compatible hosts have no standard health route; an answered model list is health.
        def parse(status: int, raw: bytes) -> Health:
            return Health(
                "ok" if status < 400 else "error", self.name, self.endpoint, "" if status < 400 else f"HTTP {status}"
            )

        return Call(HTTPRequest("GET", self.url("/models")), parse, parse_errors=True)
