"""Router mode for the embedded engine: llama-server's ``--models-dir`` / ``--models-max`` API.

llama.cpp's own router is compiled out of the xllamacpp wheel ("params.model.path is required:
xllamacpp disabled the router server feature"), so ``python -m corral.manager.engine_child
--models-dir DIR`` runs this one instead. It speaks the same API as llama-server in router mode
(tools/server/README.md, "Using multiple models"), so a client cannot tell them apart:

- ``GET /models`` (and ``/v1/models``): every model of the folder with ``status.value`` one of
  ``unloaded``, ``loading``, ``loaded`` (``failed: true`` and ``exit_code`` after a failed load);
- ``POST /models/load`` / ``POST /models/unload`` with ``{"model": id}``: ``{"success": true}``;
- any other POST is routed by its body's ``model``, a GET by its ``?model=`` query; an unloaded
  model is loaded first unless ``--no-models-autoload`` (or ``?autoload=false``).

Model ids are as llama.cpp makes them from a models folder: a GGUF's file name without
``.gguf``, or a sub-folder's name for a model of several files (split parts, an ``mmproj*``).
Each loaded model is one embedded-engine child (as llama.cpp starts one llama-server per model),
given the router's other flags plus its ``--alias``; past ``--models-max`` the least recently used
idle model is unloaded. The router checks the API key; its children get keys of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .engine import EngineProcess

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["RouterModel", "discover", "serve_router"]

_SPLIT = re.compile(r"-\d{5}-of-(\d{5})\.gguf$", re.I)
# Flags the router keeps for itself; every other flag is passed on to each model's engine.
_ROUTER_ONLY = {
    "--models-dir": 1,
    "--models-max": 1,
    "--models-autoload": 0,
    "--no-models-autoload": 0,
    "--host": 1,
    "--port": 1,
    "--api-key": 1,
    "--api-key-file": 1,
    "-m": 1,
    "--model": 1,
    "-a": 1,
    "--alias": 1,
}
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "authorization"}


@dataclass
class RouterModel:
    id: str
    path: Path
    mmproj: Path | None = None
    status: str = "unloaded"  # unloaded | loading | loaded
    engine: EngineProcess | None = None
    failed: bool = False
    exit_code: int | None = None
    error: str = ""
    inflight: int = 0
    last_used: float = 0.0
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def entry(self, args: list[str]) -> dict[str, Any]:
        status: dict[str, Any] = {"value": self.status}
        if self.status != "unloaded" or self.failed:
            status["args"] = args
        if self.failed:
            status.update(failed=True, exit_code=self.exit_code if self.exit_code is not None else 1)
        return {
            "id": self.id,
            "object": "model",
            "owned_by": "llamacpp",
            "created": 0,
            "path": str(self.path),
            "status": status,
        }


def discover(folder: Path) -> dict[str, RouterModel]:
    """The models of a ``--models-dir``, named as llama.cpp names them."""
    out: dict[str, RouterModel] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.name.lower().endswith(".gguf") and "mmproj" not in entry.name.lower():
            m = _SPLIT.search(entry.name)
            if m and not entry.name.lower().endswith(f"-00001-of-{m[1]}.gguf"):
                continue
            out[entry.name[: -len(".gguf")]] = RouterModel(entry.name[: -len(".gguf")], entry)
        elif entry.is_dir():
            ggufs = sorted(p for p in entry.iterdir() if p.name.lower().endswith(".gguf"))
            models = [p for p in ggufs if "mmproj" not in p.name.lower()]
            firsts = [p for p in models if not _SPLIT.search(p.name) or "-00001-of-" in p.name]
            if firsts:
                proj = next((p for p in ggufs if "mmproj" in p.name.lower()), None)
                out[entry.name] = RouterModel(entry.name, firsts[0], proj)
    return out


def _child_args(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        name = argv[i].split("=", 1)[0]
        if name in _ROUTER_ONLY:
            i += 1 + (_ROUTER_ONLY[name] if "=" not in argv[i] else 0)
            continue
        out.append(argv[i])
        i += 1
    return out


class Router:
    def __init__(
        self, models: dict[str, RouterModel], child_args: list[str], models_max: int, autoload: bool, api_key: str
    ) -> None:
        self.models = models
        self.child_args = child_args
        self.models_max = models_max
        self.autoload = autoload
        self.api_key = api_key
        self.lock = asyncio.Lock()
        self.http: Any = None
        self.tasks: set[asyncio.Task[None]] = set()

    def background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def args_of(self, m: RouterModel) -> list[str]:
        extra = ["--mmproj", str(m.mmproj)] if m.mmproj and "--mmproj" not in self.child_args else []
        return ["llama-server", *self.child_args, *extra, "--alias", m.id]

    # -- lifecycle -----------------------------------------------------------------------------------------
    async def load(self, m: RouterModel) -> None:
        async with self.lock:
            if m.status != "unloaded":
                return
            await self._make_room(m)
            m.status, m.failed, m.error = "loading", False, ""
            m.ready = asyncio.Event()
        engine = EngineProcess(m.path, self.args_of(m)[1:], start_timeout=600)
        try:
            await asyncio.to_thread(engine.start)
        except Exception as exc:  # a failed start is a status, as in llama.cpp's router
            code = engine.proc.returncode if engine.proc is not None else None
            m.status, m.failed, m.exit_code, m.error = "unloaded", True, code, str(exc)
        else:
            m.engine, m.status, m.last_used = engine, "loaded", time.monotonic()
        m.ready.set()

    async def _make_room(self, wanted: RouterModel) -> None:
        busy = [m for m in self.models.values() if m.status in ("loading", "loaded") and m is not wanted]
        while self.models_max and len(busy) >= self.models_max:
            idle = [m for m in busy if m.status == "loaded" and m.inflight == 0]
            if not idle:
                break  # everything is busy: go over the limit rather than fail the request
            victim = min(idle, key=lambda m: m.last_used)
            await self._stop(victim)
            busy.remove(victim)

    async def unload(self, m: RouterModel) -> None:
        async with self.lock:
            await self._stop(m)

    async def _stop(self, m: RouterModel) -> None:
        engine, m.engine = m.engine, None
        m.status = "unloaded"
        if engine is not None:
            await asyncio.to_thread(engine.stop)

    async def stop_all(self) -> None:
        await asyncio.gather(*(self._stop(m) for m in self.models.values() if m.engine is not None))


def _error(status: int, message: str, kind: str) -> web.Response:
    from aiohttp import web

    return web.json_response({"error": {"code": status, "message": message, "type": kind}}, status=status)


def _app(router: Router) -> Any:
    from aiohttp import ClientSession, ClientTimeout, web

    @web.middleware
    async def auth(request: web.Request, handler: Callable[[web.Request], Any]) -> Any:
        wrong = request.headers.get("Authorization", "") != f"Bearer {router.api_key}"
        if router.api_key and request.path != "/health" and wrong:
            return _error(401, "Invalid API Key", "authentication_error")
        return await handler(request)

    async def health(request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def models(request: web.Request) -> web.StreamResponse:
        data = [m.entry(router.args_of(m)) for m in router.models.values()]
        return web.json_response({"object": "list", "data": data})

    async def model_of(request: web.Request) -> RouterModel | web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the request body must be a JSON object", "invalid_request_error")
        name = body.get("model") if isinstance(body, dict) else None
        if not isinstance(name, str) or name not in router.models:
            return _error(404, f"model {name!r} not found", "not_found_error")
        return router.models[name]

    async def load(request: web.Request) -> web.StreamResponse:
        m = await model_of(request)
        if not isinstance(m, RouterModel):
            return m
        if m.status == "loaded":
            return _error(400, "model is already loaded", "invalid_request_error")
        router.background(router.load(m))  # loads in the background: /models shows "loading"
        return web.json_response({"success": True})

    async def unload(request: web.Request) -> web.StreamResponse:
        m = await model_of(request)
        if not isinstance(m, RouterModel):
            return m
        if m.status == "unloaded":
            return _error(400, "model is not loaded", "invalid_request_error")
        await router.unload(m)
        return web.json_response({"success": True})

    async def proxy(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.method == "GET":
            name = request.query.get("model")
        else:
            try:
                payload = json.loads(body) if body.strip() else {}
            except ValueError:
                return _error(400, "the request body must be JSON", "invalid_request_error")
            name = payload.get("model") if isinstance(payload, dict) else None
        if not name:
            return _error(400, "model name is missing from the request", "invalid_request_error")
        m = router.models.get(name)
        if m is None:
            return _error(404, f"model {name!r} not found", "not_found_error")
        autoload = request.query.get("autoload", "true" if router.autoload else "false").lower() != "false"
        if m.status == "unloaded":
            if not autoload:
                return _error(400, f"model {name!r} is not loaded", "invalid_request_error")
            await router.load(m)
        elif m.status == "loading":
            await m.ready.wait()
        if m.engine is None or not m.engine.url:
            return _error(503, f"model {name!r} failed to load: {m.error or 'unknown error'}", "unavailable_error")
        engine = m.engine
        m.inflight += 1
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
            headers["Authorization"] = f"Bearer {engine.api_key}"
            query = [(k, v) for k, v in request.query.items() if k not in ("model", "autoload")]
            async with router.http.request(
                request.method, f"{engine.url}{request.path}", params=query, data=body or None, headers=headers
            ) as upstream:
                out = web.StreamResponse(status=upstream.status)
                for k, v in upstream.headers.items():
                    if k.lower() not in _HOP_HEADERS:
                        out.headers[k] = v
                await out.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await out.write(chunk)
                await out.write_eof()
                return out
        finally:
            m.inflight -= 1
            m.last_used = time.monotonic()

    async def on_startup(app: web.Application) -> None:
        router.http = ClientSession(timeout=ClientTimeout(total=None, sock_connect=10))

    async def on_cleanup(app: web.Application) -> None:
        await router.http.close()
        await router.stop_all()

    app = web.Application(middlewares=[auth], client_max_size=64 * 2**20)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/health", health)
    app.router.add_get("/models", models)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/models/load", load)
    app.router.add_post("/models/unload", unload)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


def serve_router(
    parsed: Any,
    argv: Sequence[str],
    *,
    host: str,
    port: int,
    api_key: str,
    report: Callable[[dict[str, Any]], None],
    note: Callable[[str], None],
) -> int:
    """Run the router until stdin closes or SIGTERM; every model child is stopped on the way out."""
    try:
        from aiohttp import web
    except ImportError:
        report({"error": "router mode of the embedded engine needs aiohttp: pip install 'corral[server]'"})
        return 2
    folder = Path(str(parsed.extra["models_dir"])).expanduser()
    if not folder.is_dir():
        report({"error": f"--models-dir {folder}: not a folder"})
        return 2
    models = discover(folder)
    key = api_key or _key_from_flags(parsed)
    router = Router(
        models,
        _child_args(argv),
        int(parsed.extra.get("models_max", 4)),
        not parsed.extra.get("no_models_autoload", False),
        key,
    )
    note(f"router mode: {len(models)} model(s) in {folder}: {', '.join(models) or 'none'}")

    async def main() -> None:
        runner = web.AppRunner(_app(router), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        report({"url": f"http://{host}:{bound[1]}", "pid": os.getpid(), "router": True})
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        threading.Thread(target=_watch_stdin, args=(loop, stop), daemon=True).start()
        import signal

        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()  # stops every model's engine

    asyncio.run(main())
    return 0


def _key_from_flags(parsed: Any) -> str:
    for flag, _, value in reversed(parsed.settings):
        if flag.name == "--api-key":
            return str(value).split(",")[0].strip()
        if flag.name == "--api-key-file":
            lines = Path(str(value)).read_text().splitlines()
            return next((ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")), "")
    return ""


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    with contextlib.suppress(OSError, ValueError):
        while sys.stdin.buffer.read(4096):
            pass
    with contextlib.suppress(RuntimeError):  # the loop may be closed already
        loop.call_soon_threadsafe(stop.set)
