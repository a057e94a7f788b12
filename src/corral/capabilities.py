"""What a provider can do, checked before any request is sent."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from .errors import UnsupportedCapability

if TYPE_CHECKING:
    from .providers.base import Provider

__all__ = ["Capability", "advertised", "require"]


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


def require(provider_name: str, available: frozenset[Capability], wanted: Capability) -> None:
    if wanted not in available:
        raise UnsupportedCapability(provider_name, str(wanted))


def advertised(provider: Provider, model: str | None = None) -> frozenset[Capability]:
    """What to *advertise* for ``model`` (model lists, MCP, …): the provider's declaration, minus
    what the server said it lacks (``provider.live``, filled by probes), minus what a stored
    ``corral validate`` report found failing: a model that failed the tool probe is not advertised
    as tool-capable. Advertising only: requests that ask for a capability are checked as before."""
    from .probe.store import failed_capabilities, probe_endpoint  # lazy: the probe cache is read only here

    off = {cap for cap, ok in provider.live.items() if not ok}
    return provider.capabilities - off - failed_capabilities(probe_endpoint(provider), model or provider.config.model)
