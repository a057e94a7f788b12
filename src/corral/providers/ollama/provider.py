"""Ollama through its native API: /api/chat, /api/embed, /api/tags, /api/version.

Streams are NDJSON, one JSON object a line, the last with ``done: true`` and the
statistics; errors are ``{"error": "..."}``, at any status or as a stream line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ...capabilities import Capability
from ...config import ProviderConfig
from ...errors import ConfigurationError, ResponseError, UnsupportedCapability, parse_error_message
from ...structured import schema_of
from ...types import ChatResponse, Embeddings, Health, ModelInfo, Usage
from ..base import Call, ChatRequest, HTTPRequest, Provider, StreamCall, decode_json
from .messages import messages_to_ollama
from .stream import OllamaStreamState

__all__ = ["OllamaProvider"]

_SAMPLING = (("temperature", "temperature"), ("top_p", "top_p"), ("seed", "seed"))


def _root(url: str) -> str:
    """The server root: "http://host:11434", ".../api" and ".../v1" (the OpenAI shim) all mean it."""
    url = url.rstrip("/")
    for suffix in ("/api", "/v1"):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


def _keep_alive(value: Any) -> Any:
    """Ollama reads keep_alive as seconds (a number) or a Go duration ("10m", "-1s"); a numeric
    string from a DSN query ("?keep_alive=-1") would fail its duration parser, so send a number."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigurationError(f"ollama keep_alive must be a duration like '10m' or seconds, got {value!r}")
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() else number
    return value


class OllamaProvider(Provider):
    type_name = "ollama"
    server_label = "Ollama"
    capabilities = frozenset(
        {
            Capability.CHAT,
            Capability.STREAM,
            Capability.TOOLS,
            Capability.STRUCTURED_OUTPUT,
            Capability.EMBEDDINGS,
            Capability.MODELS,
            Capability.HEALTH,
            Capability.VISION,
        }
    )

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.base_url = _root(self.base_url)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def unreachable_message(self) -> str:
        return f"Ollama not running at {self.endpoint}"

    def _model(self, model: str | None, what: str) -> str:
        chosen = model or self.config.model
        if not chosen:
            raise ConfigurationError(
                f"ollama {what} needs a model: pass model=... or put ?model=... in the DSN (e.g. llama3.2)"
            )
        return chosen

    def _keep_alive_into(self, body: dict[str, Any]) -> None:
        keep_alive = self.config.options.get("keep_alive")
        if keep_alive is not None:
            body["keep_alive"] = _keep_alive(keep_alive)

    # -- chat -------------------------------------------------------------------------------------------
    def chat_body(self, req: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model(req.model, "chat"),
            "messages": messages_to_ollama(req.messages),
            "stream": stream,
        }
        options: dict[str, Any] = {}
        if req.max_tokens is not None:
            options["num_predict"] = req.max_tokens
        for field, key in _SAMPLING:
            value = getattr(req, field)
            if value is not None:
                options[key] = value
        if req.stop:
            options["stop"] = list(req.stop)
        if req.tools and req.tool_choice != "none":
            # Ollama accepts OpenAI's {"type": "function", "function": {...}} tool definitions as they are.
            body["tools"] = [dict(t) for t in req.tools]
        if req.tool_choice not in (None, "auto", "none"):
            raise UnsupportedCapability(self.name, "tool_choice", "ollama always lets the model choose ('auto')")
        if req.response_format is not None:
            schema = schema_of(req.response_format)
            body["format"] = schema if schema is not None else "json"
        self._keep_alive_into(body)
        if req.thinking is False or req.reasoning_effort == "none" or req.thinking_budget == 0:
            body["think"] = False
        elif req.reasoning_effort in ("low", "medium", "high"):
            body["think"] = req.reasoning_effort  # gpt-oss takes a level; others read it as on
        elif req.thinking or req.thinking_budget or req.reasoning_effort == "minimal":
            body["think"] = True
        extra = dict(req.extra_body)  # e.g. {"think": True}, {"options": {"num_ctx": 8192}}
        extra_options = extra.pop("options", None)
        if isinstance(extra_options, Mapping):
            options.update(extra_options)
        elif extra_options is not None:
            raise ConfigurationError("extra_body['options'] must be a dict of Ollama model options")
        if options:
            body["options"] = options
        body.update(extra)
        return body

    def new_state(self, req: ChatRequest) -> OllamaStreamState:
        fmt = req.response_format if req.parse_output else None
        return OllamaStreamState(self.name, response_format=fmt, output_type=req.output_type, tools=req.tools)

    def chat(self, req: ChatRequest) -> Call[ChatResponse]:
        def parse(status: int, raw: bytes) -> ChatResponse:
            data = decode_json(raw, "chat")
            if not isinstance(data, dict) or ("message" not in data and "error" not in data):
                raise ResponseError(
                    f"ollama chat response has no message: {raw[:300]!r}", raw=raw.decode("utf-8", "replace")
                )
            state = self.new_state(req)
            state.feed(data)
            return state.finish()

        return Call(
            HTTPRequest("POST", self.url("/api/chat"), self.chat_body(req, stream=False), model_route=True), parse
        )

    def stream_chat(self, req: ChatRequest) -> StreamCall:
        return StreamCall(
            HTTPRequest("POST", self.url("/api/chat"), self.chat_body(req, stream=True), model_route=True),
            lambda: self.new_state(req),
            decoder="ndjson",
        )

    # -- other routes -----------------------------------------------------------------------------------
    def embed(self, inputs: Sequence[str], model: str | None) -> Call[Embeddings]:
        body: dict[str, Any] = {"model": self._model(model, "embed"), "input": list(inputs)}
        self._keep_alive_into(body)

        def parse(status: int, raw: bytes) -> Embeddings:
            data = decode_json(raw, "embeddings")
            vectors = data.get("embeddings") if isinstance(data, dict) else None
            if not isinstance(vectors, list) or not all(isinstance(v, list) for v in vectors):
                raise ResponseError(f"ollama embed response has no embeddings list: {raw[:300]!r}")
            return Embeddings(
                vectors=[[float(x) for x in v] for v in vectors],
                model=str(data.get("model", "")),
                usage=Usage(int(data.get("prompt_eval_count") or 0)),
                provider=self.name,
            )

        return Call(HTTPRequest("POST", self.url("/api/embed"), body, model_route=True), parse)

    def models(self) -> Call[list[ModelInfo]]:
        def parse(status: int, raw: bytes) -> list[ModelInfo]:
            data = decode_json(raw, "models")
            items = data.get("models") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise ResponseError(f"ollama tags response has no models list: {raw[:300]!r}")
            return [
                ModelInfo(id=str(m.get("name") or m.get("model") or ""), provider=self.name, meta=m)
                for m in items
                if isinstance(m, dict)
            ]

        return Call(HTTPRequest("GET", self.url("/api/tags")), parse)

    def health(self) -> Call[Health]:
        def parse(status: int, raw: bytes) -> Health:
            if status == 200:
                try:
                    data = json.loads(raw)
                except ValueError:
                    data = None  # something answered 200 at /api/version: still up
                version = data.get("version") if isinstance(data, dict) else None
                return Health("ok", self.name, self.endpoint, f"Ollama {version}" if version else "")
            message, _ = parse_error_message(raw)
            return Health("error", self.name, self.endpoint, f"HTTP {status}: {message}")

        return Call(HTTPRequest("GET", self.url("/api/version")), parse, parse_errors=True)
