"""Ollama's model names on corral's routing: ``model:tag`` (``gemma`` is ``gemma:latest``) and the
404 Ollama clients recognise (``model "x" not found, try pulling it first``)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..wire_errors import WireError

if TYPE_CHECKING:
    from ..observe import RequestRecord
    from ..routing import Resolved
    from ..state import Gateway

__all__ = ["canonical_name", "is_managed", "not_found", "resolve"]

_LATEST = ":latest"


def _known(gw: Gateway, name: str) -> bool:
    return name in gw.config.routes or is_managed(gw, name)


def is_managed(gw: Gateway, name: str) -> bool:
    return gw.manager is not None and gw.manager.model_for(name) is not None


def canonical_name(gw: Gateway, asked: str) -> str:
    """The gateway's name for ``asked``: itself if known; ``gemma:latest`` → ``gemma`` (also when
    every name goes to the default provider); ``gemma`` → ``gemma:latest`` if only that is known."""
    if _known(gw, asked):
        return asked
    if asked.endswith(_LATEST):
        base = asked[: -len(_LATEST)]
        if base and (_known(gw, base) or (gw.config.default_route is not None and not gw.config.routes)):
            return base
    elif ":" not in asked.rsplit("/", 1)[-1] and _known(gw, asked + _LATEST):
        return asked + _LATEST
    return asked


def not_found(asked: str) -> WireError:
    shown = asked if len(asked) <= 200 else asked[:200] + "…"
    return WireError(404, f'model "{shown}" not found, try pulling it first', param="model")


async def resolve(gw: Gateway, asked: str, name: str, rec: RequestRecord) -> Resolved:
    """Where a model an Ollama client asked for goes (``name``: its :func:`canonical_name`); a
    managed model is started (or waited for) and held for the request, as on every route. The
    upstream is named by the gateway's name, not the client's spelling of it."""
    try:
        target = await gw.target(name, rec)
    except WireError as exc:
        if exc.status == 404 and exc.param == "model":
            raise not_found(asked) from None
        raise
    if name != asked and target.route.upstream is None:
        target = replace(target, route=replace(target.route, upstream=name))
    return target
