"""The six tools. Each method's signature is its MCP input schema (the SDK reads the annotations),
its return type the output schema. Failures become MCP tool errors (``isError`` results) carrying
corral's one-line message: never a traceback, never a key."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Annotated, Any, Literal, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from .. import __version__
from ..async_client import AsyncClient
from ..capabilities import Capability
from ..config import find_provider, public_url
from ..errors import CorralError
from ..events import ContentDelta
from ..probe.capabilities import advertised
from ..providers.base import Provider
from ..redaction import Redactor
from .pool import ArgumentError, ClientPool
from .schemas import (
    BenchOut,
    ChatMessage,
    ChatResult,
    LlamaCppInfo,
    ModelEntry,
    ModelsResult,
    ProviderHealth,
    ProviderStatus,
    ReplicaState,
    ReplicatedModel,
    StreamResult,
    SystemInfo,
    ValidationOut,
)
from .system import cpu_info, gpu_info, memory_info

__all__ = ["CorralTools"]

T = TypeVar("T")
ProgressFn = Callable[[int, int, str], None]

# Bounds for the status tools: a provider that is down must not stall the whole answer.
STATUS_TIMEOUT = 10.0
# Streamed text is coalesced into at most one progress notification per interval.
PROGRESS_INTERVAL = 0.1

Messages = Annotated[
    list[ChatMessage] | None,
    Field(description="The conversation in OpenAI chat format. Give this or prompt, not both."),
]
Prompt = Annotated[str | None, Field(description="A single user message. Give this or messages, not both.")]
ModelArg = Annotated[str | None, Field(description="Model to ask for; the provider's default when omitted.")]
ProviderArg = Annotated[
    str | None,
    Field(description="A provider name from corral's config (see list_available_models); the default when omitted."),
]
ModelName = Annotated[str, Field(min_length=1, description="The model, as list_available_models names it.")]
MaxTokens = Annotated[int | None, Field(ge=1, description="Upper bound on generated tokens.")]
Temperature = Annotated[float | None, Field(ge=0, le=2, description="Sampling temperature, 0 to 2.")]
ResponseFormat = Annotated[
    dict[str, Any] | None,
    Field(
        description='Structured output: {"type": "json_object"}, or {"type": "json_schema", "json_schema": '
        '{"name": ..., "schema": {...}}}. The decoded JSON is returned in `parsed`.'
    ),
]


def _conversation(messages: list[ChatMessage] | None, prompt: str | None) -> list[dict[str, Any]] | str:
    if messages is not None and prompt is not None:
        raise ArgumentError("messages", "give either messages or prompt, not both")
    if messages is not None:
        return [m.model_dump(exclude_none=True) for m in messages]
    if prompt is not None:
        return prompt
    raise ArgumentError("messages", "one of messages or prompt is required")


class CorralTools:
    def __init__(self, pool: ClientPool, redact: Redactor) -> None:
        self.pool = pool
        self.redact = redact

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """corral's errors and bad arguments as tool errors, their text redacted."""
        try:
            yield
        except ArgumentError as exc:
            raise ToolError(self.redact(str(exc))) from None
        except CorralError as exc:
            raise ToolError(self.redact(str(exc) or type(exc).__name__)) from None

    # -- chat ----------------------------------------------------------------------------------------------
    async def chat_completion(
        self,
        messages: Messages = None,
        prompt: Prompt = None,
        model: ModelArg = None,
        provider: ProviderArg = None,
        max_tokens: MaxTokens = None,
        temperature: Temperature = None,
        response_format: ResponseFormat = None,
    ) -> ChatResult:
        """One chat completion from a local llama.cpp model or a configured cloud provider."""
        with self._errors():
            conversation = _conversation(messages, prompt)
            client = self.pool.client(self.pool.resolve(provider))
            reply = await client.chat(
                conversation,
                model=model,
                max_tokens=max_tokens,
                temperature=temperature,
                response_format=response_format,
            )
            return ChatResult.of(reply)

    async def stream_chat(
        self,
        ctx: Context[Any, Any],
        messages: Messages = None,
        prompt: Prompt = None,
        model: ModelArg = None,
        provider: ProviderArg = None,
        max_tokens: MaxTokens = None,
        temperature: Temperature = None,
        response_format: ResponseFormat = None,
    ) -> StreamResult:
        """A streamed chat completion: the text so far arrives in progress notifications (their
        `message`; `progress` counts the deltas received) when the call carries a progressToken.
        The result is the whole reply, as chat_completion returns it."""
        with self._errors():
            conversation = _conversation(messages, prompt)
            client = self.pool.client(self.pool.resolve(provider))
            text = ""
            deltas = 0
            reported = -1  # the delta count last reported; MCP wants progress to increase
            sent = 0
            last = 0.0
            async with client.stream(
                conversation,
                model=model,
                max_tokens=max_tokens,
                temperature=temperature,
                response_format=response_format,
            ) as stream:
                async for event in stream:
                    if not isinstance(event, ContentDelta) or not event.text:
                        continue
                    text += event.text
                    deltas += 1
                    now = time.monotonic()
                    if now - last >= PROGRESS_INTERVAL:
                        # The text so far rather than the delta: a client can show it as is,
                        # and coalescing loses nothing.
                        await ctx.report_progress(deltas, None, text)
                        reported, sent, last = deltas, sent + 1, now
                reply = await stream.final()
            if deltas != reported:  # the tail, or the one notification an empty reply still gets
                await ctx.report_progress(deltas, None, text)
                sent += 1
            return StreamResult(**ChatResult.of(reply).model_dump(), progress_notifications=sent)

    # -- models --------------------------------------------------------------------------------------------
    async def list_available_models(self, provider: ProviderArg = None) -> ModelsResult:
        """Models across the configured providers, with whether each is loaded and what corral can
        do with it. A provider that is down is listed with its error."""
        with self._errors():
            names = [self.pool.resolve(provider)] if provider else list(self.pool.names)
        found: dict[str, tuple[ProviderStatus, list[ModelEntry]]] = {}

        async def one(name: str) -> None:
            found[name] = await self._models_of(name)

        async with anyio.create_task_group() as tg:
            for name in names:
                tg.start_soon(one, name)
        return ModelsResult(
            models=[m for n in names for m in found[n][1]],
            providers=[found[n][0] for n in names],
        )

    async def _models_of(self, name: str) -> tuple[ProviderStatus, list[ModelEntry]]:
        status = ProviderStatus(name=name, type=self.pool.type_of(name), default=name == self.pool.default, ok=True)
        try:
            client = self.pool.client(name)
            provider = await client.get_provider()
            models = await client.models(timeout=STATUS_TIMEOUT)
            loaded: set[str] | None = None
            loading: set[str] = set()
            if Capability.MANAGEMENT in provider.capabilities:
                running = await client.running(timeout=STATUS_TIMEOUT)
                # the lifecycle's "loading" (llama-swap "starting", router "loading"/"downloading")
                loading = {r.model for r in running if r.state in ("starting", "loading", "downloading")}
                loaded = {r.model for r in running} - loading
            await self._confirm_capabilities(client, provider)
        except CorralError as exc:
            status.ok, status.error = False, self.redact(str(exc))
            return status, []
        entries = []
        for m in models:
            state: Literal["loaded", "loading", "unloaded", "available"]
            if loaded is not None:
                state = "loaded" if m.id in loaded else "loading" if m.id in loading else "unloaded"
            elif Capability.PROPS in provider.capabilities:
                state = "loaded"  # a plain llama-server serves the one model it has loaded
            else:
                state = "available"
            entries.append(
                ModelEntry(
                    id=m.id,
                    provider=m.provider or name,
                    state=state,
                    # what corral advertises: declared, confirmed, and not failed by a stored validation
                    capabilities=sorted(c.name.lower() for c in advertised(provider, m.id)),
                    context_length=m.context_length,
                    owned_by=m.owned_by,
                )
            )
        return status, entries

    @staticmethod
    async def _confirm_capabilities(client: AsyncClient, provider: Provider) -> None:
        """Ask the server about the capabilities it can switch off (llama.cpp without --embeddings,
        a template that cannot render tools): corral's own pre-request check, cached on the provider."""
        for cap in Capability:
            if cap in provider.capabilities and cap not in provider.live and provider.probe(cap) is not None:
                # UnsupportedCapability is recorded in provider.live; any other failure keeps the declaration
                with suppress(CorralError):
                    await client._require(provider, [cap], STATUS_TIMEOUT)

    # -- system --------------------------------------------------------------------------------------------
    async def get_system_info(self) -> SystemInfo:
        """This machine (CPU, RAM, GPUs), corral's version, and each configured provider's health,
        with llama.cpp's build and system info from the server."""
        import platform

        health: dict[str, ProviderHealth] = {}

        async def one(name: str) -> None:
            health[name] = await self._health_of(name)

        replicated: dict[str, ReplicatedModel] = {}

        async def replicas(model: str) -> None:
            replicated[model] = await self._replicas_of(model)

        async with anyio.create_task_group() as tg:
            for name in self.pool.names:
                tg.start_soon(one, name)
            for model in self._replicated_names():
                tg.start_soon(replicas, model)
            cpu = await anyio.to_thread.run_sync(cpu_info)
            memory = await anyio.to_thread.run_sync(memory_info)
            gpus = await anyio.to_thread.run_sync(gpu_info)
        return SystemInfo(
            replicated_models=[replicated[m] for m in sorted(replicated)],
            corral_version=__version__,
            python=platform.python_version(),
            platform=platform.platform(),
            cpu=cpu,
            memory=memory,
            gpus=gpus,
            providers=[health[n] for n in self.pool.names],
        )

    def _replicated_names(self) -> list[str]:
        models = self.pool.settings.raw.get("models")
        if not isinstance(models, dict):
            return []
        return [
            str(n) for n, spec in models.items() if isinstance(spec, dict) and isinstance(spec.get("provider"), list)
        ]

    async def _replicas_of(self, model: str) -> ReplicatedModel:
        """Each replica's health and load now (llama-server's /slots, else its health check)."""
        client = AsyncClient(model, config=self.pool.settings)
        try:
            state = await client.poll_replicas(timeout=STATUS_TIMEOUT)
        finally:
            await client.aclose()
        balance = client.policy.balance if client.policy is not None else "cache-aware"
        return ReplicatedModel(
            model=model, balance=balance, replicas=[ReplicaState(name=n, **r) for n, r in state.items()]
        )

    async def _health_of(self, name: str) -> ProviderHealth:
        config = find_provider(self.pool.settings, name)
        out = ProviderHealth(
            name=name,
            type=self.pool.type_of(name),
            default=name == self.pool.default,
            base_url=public_url(config.base_url if config else None),
            model=config.model if config else None,
            status="error",
        )
        try:
            client = self.pool.client(name)
            provider = await client.get_provider()
            out.base_url = provider.endpoint or out.base_url
            health = await client.health(timeout=STATUS_TIMEOUT)
            out.status, out.detail = health.status, self.redact(health.detail)
        except CorralError as exc:
            out.detail = self.redact(str(exc))
            return out
        if Capability.PROPS in provider.capabilities and out.status == "ok":
            try:
                out.llama_cpp = _llama_info(await client.props(timeout=STATUS_TIMEOUT))
            except CorralError as exc:
                out.detail = self.redact(f"props: {exc}")
        return out

    # -- probes (synchronous: run in a worker thread) -------------------------------------------------------
    async def benchmark_model(
        self,
        ctx: Context[Any, Any],
        model: ModelName,
        provider: ProviderArg = None,
        prompt_tokens: Annotated[int, Field(ge=1, le=32768, description="Prompt length per run, in tokens.")] = 128,
        max_tokens: Annotated[int, Field(ge=1, le=4096, description="Tokens generated per run.")] = 64,
        runs: Annotated[int, Field(ge=1, le=20, description="Measured runs; the figures are their medians.")] = 3,
    ) -> BenchOut:
        """Measure a model: prompt and generation tokens/s and time to first token (llama.cpp's own
        timings when the server sends them). Progress notifications report each run."""
        from ..probe import benchmark

        with self._errors():
            name = self.pool.resolve(provider)

            def job(progress: ProgressFn) -> dict[str, Any]:
                client = self.pool.sync_client(name)
                result = benchmark(
                    client, model, prompt_tokens=prompt_tokens, max_tokens=max_tokens, runs=runs, progress=progress
                )
                return result.as_dict()

            # The report's endpoint is Provider.endpoint, which never holds credentials.
            return BenchOut.model_validate(await self._in_thread(ctx, job))

    async def validate_model(
        self, ctx: Context[Any, Any], model: ModelName, provider: ProviderArg = None
    ) -> ValidationOut:
        """Check what a model really does on its server: chat, stream, json_schema, tool_call,
        reasoning, embeddings (and the GGUF file's integrity when the model is a local file). Each
        probe passes only on evidence; failed ones stop being advertised by list_available_models."""
        from ..probe import validate

        with self._errors():
            name = self.pool.resolve(provider)

            def job(progress: ProgressFn) -> dict[str, Any]:
                client = self.pool.sync_client(name)
                # A tool call names models, never files: only the GGUF the server reports is read.
                report = validate(client, model, progress=progress, caller_paths=False).as_dict()
                # Probe evidence quotes the server's answers, which may echo a key back.
                cleaned: dict[str, Any] = json.loads(self.redact(json.dumps(report)))
                return cleaned

            return ValidationOut.model_validate(await self._in_thread(ctx, job))

    async def _in_thread(self, ctx: Context[Any, Any], job: Callable[[ProgressFn], T]) -> T:
        """Run ``job(progress)`` in a worker thread; its ``progress(done, total, message)`` calls
        become MCP progress notifications, sent from the event loop. If the call is cancelled the
        thread cannot be interrupted, so it is abandoned and stops at its next progress report."""
        last = [-1.0]
        cancelled = threading.Event()

        def progress(done: int, total: int, message: str) -> None:
            if cancelled.is_set():
                raise CorralError("cancelled by the client")
            if done <= last[0]:  # MCP wants progress to increase
                return
            last[0] = done
            anyio.from_thread.run(ctx.report_progress, float(done), float(total), message)

        try:
            return await anyio.to_thread.run_sync(job, progress, abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise


def _llama_info(props: dict[str, Any]) -> LlamaCppInfo:
    def text(key: str) -> str | None:
        value = props.get(key)
        return value.strip() if isinstance(value, str) else None

    def integer(value: Any) -> int | None:
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    settings = props.get("default_generation_settings")
    return LlamaCppInfo(
        build_info=text("build_info"),
        system_info=text("system_info"),
        model_path=text("model_path"),
        n_ctx=integer(settings.get("n_ctx")) if isinstance(settings, dict) else None,
        total_slots=integer(props.get("total_slots")),
    )
