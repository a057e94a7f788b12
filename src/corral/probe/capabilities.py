"""The capabilities to report for a model: declared, confirmed by the server, and not failed by a
stored validation report (corral.capabilities.advertised does the arithmetic)."""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING

from ..capabilities import Capability, advertised
from ..errors import UnsupportedCapability
from ..providers.base import UNSET

if TYPE_CHECKING:
    from ..client import Client

__all__ = ["model_capabilities"]


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
