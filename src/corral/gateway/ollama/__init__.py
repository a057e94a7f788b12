"""Ollama's API on the gateway (Open WebUI, Continue, the ollama clients, editor plugins):
/api/chat, /api/generate, /api/embed, /api/embeddings, /api/tags, /api/ps, /api/show, /api/version.
To an ``ollama`` provider requests pass through as bytes; to every other provider corral translates."""

from __future__ import annotations

from starlette.routing import Route

from . import routes

__all__ = ["ROUTES"]

ROUTES = [
    Route("/api/chat", routes.chat, methods=["POST"]),
    Route("/api/generate", routes.generate, methods=["POST"]),
    Route("/api/embed", routes.embed, methods=["POST"]),
    Route("/api/embeddings", routes.embeddings, methods=["POST"]),
    Route("/api/tags", routes.tags, methods=["GET"]),
    Route("/api/ps", routes.ps, methods=["GET"]),
    Route("/api/show", routes.show, methods=["POST"]),
    Route("/api/version", routes.version, methods=["GET"]),
    *(
        Route(path, routes.unsupported, methods=["POST", "DELETE"])
        for path in ("/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete")
    ),
]
