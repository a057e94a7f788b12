"""OpenAI's Responses API on the gateway (what Codex CLI, the OpenAI Agents SDK and LangChain's
``use_responses_api`` speak): POST /v1/responses, passed through to OpenAI-shaped hosts that have the
route, translated onto every other provider's chat (see routes)."""

from __future__ import annotations

from starlette.routing import Route

from . import routes

__all__ = ["ROUTES"]

ROUTES = [
    Route("/v1/responses", routes.responses, methods=["POST"]),
    # Stored responses: corral keeps none, and says so (retrieve, delete, input_items, cancel).
    Route("/v1/responses/{id}", routes.stored, methods=["GET", "DELETE"]),
    Route("/v1/responses/{id}/input_items", routes.stored, methods=["GET"]),
    Route("/v1/responses/{id}/cancel", routes.stored, methods=["POST"]),
]
