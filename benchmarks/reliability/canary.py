"""The canary scan: providers configured with recognisable secrets (an ``sk-`` key, keys without that
prefix, a ``base_url`` holding ``user:password``, an ``OPENAI_API_KEY`` in the environment), all on
the fault backend's ``echo`` host, which puts the credentials it receives into its error bodies.

Every surface a client or operator sees is then searched for the canaries and for the Basic-auth
base64 of the ``user:password`` pair: the gateway's answers on each route (streamed or not), the
dashboard chat, ``/dashboard/api/state``, ``/metrics``, ``/v1/models``, the gateway log, the results
of every MCP tool (``corral mcp`` over stdio), and ``corral config`` (text and ``--json``). Two more
checks: the gateway's own client key is never forwarded upstream, and ``OPENAI_API_KEY`` reaches no
host but api.openai.com (the echo host's URL merely contains that name).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from .backend import FaultBackend
from .gateway import GatewayProcess
from .report import Result
from .shapes import canary_forms, find_canaries

__all__ = ["CANARIES", "FUZZ_PROVIDER_KEYS", "SURFACES", "canary_config", "run_canary"]

CANARIES = {
    "sk": "sk-canary0openai0a1b2c3d4e5f60789",
    "plain": "CanaryPlainKey0a1b2c3d4e5f60789",  # no sk- prefix: a pattern-based redactor misses it
    "ant": "sk-ant-canary0a1b2c3d4e5f60789",
    "llama": "llamacanary0a1b2c3d4e5f60789",
    "env": "EnvCanaryOpenAIKey0a1b2c3d4e5f6",  # OPENAI_API_KEY
    "gateway": "gwcanary0a1b2c3d4e5f60789",  # the gateway's own client key
}
BASIC_USER, BASIC_PASSWORD = "canaryuser", "CanaryPassw0rd4e5f6"
# The fuzzer's providers carry canaries too (it scans every answer for them).
FUZZ_PROVIDER_KEYS = {
    "oa": "sk-fuzzcanary0a1b2c3d4e5f6",
    "ant": "FuzzCanaryAnthropic0a1b2c3",
    "llama": "fuzzcanaryllama0a1b2c3d4",
}
SURFACES = ("gateway answers", "dashboard chat", "dashboard state", "metrics", "models list", "gateway log",
            "mcp tools", "corral config", "gateway key upstream", "env key scope")  # fmt: skip
MODELS = {"m-sk": "sk", "m-plain": "plain", "m-ant": "ant", "m-llama": "llama", "m-basic": "basic", "m-env": "envscope"}
ROUTES = (
    ("POST", "/v1/chat/completions", "chat", False), ("POST", "/v1/chat/completions", "chat", True),
    ("POST", "/v1/messages", "messages", False), ("POST", "/v1/messages", "messages", True),
    ("POST", "/v1/completions", "completion", False), ("POST", "/v1/embeddings", "embeddings", False),
    ("POST", "/v1/rerank", "rerank", False), ("POST", "/v1/messages/count_tokens", "count", False),
)  # fmt: skip


def forms() -> dict[str, str]:
    return canary_forms(CANARIES.values(), [(BASIC_USER, BASIC_PASSWORD)])


def canary_config(backend: FaultBackend) -> dict[str, Any]:
    echo = backend.base("echo")
    host = echo.split("//", 1)[1]
    providers = {
        "sk": {"type": "openai", "base_url": f"{echo}/v1", "api_key": CANARIES["sk"]},
        "plain": {"type": "openai", "base_url": f"{echo}/v1", "api_key": CANARIES["plain"]},
        "ant": {"type": "anthropic", "base_url": echo, "api_key": CANARIES["ant"]},
        "llama": {"type": "llamacpp", "base_url": echo, "api_key": CANARIES["llama"]},
        "basic": {"type": "openai", "base_url": f"http://{BASIC_USER}:{BASIC_PASSWORD}@{host}/v1"},
        # No key of its own: only a conventional-key lookup that tests the URL by substring sends one.
        "envscope": {"type": "openai", "base_url": f"{echo}/api.openai.com/v1"},
    }
    return {
        "default_provider": "sk",
        "providers": providers,
        "gateway": {"api_keys": [CANARIES["gateway"]]},
        "models": {name: {"provider": p, "upstream": "m"} for name, p in MODELS.items()},
    }


def _body(kind: str, model: str, stream: bool) -> dict[str, Any]:
    msgs = [{"role": "user", "content": "hi"}]
    bodies: dict[str, dict[str, Any]] = {
        "chat": {"model": model, "messages": msgs, "max_tokens": 4, "stream": stream},
        "messages": {"model": model, "max_tokens": 4, "messages": msgs, "stream": stream},
        "completion": {"model": model, "prompt": "hi", "max_tokens": 4},
        "embeddings": {"model": model, "input": "hi"},
        "rerank": {"model": model, "query": "q", "documents": ["a"]},
        "count": {"model": model, "messages": msgs},
    }
    return bodies[kind]


def run_canary(workdir: Path, *, mcp: bool = True, timeout: float = 30.0) -> Result:
    result = Result("canary")
    started = time.monotonic()
    found: dict[str, list[str]] = {s: [] for s in SURFACES}
    seen_bodies = 0
    f = forms()
    with FaultBackend() as backend:
        config = canary_config(backend)
        env = {"OPENAI_API_KEY": CANARIES["env"]}
        gw = GatewayProcess(config, key=CANARIES["gateway"], env=env, workdir=workdir)
        with gw, httpx.Client(base_url=gw.url, timeout=timeout, headers=gw.headers()) as http:
            for model in MODELS:
                for method, path, kind, stream in ROUTES:
                    r = http.request(method, path, json=_body(kind, model, stream))
                    seen_bodies += 1
                    _note(found, result, "gateway answers", f"{path}{' stream' if stream else ''} {model}",
                          r.content, f, f"{method} {path} {json.dumps(_body(kind, model, stream))}")  # fmt: skip
                body = {**_body("chat", model, False), "provider": MODELS[model]}
                r = http.post("/dashboard/api/chat", json=body)
                _note(
                    found, result, "dashboard chat", model, r.content, f, f"POST /dashboard/api/chat {json.dumps(body)}"
                )
            for surface, path in (("dashboard state", "/dashboard/api/state"), ("metrics", "/metrics"),
                                  ("models list", "/v1/models")):  # fmt: skip
                r = http.get(path)
                _note(found, result, surface, path, r.content, f, f"GET {path}")
        _note(found, result, "gateway log", "stderr", gw.log_text().encode(), f, "the gateway log")
        upstream_auth = [(s.authorization, s.api_key, s.path) for s in backend.seen]
        if mcp:
            errlog = workdir / "mcp.log"
            for where, text in _mcp_results(gw.config_path, env, timeout, errlog):
                _note(found, result, "mcp tools", where, text.encode(), f, f"MCP tool {where}")
            _note(found, result, "mcp tools", "the MCP server's log", errlog.read_bytes(), f, "corral mcp stderr")
        for args in (["config"], ["config", "--json"]):
            out = _cli(args, gw.config_path, env, timeout)
            _note(
                found, result, "corral config", " ".join(args), out.encode(), f, f"corral {' '.join(args)} --config F"
            )
    gw_key_up = [p for a, k, p in upstream_auth if CANARIES["gateway"] in a or CANARIES["gateway"] in k]
    if gw_key_up:
        found["gateway key upstream"].append("gateway key")
        result.find("leak", "gateway key upstream", f"the client's gateway key was sent upstream on {gw_key_up[0]}")
    env_up = [p for a, k, p in upstream_auth if CANARIES["env"] in a or CANARIES["env"] in k]
    if env_up:
        found["env key scope"].append("OPENAI_API_KEY")
        result.find("leak", "env key scope", f"OPENAI_API_KEY sent to a host that is not api.openai.com ({env_up[0]})",
                    "base_url = 'http://127.0.0.1:P/x/api.openai.com/v1', no api_key, OPENAI_API_KEY set")  # fmt: skip
    result.seconds = time.monotonic() - started
    result.figure("client bodies scanned", seen_bodies)
    for surface in SURFACES:
        labels = sorted(set(found[surface]))
        if surface == "mcp tools" and not mcp:
            result.figure(surface, "skipped")
            continue
        result.check(f"leaks: {surface}", ", ".join(labels) or "0", "0", not labels)
    result.extra["found"] = found
    return result


def _note(found: dict[str, list[str]], result: Result, surface: str, where: str, text: bytes, f: dict[str, str],
          repro: str) -> None:  # fmt: skip
    labels = find_canaries(text, f)
    if labels:
        found[surface].extend(labels)
        result.find("leak", surface, f"{', '.join(labels)} in {where}: {_around(text, f)}", repro[:300], limit=6)


def _around(text: bytes, f: dict[str, str]) -> str:
    s = text.decode("utf-8", "replace")
    for form in f:
        at = s.find(form)
        if at >= 0:
            return repr(s[max(0, at - 80) : at + len(form) + 20])
    return ""


def _cli(args: list[str], config: Path, env: dict[str, str], timeout: float) -> str:
    import os

    full = {**{k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}, **env, "NO_COLOR": "1",
            "COLUMNS": "200"}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "corral", *args, "--config", str(config)], capture_output=True,
                          text=True, env=full, timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip
    return done.stdout + done.stderr


def _mcp_results(config: Path, env: dict[str, str], timeout: float, errlog: Path) -> list[tuple[str, str]]:
    """(tool call, everything it returned as text) for each MCP tool, over stdio."""
    return asyncio.run(asyncio.wait_for(_mcp_calls(config, env, errlog), timeout * 4))


async def _mcp_calls(config: Path, env: dict[str, str], errlog: Path) -> list[tuple[str, str]]:
    import os

    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    full = {**{k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}, **env}
    params = StdioServerParameters(command=sys.executable, args=["-m", "corral", "mcp", "--config", str(config)],
                                   env=full)  # fmt: skip
    calls: list[tuple[str, dict[str, Any]]] = [("get_system_info", {}), ("list_available_models", {})]
    for provider in ("sk", "plain", "ant", "llama", "basic", "envscope"):
        calls.append(("chat_completion", {"prompt": "hi", "provider": provider, "model": "m", "max_tokens": 4}))
        calls.append(("stream_chat", {"prompt": "hi", "provider": provider, "model": "m", "max_tokens": 4}))
        calls.append(("list_available_models", {"provider": provider}))
    calls.append(("validate_model", {"model": "m", "provider": "plain"}))
    calls.append(("benchmark_model", {"model": "m", "provider": "basic", "runs": 1, "max_tokens": 2,
                                      "prompt_tokens": 8}))  # fmt: skip
    out: list[tuple[str, str]] = []
    with open(errlog, "w") as log:
        async with stdio_client(params, errlog=log) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            for name, args in calls:
                try:
                    res = await session.call_tool(name, args)
                    text = res.model_dump_json()
                except Exception as exc:  # a protocol-level error is a result too: its text is scanned
                    text = repr(exc)
                out.append((f"{name}({args.get('provider', '')})", text))
    return out
