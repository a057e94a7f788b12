"""What a provider can do, checked before any request is sent."""

from __future__ import annotations

from enum import StrEnum

from .errors import UnsupportedCapability

__all__ = ["Capability", "require"]


class Capability(StrEnum):
    CHAT = "chat"
    STREAM = "streaming"
    TOOLS = "tools"
    STRUCTURED_OUTPUT = "structured output"
    GRAMMAR = "GBNF grammar"
    EMBEDDINGS = "embeddings"
    COMPLETION = "text completion"
    MODELS = "model listing"
    HEALTH = "health checks"
    TOKENIZE = "tokenize/detokenize"
    TEMPLATES = "chat template rendering"
    PROPS = "server properties"
    SLOTS = "KV-cache slots"
    METRICS = "server metrics"
    VISION = "image input"
    IMAGES = "image generation"
    MANAGEMENT = "model management (running/unload)"
    RERANK = "reranking"
    INFILL = "code infill (FIM)"
    LOGPROBS = "token log probabilities"


def require(provider_name: str, available: frozenset[Capability], wanted: Capability) -> None:
    if wanted not in available:
        raise UnsupportedCapability(provider_name, str(wanted))
