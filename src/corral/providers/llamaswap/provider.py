"""llama-swap: the model-swapping proxy in front of llama-server (and stable-diffusion.cpp).

Chat, streaming, completions, embeddings and the model list are OpenAI routes under
``{root}/v1`` (openai_compat does them). Added here: llama-swap's own routes —
``GET /running``, ``POST /api/models/unload[/<model>]``, ``GET /health`` — image
generation, a placeholder bearer for keyless instances, and dropping the loading
progress llama-swap writes into ``reasoning_content`` while it swaps a model in.

No read timeout by default (config.py gives llama-swap ``timeout=None``): the first
request for an unloaded model waits while llama-swap starts it, bounded by a per-call
deadline (600 s; the ``deadline`` option or DSN parameter changes it).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from ...capabilities import Capability
from ...config import ProviderConfig
from ...errors import ConfigurationError, ResponseError, parse_error_message
from ...types import GeneratedImage, Health, RunningModel
from ..base import Call, ChatRequest, HTTPRequest, decode_json
from ..openai_compat import OpenAICompatProvider
from .stream import LoadingStateFilter

__all__ = ["NO_KEY", "LlamaSwapProvider"]

#: bearer sent when no token is configured: a keyless llama-swap ignores it, and clients (and
#: proxies) that insist on an Authorization header are satisfied (seed 003 uses the same value)
NO_KEY = "no-key"


def _strip_v1(url: str) -> str:
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


class LlamaSwapProvider(OpenAICompatProvider):
    type_name = "llama-swap"
    server_label = "llama-swap"
    # No per-read timeout (a cold swap loads a model first), but a call is not left waiting forever.
    default_deadline = 600.0
    capabilities = OpenAICompatProvider.capabilities | {Capability.MANAGEMENT, Capability.IMAGES}

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.base_url = _strip_v1(self.base_url)  # the llama-swap root; "/v1" pasted by habit is dropped
        self.v1_base = self.base_url + "/v1"

    def native(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def headers(self) -> dict[str, str]:
        key = self.config.api_key
        return {"Authorization": f"Bearer {key.get() if key else NO_KEY}"}

    def unreachable_message(self) -> str:
        return f"llama-swap not running at {self.endpoint}"

    # chat_body is openai_compat's: it sends the legacy "max_tokens", which llama-server honours.
    def new_assembler(self, req: ChatRequest) -> LoadingStateFilter:
        fmt = req.response_format if req.parse_output else None
        return LoadingStateFilter(self.name, response_format=fmt, output_type=req.output_type, tools=req.tools)

    # -- llama-swap's own routes ------------------------------------------------------------------------
    def health(self) -> Call[Health]:
        def parse(status: int, raw: bytes) -> Health:
            if status == 200:
                return Health("ok", self.name, self.endpoint)
            message, _ = parse_error_message(raw)
            return Health("error", self.name, self.endpoint, f"HTTP {status}: {message}")

        return Call(HTTPRequest("GET", self.native("/health")), parse, parse_errors=True)

    def running(self) -> Call[list[RunningModel]]:
        def parse(status: int, raw: bytes) -> list[RunningModel]:
            data = decode_json(raw, "running")
            items = data.get("running") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise ResponseError(f"llama-swap /running response has no running list: {raw[:300]!r}")
            return [
                RunningModel(str(m.get("model", "")), str(m.get("state", "")), m) for m in items if isinstance(m, dict)
            ]

        return Call(HTTPRequest("GET", self.native("/running")), parse)

    def unload(self, model: str | None) -> Call[None]:
        """All models: ``POST /api/models/unload``; one: ``POST /api/models/unload/<model>``. The
        route's wildcard takes slashes ("org/model"), so they stay; everything else is quoted."""
        if model is None:
            path = "/api/models/unload"
        elif not model.strip("/"):
            raise ConfigurationError(f"unload: model must be a model id, got {model!r}")
        else:
            path = "/api/models/unload/" + quote(model.strip("/"), safe="/")

        def parse(status: int, raw: bytes) -> None:
            return None  # {"msg":"ok"} for all, "OK" text for one: nothing to report

        return Call(HTTPRequest("POST", self.native(path)), parse)

    # -- image generation (stable-diffusion.cpp behind llama-swap) ----------------------------------------
    def images(self, prompt: str, params: dict[str, Any]) -> Call[list[GeneratedImage]]:
        body: dict[str, Any] = {"prompt": prompt, "n": 1, "response_format": "b64_json"}
        body.update({k: v for k, v in params.items() if v is not None})
        if not body.get("model"):
            if not self.config.model:
                raise ConfigurationError(
                    "llama-swap image generation needs a model: pass model=... (it picks the server)"
                )
            body["model"] = self.config.model

        def parse(status: int, raw: bytes) -> list[GeneratedImage]:
            data = decode_json(raw, "images")
            items = data.get("data") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise ResponseError(f"image response has no data list: {raw[:300]!r}")
            out = []
            for item in items:
                if not isinstance(item, dict) or not (item.get("b64_json") or item.get("url")):
                    raise ResponseError(f"image entry has neither b64_json nor url: {str(item)[:200]!r}")
                revised = item.get("revised_prompt")
                out.append(
                    GeneratedImage(item.get("b64_json"), item.get("url"), revised if isinstance(revised, str) else None)
                )
            return out

        return Call(HTTPRequest("POST", self.url("/images/generations"), body, model_route=True), parse)
