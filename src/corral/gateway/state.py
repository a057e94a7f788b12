"""The gateway's shared state, one per app: the routing (providers, managed models), the API keys,
the observer (metrics, log, recent requests) and the one upstream transport; and what every route
does first (:meth:`Gateway.accept`) and last (:meth:`Gateway.failure`, :meth:`Gateway.finish`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from ..async_client import AsyncClient
from ..async_transport import RawJSON
from ..config import Settings
from ..errors import CorralError
from ..redaction import Redactor
from .aiohttp_transport import AiohttpTransport
from .auth import Keys
from .body import OFF_LOOP_BYTES, parse_json, read_body
from .limits import OutputLimits
from .observe import Observer, RequestRecord
from .routing import Resolved, Router
from .settings import GatewaySettings
from .wire_errors import WireError, WireProtocol, error_response, from_corral_error
from .wire_log import REQUEST_ID

if TYPE_CHECKING:
    from ..manager.scheduler import Scheduler

__all__ = ["Gateway", "forwarded", "now"]

log = logging.getLogger("corral.gateway")


class Gateway:
    def __init__(self, settings: Settings, gateway: GatewaySettings, manager: Scheduler | None = None) -> None:
        self.settings = settings
        self.config = gateway
        self.transport = AiohttpTransport()
        self.observer = Observer()
        self.keys = Keys(gateway.api_keys)
        self.router = Router(settings, gateway, self.transport, manager)
        if any(route.policy is not None for route in gateway.models) or manager is not None:
            from .replica_metrics import ReplicaCollector

            self.observer.registry.register(ReplicaCollector(self.router))
        self.manager = manager
        self.redact = Redactor.from_settings(settings, (k.get() for k in gateway.api_keys))
        self.limits = OutputLimits(gateway.max_output_tokens)

    async def aclose(self) -> None:
        if self.manager is not None:
            await self.manager.aclose()
        await self.router.aclose()
        await self.transport.aclose()

    # -- routing (see routing.Router) -------------------------------------------------------------------------
    async def target(self, model: Any, rec: RequestRecord, affinity: Sequence[Any] = ()) -> Resolved:
        return await self.router.target(model, rec, affinity)

    def resolve(self, model: Any) -> Resolved:
        return self.router.resolve(model)

    def client(self, provider: str | None) -> AsyncClient:
        return self.router.client(provider)

    def model_names(self) -> list[str]:
        return self.router.model_names()

    # -- requests ---------------------------------------------------------------------------------------------
    def authorized(self, request: Request) -> bool:
        return self.keys.authorized(request)

    async def accept(
        self, request: Request, rec: RequestRecord, protocol: WireProtocol
    ) -> tuple[dict[str, Any], bytes]:
        """What every model route does first: the key checked (401), the body read and checked as a
        JSON object, the requested model noted for the log (bad requests are logged with it too)."""
        rec.id = request.scope.get(REQUEST_ID, "")
        if not self.keys.authorized(request):
            how = "Authorization: Bearer … or x-api-key"
            if protocol == "anthropic":
                how = "x-api-key or Authorization: Bearer …"
            raise WireError(401, f"missing or invalid API key ({how})")
        body, raw = await self.read_body(request)
        rec.model_from(body)
        return body, raw

    async def read_json(self, request: Request) -> dict[str, Any]:
        return (await self.read_body(request))[0]

    async def read_body(self, request: Request) -> tuple[dict[str, Any], bytes]:
        """The request's JSON object, and the bytes it came as."""
        raw = await read_body(request, self.config.max_body_bytes)
        # Work per request is bounded before any parsing: every message has a "role" (bytes.count is
        # C-fast), and a quarter-million tiny messages would cost seconds and hundreds of MB to read.
        if len(raw) > 2 * self.config.max_messages and raw.count(b'"role"') > self.config.max_messages:
            raise WireError(413, f"request has more than {self.config.max_messages} messages ([gateway] max_messages)")
        if len(raw) > OFF_LOOP_BYTES:  # parsing megabytes would stall every other request meanwhile
            return await asyncio.to_thread(parse_json, raw), raw
        return parse_json(raw), raw

    def failure(self, protocol: WireProtocol, exc: BaseException, rec: RequestRecord) -> Response:
        if isinstance(exc, WireError):
            rec.status = exc.status
            return error_response(protocol, exc.status, exc.kind, exc.message, exc.param, exc.headers)
        if isinstance(exc, CorralError):
            status, kind, message = from_corral_error(exc, self.redact)
            rec.status = status
            return error_response(protocol, status, kind, message, headers=_retry_headers(exc))
        # Anything else is our bug: say so without a trace (it goes to the log, not to the caller).
        log.exception("internal error on %s", rec.route)
        rec.status = 500
        return error_response(protocol, 500, "api_error", "internal error in the corral gateway")

    def finish(self, rec: RequestRecord) -> None:
        for release in rec.on_finish:
            release()
        rec.on_finish.clear()
        rec.finished = time.perf_counter()
        # Metrics and the log line (a write to stderr) are taken on the next loop pass: by then the
        # handler has written its answer, so they cost the caller no latency, only the same CPU.
        try:
            asyncio.get_running_loop().call_soon(self.observer.done, rec)
        except RuntimeError:  # no loop (a generator closed at interpreter exit): do it now
            self.observer.done(rec)


def _retry_headers(exc: CorralError) -> dict[str, str] | None:
    """``Retry-After`` for an upstream that asked the caller to wait (429, 503 while loading)."""
    wait = getattr(exc, "retry_after", None)
    if isinstance(wait, (int, float)) and wait >= 0:
        return {"retry-after": str(max(1, round(wait)))}
    return None


def forwarded(body: dict[str, Any], raw: bytes, upstream_model: str | None) -> dict[str, Any] | RawJSON:
    """What a pass-through sends upstream: the body with the model renamed, or, when nothing changes,
    the client's own bytes (no re-encoding) if they are UTF-8 JSON starting with the object."""
    if upstream_model is None or body.get("model") == upstream_model:
        if raw[:1] == b"{" and raw[1:2] != b"\x00":  # not UTF-16/32, which json.loads also reads
            return RawJSON(raw)
        return body
    return {**body, "model": upstream_model}


def now() -> int:
    return int(time.time())
