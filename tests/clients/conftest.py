"""Real clients against `corral serve`: the gateway on the real llama.cpp server is the gateway tests' own."""

from __future__ import annotations

from ..gateway.conftest import live_gateway

__all__ = ["live_gateway"]
