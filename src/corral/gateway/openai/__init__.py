"""OpenAI's API on the gateway: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/rerank,
/v1/models. To an OpenAI-shaped backend (llama-server, OpenAI, vLLM, llama-swap) a request passes
through as bytes, only its model name rewritten; to others (Anthropic, Ollama) corral translates."""

from __future__ import annotations

from starlette.routing import Route

from . import routes

__all__ = ["ROUTES"]

ROUTES = [
    Route("/v1/chat/completions", routes.chat_completions, methods=["POST"]),
    Route("/v1/completions", routes.completions, methods=["POST"]),
    Route("/v1/embeddings", routes.embeddings, methods=["POST"]),
    Route("/v1/rerank", routes.rerank, methods=["POST"]),
    Route("/v1/models", routes.models, methods=["GET"]),
    Route("/v1/models/{model:path}", routes.model, methods=["GET"]),
]
