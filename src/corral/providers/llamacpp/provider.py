"""llama-server: the OpenAI routes (via openai_compat) plus its native ones.

Native routes used: /health, /props, /slots (save/restore/erase), /metrics,
/tokenize, /detokenize, /apply-template, /completion, /infill, /v1/rerank.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from ...capabilities import Capability
from ...config import ProviderConfig
from ...errors import (
    ConfigurationError,
    ResponseError,
    UnsupportedCapability,
    error_from_response,
    parse_error_message,
)
from ...structured import schema_of
from ...types import Completion, Health, Message, Reranking, RerankResult, RunningModel, SlotInfo, Timings, Usage
from ..base import Call, ChatRequest, HTTPRequest, decode_json
from ..openai_compat import OpenAICompatProvider
from ..openai_compat.messages import message_to_openai

__all__ = ["LlamaCppProvider"]


def _not_501(status: int, raw: bytes) -> bool:
    """A probe's verdict: 501 is llama-server's "this server was not started with that feature"."""
    return status != 501


def _strip_v1(url: str) -> str:
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


class LlamaCppProvider(OpenAICompatProvider):
    type_name = "llamacpp"
    server_label = "llama-server"
    capabilities = (OpenAICompatProvider.capabilities - {Capability.IMAGES}) | {
        Capability.GRAMMAR,
        Capability.TOKENIZE,
        Capability.TEMPLATES,
        Capability.PROPS,
        Capability.SLOTS,
        Capability.METRICS,
        Capability.RERANK,
        Capability.INFILL,
    }

    # llama-server drops a keep-alive connection soon after a streamed answer; a pooled connection
    # reused then fails with "server disconnected" on the next request. Streams get their own.
    stream_headers = {"Connection": "close"}

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        # Users paste either "http://host:8080" or "http://host:8080/v1"; both mean the server root.
        self.base_url = _strip_v1(self.base_url)
        self.v1_base = self.base_url + "/v1"
        # Router mode (llama-server --models-dir / --models-max): one server, many models, each loaded
        # and unloaded on demand; requests are routed by their "model".
        self.router = str(config.options.get("router", "")).lower() in ("1", "true", "yes", "on")
        if self.router:
            self.capabilities = self.capabilities | {Capability.MANAGEMENT}

    def unreachable_message(self) -> str:
        return f"llama-server not running at {self.endpoint}"

    # -- router mode: GET /models (with status), POST /models/load, POST /models/unload ----------------------
    def running(self) -> Call[list[RunningModel]]:
        self.require(Capability.MANAGEMENT)

        def parse(status: int, raw: bytes) -> list[RunningModel]:
            data = decode_json(raw, "models")
            items = data.get("data") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise ResponseError(f"router /models response has no data list: {raw[:300]!r}")
            out = []
            for m in items:
                value = (m.get("status") or {}).get("value") if isinstance(m, dict) else None
                if value in ("loaded", "loading", "sleeping", "downloading"):
                    out.append(RunningModel(str(m.get("id", "")), str(value), m))
            return out

        return Call(HTTPRequest("GET", self.native("/models")), parse)

    def unload(self, model: str | None) -> Call[None]:
        self.require(Capability.MANAGEMENT)
        if not model:
            raise ConfigurationError("a llama-server in router mode unloads one model at a time: name it")
        return Call(HTTPRequest("POST", self.native("/models/unload"), {"model": model}), lambda s, r: None)

    def load(self, model: str) -> Call[None]:
        """Ask a router-mode server to load ``model`` (it loads in the background: see running())."""
        self.require(Capability.MANAGEMENT)
        if not model:
            raise ConfigurationError("load: name the model to load")
        return Call(HTTPRequest("POST", self.native("/models/load"), {"model": model}), lambda s, r: None)

    def router_models(self) -> Call[list[dict[str, Any]]]:
        """The raw ``GET /models`` entries of a router-mode server (for the lifecycle record)."""

        def parse(status: int, raw: bytes) -> list[dict[str, Any]]:
            data = decode_json(raw, "models")
            items = data.get("data") if isinstance(data, dict) else None
            return [m for m in items if isinstance(m, dict)] if isinstance(items, list) else []

        return Call(HTTPRequest("GET", self.native("/models")), parse)

    def native(self, path: str) -> str:
        return f"{self.base_url}{path}"

    # -- chat: map structured output onto llama.cpp's native fields ---------------------------------------
    def chat_body(self, req: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body = super().chat_body(req, stream=stream)
        for message, sent in zip(req.messages, body["messages"], strict=True):
            if message.role == "assistant" and message.reasoning:
                # Thinking from earlier turns, for templates that render it (and keep it cached).
                sent["reasoning_content"] = message.reasoning
        rf = body.get("response_format")
        if rf is not None:
            schema = schema_of(rf)
            if schema is not None:
                # llama-server compiles "json_schema" to a grammar on every version that has it.
                del body["response_format"]
                body["json_schema"] = schema
        if req.grammar is not None:
            body["grammar"] = req.grammar
        if stream:
            # Every chunk then carries llama.cpp's timings: the prompt's size is known at the first
            # token, not only at the end (an Anthropic client reads it from message_start).
            body.setdefault("timings_per_token", True)
        if req.stop:
            # The last chunk then says which stop string ended the answer (Anthropic's stop_sequence).
            body.setdefault("verbose", True)
        return body

    def reasoning_fields(self, req: ChatRequest, body: dict[str, Any]) -> None:
        """llama.cpp's own fields: the chat template's ``enable_thinking`` and a per-request budget;
        ``reasoning_effort`` also reaches templates that read it (gpt-oss)."""
        off = req.thinking is False or req.reasoning_effort == "none" or req.thinking_budget == 0
        on = req.thinking is True or req.thinking_budget or req.reasoning_effort not in (None, "none")
        if off or on:
            kwargs = dict(body.get("chat_template_kwargs") or {})
            kwargs.setdefault("enable_thinking", not off)
            body["chat_template_kwargs"] = kwargs
        if off:
            body["thinking_budget_tokens"] = 0
        elif req.thinking_budget:
            body["thinking_budget_tokens"] = req.thinking_budget
        if req.reasoning_effort not in (None, "none"):
            body["reasoning_effort"] = req.reasoning_effort

    # -- live capabilities ---------------------------------------------------------------------------------
    def probe(self, capability: Capability) -> Call[bool] | None:
        if capability in (Capability.TOOLS, Capability.VISION):

            def from_props(status: int, raw: bytes) -> bool:
                data = decode_json(raw, "props")
                caps = data.get("chat_template_caps") if isinstance(data, dict) else None
                modalities = data.get("modalities") if isinstance(data, dict) else None
                if isinstance(caps, dict) and "supports_tools" in caps:
                    # Without a tool-aware (jinja) template llama-server rejects or ignores tools.
                    self.live[Capability.TOOLS] = bool(caps["supports_tools"])
                if isinstance(modalities, dict) and "vision" in modalities:
                    self.live[Capability.VISION] = bool(modalities["vision"])
                return self.live.get(capability, True)

            return Call(HTTPRequest("GET", self.native("/props")), from_props)
        if capability is Capability.EMBEDDINGS:
            # An empty input is rejected (400) by a server with embeddings on, before any compute,
            # and with 501 by one started without --embeddings: a free, exact test.
            return Call(HTTPRequest("POST", self.url("/embeddings"), {"input": []}), _not_501, parse_errors=True)
        if capability is Capability.RERANK:
            # The same free test: 501 from a server started without --reranking, 400 (empty) otherwise.
            empty = {"query": "", "documents": []}
            return Call(HTTPRequest("POST", self.url("/rerank"), empty), _not_501, parse_errors=True)
        return None

    # -- native text completion and infill ---------------------------------------------------------------
    def _completion(self, what: str, status: int, raw: bytes) -> Completion:
        """/completion and /infill answer alike."""
        data = decode_json(raw, what)
        if not isinstance(data, dict) or "content" not in data:
            raise ResponseError(f"{what} response has no content: {raw[:300]!r}")
        timings = Timings.from_llamacpp(data["timings"]) if isinstance(data.get("timings"), dict) else None
        stop_type = data.get("stop_type")
        finish = "length" if stop_type == "limit" else "stop"
        return Completion(
            text=str(data["content"]),
            finish_reason=finish,
            usage=Usage(
                int(data.get("tokens_evaluated", 0)),
                int(data.get("tokens_predicted", 0)),
                timings.cached_tokens if timings else 0,
            ),
            model=str(data.get("model", "")),
            timings=timings,
            provider=self.name,
        )

    @staticmethod
    def _sampling(params: dict[str, Any]) -> dict[str, Any]:
        body = dict(params)
        if "max_tokens" in body:
            body["n_predict"] = body.pop("max_tokens")
        return body

    def complete(self, prompt: str, params: dict[str, Any]) -> Call[Completion]:
        body = {**self._sampling(params), "prompt": prompt}
        return Call(HTTPRequest("POST", self.native("/completion"), body), partial(self._completion, "completion"))

    def infill(self, prefix: str, suffix: str, params: dict[str, Any]) -> Call[Completion]:
        """Fill in between ``prefix`` and ``suffix`` (models with FIM tokens, e.g. code models)."""
        body = {**self._sampling(params), "input_prefix": prefix, "input_suffix": suffix}

        def parse(status: int, raw: bytes) -> Completion:
            if status == 501:
                # llama-server checks the model's FIM tokens before any compute and says which are missing.
                message, _ = parse_error_message(raw)
                raise UnsupportedCapability(self.name, str(Capability.INFILL), message)
            if status >= 400:
                raise error_from_response(status, raw, provider=self.name)
            return self._completion("infill", status, raw)

        return Call(HTTPRequest("POST", self.native("/infill"), body), parse, parse_errors=True)

    # -- reranking ----------------------------------------------------------------------------------------
    def rerank(self, query: str, documents: Sequence[str], top_n: int | None, model: str | None) -> Call[Reranking]:
        body: dict[str, Any] = {"query": query, "documents": list(documents)}
        if top_n is not None:
            body["top_n"] = top_n
        if model is not None:
            body["model"] = model

        def parse(status: int, raw: bytes) -> Reranking:
            data = decode_json(raw, "rerank")
            items = data.get("results") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise ResponseError(f"rerank response has no results: {raw[:300]!r}")
            try:
                results = [RerankResult(int(r["index"]), float(r["relevance_score"]), documents[int(r["index"])])
                           for r in items]  # fmt: skip
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                raise ResponseError(f"rerank result without a valid index and relevance_score: {raw[:300]!r}") from exc
            results.sort(key=lambda r: r.score, reverse=True)
            usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
            return Reranking(
                results[:top_n] if top_n is not None else results,
                model=str(data.get("model", "")),
                usage=Usage(int(usage.get("prompt_tokens", 0)), 0),
                provider=self.name,
            )

        return Call(HTTPRequest("POST", self.url("/rerank"), body, model_route=model is not None), parse)

    # -- health -------------------------------------------------------------------------------------------
    def health(self) -> Call[Health]:
        def parse(status: int, raw: bytes) -> Health:
            if status == 200:
                return Health("ok", self.name, self.endpoint)
            message, _ = parse_error_message(raw)
            return Health("loading" if status == 503 else "error", self.name, self.endpoint, message)

        return Call(HTTPRequest("GET", self.native("/health")), parse, parse_errors=True)

    # -- tokens and templates -----------------------------------------------------------------------------
    def tokenize(self, text: str, *, add_special: bool = False) -> Call[list[int]]:
        def parse(status: int, raw: bytes) -> list[int]:
            data = decode_json(raw, "tokenize")
            tokens = data.get("tokens") if isinstance(data, dict) else None
            if not isinstance(tokens, list):
                raise ResponseError(f"tokenize response has no tokens: {raw[:300]!r}")
            return [int(t) for t in tokens]

        body = {"content": text, "add_special": add_special}
        return Call(HTTPRequest("POST", self.native("/tokenize"), body), parse)

    def detokenize(self, tokens: Sequence[int]) -> Call[str]:
        def parse(status: int, raw: bytes) -> str:
            data = decode_json(raw, "detokenize")
            if not isinstance(data, dict) or not isinstance(data.get("content"), str):
                raise ResponseError(f"detokenize response has no content: {raw[:300]!r}")
            return str(data["content"])

        return Call(HTTPRequest("POST", self.native("/detokenize"), {"tokens": list(tokens)}), parse)

    def apply_template(self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] = ()) -> Call[str]:
        def parse(status: int, raw: bytes) -> str:
            data = decode_json(raw, "apply-template")
            if not isinstance(data, dict) or not isinstance(data.get("prompt"), str):
                raise ResponseError(f"apply-template response has no prompt: {raw[:300]!r}")
            return str(data["prompt"])

        body: dict[str, Any] = {"messages": [message_to_openai(m) for m in messages]}
        if tools:
            body["tools"] = [dict(t) for t in tools]
        return Call(HTTPRequest("POST", self.native("/apply-template"), body), parse)

    # -- server state -------------------------------------------------------------------------------------
    def props(self) -> Call[dict[str, Any]]:
        def parse(status: int, raw: bytes) -> dict[str, Any]:
            data = decode_json(raw, "props")
            if not isinstance(data, dict):
                raise ResponseError(f"props response is not an object: {raw[:300]!r}")
            return data

        return Call(HTTPRequest("GET", self.native("/props")), parse)

    def metrics(self) -> Call[dict[str, float]]:
        def parse(status: int, raw: bytes) -> dict[str, float]:
            from prometheus_client.parser import text_string_to_metric_families

            out: dict[str, float] = {}
            try:
                for family in text_string_to_metric_families(raw.decode("utf-8", "replace")):
                    for sample in family.samples:
                        out[sample.name] = float(sample.value)
            except ValueError as exc:
                raise ResponseError(f"metrics are not in Prometheus text format: {exc}") from exc
            return out

        return Call(HTTPRequest("GET", self.native("/metrics")), parse)

    def slots(self) -> Call[list[SlotInfo]]:
        def parse(status: int, raw: bytes) -> list[SlotInfo]:
            data = decode_json(raw, "slots")
            if not isinstance(data, list):
                raise ResponseError(f"slots response is not a list: {raw[:300]!r}")
            return [
                SlotInfo(int(s.get("id", i)), int(s.get("n_ctx", 0)), bool(s.get("is_processing")), s)
                for i, s in enumerate(data)
                if isinstance(s, dict)
            ]

        return Call(HTTPRequest("GET", self.native("/slots")), parse)

    def slot_action(self, slot_id: int, action: str, filename: str | None) -> Call[dict[str, Any]]:
        if filename is not None and ("/" in filename or "\\" in filename or filename in ("", ".", "..")):
            raise ConfigurationError(f"slot filename must be a plain file name, got {filename!r}")

        def parse(status: int, raw: bytes) -> dict[str, Any]:
            data = decode_json(raw, f"slot {action}")
            if not isinstance(data, dict):
                raise ResponseError(f"slot {action} response is not an object: {raw[:300]!r}")
            return data

        body = {"filename": filename} if filename is not None else {}
        url = self.native(f"/slots/{int(slot_id)}?action={action}")
        return Call(HTTPRequest("POST", url, body), parse)
