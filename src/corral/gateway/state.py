"""The gateway's shared state: one AsyncClient per provider (all on one aiohttp transport), model
routing, API keys, request bodies, metrics, and errors in the caller's protocol."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from ..async_client import AsyncClient
from ..async_transport import RawJSON
from ..config import ProviderConfig, Secret, Settings
from ..errors import CorralError
from ..manager.scheduler import Scheduler
from ..stream import AsyncChatStream
from ..types import ChatResponse
from .aiohttp_transport import AiohttpTransport
from .observe import Observer, RequestRecord
from .settings import GatewaySettings, ModelRoute
from .wire_errors import WireError, anthropic_error, from_corral_error, openai_error

__all__ = ["Gateway", "Protocol", "Resolved", "error_response"]

log = logging.getLogger("corral.gateway")

Protocol = Literal["openai", "anthropic"]
T = TypeVar("T")

# Provider types whose wire is OpenAI's: requests in OpenAI shape pass through to them untouched.
OPENAI_SHAPED = frozenset({"llamacpp", "openai", "llama-swap", "embedded", "zero-setup"})
# Provider types that serve the Anthropic Messages API natively (llama-server has /v1/messages).
MESSAGES_NATIVE = frozenset({"llamacpp", "embedded", "zero-setup", "anthropic"})
# llama-server notices a vanished client only while it streams tokens (llama.cpp #24496): a
# non-streamed request to it is sent streamed and assembled here, so a disconnect still frees the slot.
STREAM_ONLY_CANCEL = frozenset({"llamacpp", "embedded", "zero-setup"})


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where one request goes."""

    client: AsyncClient
    route: ModelRoute
    types: frozenset[str]  # the provider types of the whole fallback chain

    def upstream_model(self, requested: str | None) -> str | None:
        return self.route.upstream if self.route.upstream is not None else requested


def error_response(protocol: Protocol, status: int, kind: str, message: str, param: str | None = None) -> Response:
    if protocol == "anthropic":
        body = anthropic_error(status, message, kind=kind)
    else:
        code = "model_not_found" if status == 404 and param == "model" else None
        body = openai_error(status, message, kind=kind, param=param, code=code)
    return Response(json.dumps(body), status, media_type="application/json")


class Gateway:
    def __init__(self, settings: Settings, gateway: GatewaySettings, manager: Scheduler | None = None) -> None:
        self.settings = settings
        self.config = gateway
        self.transport = AiohttpTransport()
        self.observer = Observer()
        self._clients: dict[str | None, AsyncClient] = {}
        self._managed: dict[str, tuple[str, AsyncClient]] = {}
        self._keys = [k.get().encode() for k in gateway.api_keys]
        self.manager = manager

    async def aclose(self) -> None:
        if self.manager is not None:
            await self.manager.aclose()
        clients = list(self._clients.values()) + [c for _, c in self._managed.values()]
        self._clients, self._managed = {}, {}
        for c in clients:
            await c.aclose()
        await self.transport.aclose()

    # -- routing ----------------------------------------------------------------------------------------------
    async def target(self, model: Any, rec: RequestRecord) -> Resolved:
        """resolve(), plus the model manager: a managed model is started (or waited for) here and
        held until the request finishes (``rec.on_finish``), so it is never swapped out mid-answer."""
        if self.manager is not None and isinstance(model, str) and self.manager.model_for(model) is not None:
            lease = await self.manager.acquire(model)
            rec.on_finish.append(lease.release)
            name = lease.process.spec.name
            return Resolved(self._managed_client(name, lease.url, lease.api_key), ModelRoute(name, None, None),
                            frozenset({"llamacpp"}))  # fmt: skip
        return self.resolve(model)

    def _managed_client(self, name: str, url: str, key: str) -> AsyncClient:
        cached = self._managed.get(name)
        if cached is not None and cached[0] == url:
            return cached[1]
        config = ProviderConfig(name, "llamacpp", url, Secret(key), None, 600.0, {"max_retries": 0})
        client = AsyncClient(name, config=Settings(name, {name: config}), transport=self.transport)
        self._managed[name] = (url, client)
        return client

    def client(self, provider: str | None) -> AsyncClient:
        if provider not in self._clients:
            self._clients[provider] = AsyncClient(provider, config=self.settings, transport=self.transport)
        return self._clients[provider]

    def resolve(self, model: Any) -> Resolved:
        if model is not None and not isinstance(model, str):
            raise WireError(400, "model must be a string", param="model")
        route = self.config.route(model)
        if route is None:
            raise WireError(404, f"model {model!r} is not served here (models: {self._known()})", param="model")
        client = self.client(route.provider)
        chain = [client.config.type]
        for name in client.routing.fallbacks.get(client.config.name, ()):
            chain.append(self.settings.provider(name).type)
        return Resolved(client, route, frozenset(chain))

    def _known(self, limit: int = 20, width: int = 400) -> str:
        """The names a caller may use, for an error message: configured routes, then managed models,
        at most ``limit`` names and about ``width`` characters."""
        names = sorted(self.config.routes)
        if self.manager is not None:
            names += sorted(n for n in self.manager.names if n not in self.config.routes)
        shown: list[str] = []
        size = 0
        for name in names[:limit]:
            size += len(name) + 2
            if shown and size > width:
                break
            shown.append(name)
        if not shown:
            return "none"
        more = len(names) - len(shown)
        return ", ".join(shown) + (f" and {more} more" if more else "")

    def model_names(self) -> list[str]:
        names = [name for route in self.config.models for name in (route.name, *route.aliases)]
        if self.manager is not None:
            names += [n for n in self.manager.names if n not in names]
        return names

    # -- requests ---------------------------------------------------------------------------------------------
    def authorized(self, request: Request) -> bool:
        if not self._keys:
            return True
        given = request.headers.get("x-api-key", "")
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        raw = given.encode()
        return any(hmac.compare_digest(raw, k) for k in self._keys)

    async def accept(self, request: Request, rec: RequestRecord, protocol: Protocol) -> tuple[dict[str, Any], bytes]:
        """What every model route does first: the key checked (401), the body read and checked as a
        JSON object, the requested model noted for the log (bad requests are logged with it too)."""
        if not self.authorized(request):
            how = (
                "x-api-key or Authorization: Bearer …"
                if protocol == "anthropic"
                else "Authorization: Bearer … or x-api-key"
            )
            raise WireError(401, f"missing or invalid API key ({how})")
        body, raw = await self.read_body(request)
        rec.model_from(body)
        return body, raw

    async def read_json(self, request: Request) -> dict[str, Any]:
        return (await self.read_body(request))[0]

    async def read_body(self, request: Request) -> tuple[dict[str, Any], bytes]:
        """The request's JSON object, and the bytes it came as."""
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise WireError(413, f"request body is {int(declared)} bytes; the limit is {limit}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise WireError(413, f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        raw = b"".join(chunks)
        if not raw.strip():
            raise WireError(400, "request body is empty; expected a JSON object")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise WireError(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise WireError(400, "request body must be a JSON object")
        return body, raw

    async def assembled(self, request: Request, stream: AsyncChatStream) -> ChatResponse | None:
        """A whole response read from a stream, abandoned (and the upstream closed) if the client leaves."""

        async def read() -> ChatResponse:
            async with stream:
                return await stream.final()

        return await self.until_disconnect(request, read())

    async def until_disconnect(self, request: Request, work: Awaitable[T]) -> T | None:
        """Run ``work`` unless the client goes away first; then cancel it, which closes the upstream
        connection so the backend stops (llama-server frees the slot). None when cancelled.

        ``work`` runs in the handler's own task; one watcher task waits for ``http.disconnect`` and
        cancels the handler task if it comes while ``work`` is running (cheaper than running ``work``
        in a task of its own and waiting for the first of two)."""
        handler = asyncio.current_task()
        assert handler is not None
        state = [True, False]  # [watching, client gone]

        def on_disconnect(watcher: asyncio.Future[None]) -> None:
            if watcher.cancelled():
                return
            watcher.exception()  # retrieved: a receive() that failed counts as the client gone too
            if state[0]:
                state[1] = True
                handler.cancel()

        watcher = asyncio.ensure_future(_disconnected(request))
        watcher.add_done_callback(on_disconnect)
        try:
            return await work
        except asyncio.CancelledError:
            if not state[1] or handler.uncancel() > 0:
                raise  # cancelled from elsewhere (server shutdown), not by the client leaving
            return None
        except CorralError:
            if not state[1]:
                raise
            handler.uncancel()
            return None
        finally:
            state[0] = False
            watcher.cancel()

    def failure(self, protocol: Protocol, exc: BaseException, rec: RequestRecord) -> Response:
        if isinstance(exc, WireError):
            rec.status = exc.status
            return error_response(protocol, exc.status, exc.kind, exc.message, exc.param)
        if isinstance(exc, CorralError):
            status, kind, message = from_corral_error(exc)
            rec.status = status
            return error_response(protocol, status, kind, message)
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


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


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


def header_items(headers: Mapping[str, str]) -> dict[str, str]:
    return {"x-accel-buffering": "no", "cache-control": "no-cache", **headers}
