"""The capabilities to report for a model: declared, confirmed by the server, and not failed by a
stored validation report (:func:`advertised` does the arithmetic)."""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING

from ..capabilities import Capability
from ..errors import UnsupportedCapability
from ..providers.base import UNSET
from .store import failed_capabilities, probe_endpoint

if TYPE_CHECKING:
    from ..client import Client
    from ..providers.base import Provider

__all__ = ["advertised", "model_capabilities"]


def advertised(provider: Provider, model: str | None = None) -> frozenset[Capability]:
    """What to *advertise* for ``model`` (model lists, MCP, …): the provider's declaration, minus
    what the server said it lacks (``provider.live``, filled by probes), minus what a stored
    ``corral validate`` report found failing: a model that failed the tool probe is not advertised
    as tool-capable. Advertising only: requests that ask for a capability are checked as before."""
    off = {cap for cap, ok in provider.live.items() if not ok}
    return provider.capabilities - off - failed_capabilities(probe_endpoint(provider), model or provider.config.model)


def model_capabilities(client: Client, model: str | None = None) -> dict[str, bool]:
    """``{"tools": True, "embeddings": False, …}`` for every corral capability. Asks the server (once
    per client) about those it can switch off, e.g. tools without a tool-aware chat template."""
    provider = client.provider
    for cap in sorted(provider.capabilities):
        if cap not in provider.live and provider.probe(cap) is not None:
            # the client's own check: runs the probe and caches the answer in provider.live
            with suppress(UnsupportedCapability):
                client._require(provider, [cap], UNSET)
    on = advertised(provider, model)
    return {cap.name.lower(): cap in on for cap in Capability}
