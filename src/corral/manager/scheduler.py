"""The one scheduler: which children run, who waits, who is swapped out.

Every decision happens under one asyncio.Condition, so it is never possible to start two children
for one model, or more than ``max_loaded`` in total (a stopping child still counts until reaped).
Requests that wait for a model being started are admitted together when it is ready, before any
other request may pick it as a swap victim: with two models and one slot, alternating clients are
served in batches instead of starving.

A request admitted to a child always finishes (or is cancelled by its client) before that child is
swapped out, as llama-swap does: a swap waits for its victim's in-flight requests, however long.
Requests that wait for a model wait in a bounded queue: past ``max_queue`` waiting requests a new one
gets 429, past ``queue_timeout`` a waiting one gets 503, both with Retry-After. Only an operator's
unload and a shutdown stop a child under its requests, after ``drain_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, ModelLoading, RateLimited, ServerUnreachable
from .process import ManagedProcess, State
from .pulling import Pulls
from .spec import ManagerSettings, ModelSpec, engine_argv

__all__ = ["Lease", "Scheduler"]

log = logging.getLogger("corral.manager")


@dataclass(slots=True)
class Lease:
    """A request's hold on a ready child; ``release()`` when the response is finished."""

    scheduler: Scheduler
    process: ManagedProcess
    released: bool = False

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def api_key(self) -> str:
        return self.process.api_key

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.process.inflight -= 1
            self.process.last_used = time.monotonic()
            self.scheduler.poke()


def slot_dir_name(model: str) -> str:
    """A model's slot-file folder: its name made safe for one path component, plus a digest so that
    two names never share one ("a/b" and "a_b"), and no name is ever joined to a path as it is."""
    import hashlib
    import re

    safe = re.sub(r"[^A-Za-z0-9._-]", "_", model).strip(".") or "model"
    return f"{safe[:64]}-{hashlib.sha256(model.encode()).hexdigest()[:8]}"


def _state(proc: ManagedProcess) -> State:
    return proc.state


class Scheduler:
    def __init__(self, settings: ManagerSettings, *, state_dir: Path) -> None:
        self.settings = settings
        self.names = settings.names()
        self.state_dir = state_dir
        self._cond = asyncio.Condition()
        self._procs: dict[str, ManagedProcess] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        self.waiting = 0  # requests in acquire() not yet admitted
        self.pulls = Pulls()  # hf:// models: downloaded on first request (ModelLoading meanwhile)

    # -- lookups ----------------------------------------------------------------------------------------------
    def model_for(self, name: str) -> str | None:
        return self.names.get(name)

    def processes(self) -> Iterator[ManagedProcess]:
        return iter(list(self._procs.values()))

    def _active(self) -> int:
        return sum(1 for p in self._procs.values() if p.state in (State.STARTING, State.READY, State.STOPPING))

    # -- the request path -------------------------------------------------------------------------------------
    async def acquire(self, name: str) -> Lease:
        # a routable name, or one child of a model with replicas (the gateway's balancer names it)
        model = self.model_for(name) if name not in self.settings.models else name
        if model is None:
            raise ConfigurationError(f"model {name!r} is not managed")
        children = self.settings.replica_groups.get(model)
        if children:  # a model with replicas asked for by name (load, an Ollama route): its first child
            model = children[0]
        spec = self.pulls.ready(self.settings.models[model])
        self._ensure_reaper()
        ready = self._procs.get(model)
        if ready is not None and ready.state is State.READY and not ready.draining and ready.alive():
            ready.inflight += 1  # the common case: no lock, no queue
            ready.last_used = time.monotonic()
            return Lease(self, ready)
        if self.waiting >= self.settings.max_queue:
            raise RateLimited(
                f"the model manager has {self.waiting} requests waiting for models (manager.max_queue); "
                "try again shortly", status=429, provider="manager", retry_after=self._retry_after(),
            )  # fmt: skip
        self.waiting += 1
        budget = self.settings.queue_timeout
        try:
            return await asyncio.wait_for(self._acquire(spec), budget)
        except TimeoutError:
            raise ModelLoading(
                f"model {model!r} was not ready within {budget:g} s (manager.queue_timeout): other models' "
                "requests hold the slots", status=503, provider="manager", retry_after=self._retry_after(),
            ) from None  # fmt: skip
        finally:
            self.waiting -= 1

    def _retry_after(self) -> float:
        """A client's fair wait: about one model start."""
        return max(1.0, min(30.0, self.settings.load_timeout / 4))

    async def _acquire(self, spec: ModelSpec) -> Lease:
        async with self._cond:
            while True:
                if self._closed:
                    raise ServerUnreachable("the model manager is shutting down")
                proc = self._procs.get(spec.name)
                if proc is not None and proc.state is State.READY and not proc.draining:
                    if proc.alive():
                        proc.inflight += 1
                        proc.last_used = time.monotonic()
                        return Lease(self, proc)
                    self._crashed(proc)
                    continue
                if proc is not None and proc.state is State.STARTING:
                    proc.waiters += 1
                    try:
                        await self._cond.wait_for(lambda p=proc: p.state is not State.STARTING)  # type: ignore[misc]
                    finally:
                        proc.waiters -= 1
                    outcome = _state(proc)  # changed by the start task while we waited
                    if outcome is State.READY:
                        # Admitted with the start: nobody could mark it draining while we waited.
                        proc.inflight += 1
                        proc.last_used = time.monotonic()
                        return Lease(self, proc)
                    if outcome is State.FAILED:
                        raise ServerUnreachable(f"model {spec.name!r} failed to start: {proc.error}")
                    continue
                if proc is not None and proc.state in (State.STOPPING, State.READY):
                    await self._cond.wait()  # being swapped out: wait, then start it again
                    continue
                blockers = self._blockers(spec.name)
                if blockers or self._active() >= self.settings.max_loaded:
                    victim = self._victim(blockers or None)
                    if victim is None:
                        await self._cond.wait()  # every slot is starting or has waiters: wait for a change
                        continue
                    victim.draining = True
                    self._spawn(self._drain_and_stop(victim, bound=None))
                    await self._cond.wait()
                    continue
                self._procs[spec.name] = proc = self._new_process(spec)
                proc.state = State.STARTING
                self._spawn(self._start(proc))

    def _blockers(self, model: str) -> list[ManagedProcess]:
        """Live children that may not run next to ``model`` (no group holds both)."""
        return [
            p
            for p in self._procs.values()
            if p.state in (State.STARTING, State.READY, State.STOPPING)
            and not self.settings.compatible(p.spec.name, model)
        ]

    def _victim(self, among: list[ManagedProcess] | None = None) -> ManagedProcess | None:
        """The least recently used ready child (of ``among``) that nobody is waiting to be admitted to."""
        pool = self._procs.values() if among is None else among
        ready = [p for p in pool if p.state is State.READY and not p.draining and p.waiters == 0]
        return min(ready, key=lambda p: p.last_used, default=None)

    def _new_process(self, spec: ModelSpec) -> ManagedProcess:
        engine, embedded = engine_argv(spec.engine or self.settings.engine)
        return ManagedProcess(
            spec,
            engine,
            embedded=embedded,
            slot_dir=self.state_dir / "slots" / slot_dir_name(spec.name),
            load_timeout=self.settings.load_timeout,
            stop_grace=self.settings.stop_grace,
        )

    # -- transitions (each runs as its own task, re-taking the lock to publish) ---------------------------------
    async def _start(self, proc: ManagedProcess) -> None:
        try:
            await proc.start()
        except Exception as exc:  # any start failure is reported to the waiting requests
            proc.error = str(exc)
            log.warning("model %s failed to start: %s", proc.spec.name, exc)
            await proc.stop()
            async with self._cond:
                proc.state = State.FAILED
                if self._procs.get(proc.spec.name) is proc:
                    del self._procs[proc.spec.name]  # the next request tries again
                self._cond.notify_all()
            return
        log.info("model %s ready at %s (pid %s)", proc.spec.name, proc.url, proc.pid)
        async with self._cond:
            proc.state = State.READY
            self._watch(proc)
            self._cond.notify_all()

    async def _drain_and_stop(self, proc: ManagedProcess, bound: float | None) -> None:
        """Wait for the child's admitted requests (at most ``bound`` seconds; None: until they end),
        then stop it."""
        async with self._cond:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._cond.wait_for(lambda: proc.inflight <= 0), bound)
            if proc.inflight > 0:
                log.warning("model %s stopped with %d requests still running", proc.spec.name, proc.inflight)
            proc.state = State.STOPPING
            self._cond.notify_all()
        await proc.stop()
        async with self._cond:
            proc.state = State.STOPPED
            if self._procs.get(proc.spec.name) is proc:
                del self._procs[proc.spec.name]
            self._cond.notify_all()
        log.info("model %s stopped", proc.spec.name)

    def _watch(self, proc: ManagedProcess) -> None:
        async def wait_exit() -> None:
            assert proc.proc is not None
            code = await proc.proc.wait()
            async with self._cond:
                if proc.state is State.READY:  # nobody asked it to stop: a crash
                    proc.error = f"exited with code {code}{proc.log_tail()}"
                    log.warning("model %s crashed: %s", proc.spec.name, proc.error)
                    self._crashed(proc)
                    self._cond.notify_all()

        self._spawn(wait_exit())

    def _crashed(self, proc: ManagedProcess) -> None:
        proc.state = State.FAILED
        proc.close_log()
        if self._procs.get(proc.spec.name) is proc:
            del self._procs[proc.spec.name]  # the next request restarts it

    # -- operator actions -----------------------------------------------------------------------------------
    async def unload(self, name: str | None = None) -> list[str]:
        """Stop one model (by name or alias) or all; waits for in-flight requests (bounded)."""
        if name is not None:
            model = self.model_for(name)
            if model is None:
                raise ConfigurationError(f"model {name!r} is not managed")
            names = set(self.settings.replica_groups.get(model, ())) | {model}  # a model with replicas: all of them
            targets = [p for p in self._procs.values() if p.spec.name in names]
        else:
            targets = list(self._procs.values())
        async with self._cond:
            chosen = [p for p in targets if p.state is State.READY and not p.draining]
            for p in chosen:
                p.draining = True
        await asyncio.gather(*(self._drain_and_stop(p, self.settings.drain_timeout) for p in chosen))
        return [p.spec.name for p in chosen]

    async def load(self, name: str) -> ManagedProcess:
        lease = await self.acquire(name)
        lease.release()
        return lease.process

    def running(self) -> list[dict[str, object]]:
        return [
            {"model": p.spec.name, "state": p.state.value, "pid": p.pid, "url": p.url, "ttl": p.spec.ttl,
             "inflight": p.inflight, "uptime": round(time.monotonic() - p.started_at, 1)}
            for p in self._procs.values()
            if p.state in (State.STARTING, State.READY, State.STOPPING)
        ]  # fmt: skip

    def state_of(self, model: str) -> str:
        proc = self._procs.get(model)
        return proc.state.value if proc else State.STOPPED.value

    # -- housekeeping -----------------------------------------------------------------------------------------
    def poke(self) -> None:
        """Wake waiters after a lease is released (called outside the event loop's lock)."""

        async def notify() -> None:
            async with self._cond:
                self._cond.notify_all()

        with contextlib.suppress(RuntimeError):  # no running loop: nothing waits
            self._spawn(notify())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.ensure_future(self._reap_idle())

    async def _reap_idle(self) -> None:
        while not self._closed:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            async with self._cond:
                idle = [p for p in self._procs.values() if self._expired(p, now)]
                for p in idle:
                    p.draining = True
            for p in idle:
                log.info("model %s idle for %.0f s: unloading", p.spec.name, now - p.last_used)
                self._spawn(self._drain_and_stop(p, bound=None))

    @staticmethod
    def _expired(p: ManagedProcess, now: float) -> bool:
        ttl = p.idle_ttl()
        return (
            ttl is not None and p.state is State.READY and not p.draining and p.inflight == 0 and p.waiters == 0
            and now - p.last_used >= ttl
        )  # fmt: skip

    def keep_alive(self, name: str, seconds: float | None) -> None:
        """A client's keep_alive for a model (Ollama's: idle seconds before unload, 0 = unload once
        idle, negative = keep loaded), kept by the running child until another request changes it.
        Call it when the request is over (after its lease is released): 0 then unloads at once."""
        model = self.model_for(name)
        proc = self._procs.get(model) if model is not None else None
        if proc is None or proc.state is not State.READY:
            return
        proc.keep_alive = seconds
        if self._expired(proc, time.monotonic()):
            proc.draining = True
            log.info("model %s: keep_alive %s, unloading", proc.spec.name, seconds)
            self._spawn(self._drain_and_stop(proc, bound=None))
        else:
            self._ensure_reaper()

    async def aclose(self) -> None:
        """Stop every child and wait for each to be reaped: no new request is admitted, in-flight ones
        get up to ``drain_timeout`` to finish (a graceful shutdown, bounded)."""
        self._closed = True
        self.pulls.cancel()
        if self._reaper is not None:
            self._reaper.cancel()
        async with self._cond:
            self._cond.notify_all()  # waiting requests learn of the shutdown
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._cond.wait_for(lambda: all(p.inflight <= 0 for p in self._procs.values())),
                    self.settings.drain_timeout,
                )
            procs = list(self._procs.values())
            for p in procs:
                if p.state in (State.READY, State.STARTING):
                    p.state = State.STOPPING  # asked to stop: its exit is no crash
        await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
