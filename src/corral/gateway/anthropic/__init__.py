"""Anthropic's Messages API on the gateway (so Claude Code runs on a local model through
ANTHROPIC_BASE_URL): /v1/messages and /v1/messages/count_tokens."""

from __future__ import annotations

from starlette.routing import Route

from . import routes

__all__ = ["ROUTES"]

ROUTES = [
    Route("/v1/messages", routes.messages, methods=["POST"]),
    Route("/v1/messages/count_tokens", routes.count_tokens, methods=["POST"]),
]
