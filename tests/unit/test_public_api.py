"""The public surface: exported names, a cheap side-effect-free import, sync/async parity, layering."""

from __future__ import annotations

import ast
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import corral

SRC = Path(corral.__file__).resolve().parent

EXPECTED_ALL = [
    "AsyncClient",
    "Authentication",
    "BadRequest",
    "Capability",
    "ChatResponse",
    "Client",
    "Completion",
    "ConfigurationError",
    "ConnectionFailed",
    "ContentDelta",
    "ContextLengthExceeded",
    "CorralError",
    "Done",
    "Embeddings",
    "GeneratedImage",
    "Health",
    "ImagePart",
    "Message",
    "ModelInfo",
    "ModelLoading",
    "ModelNotFound",
    "ProviderConfig",
    "ProviderError",
    "RateLimited",
    "ReasoningDelta",
    "RequestTimeout",
    "RerankResult",
    "Reranking",
    "ResponseError",
    "RunningModel",
    "ServerError",
    "ServerUnreachable",
    "Settings",
    "SlotInfo",
    "StreamEvent",
    "StructuredOutputError",
    "TextPart",
    "Timings",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallEnd",
    "UnsupportedCapability",
    "Usage",
    "__version__",
    "load_settings",
    "parse_dsn",
]


def test_all_is_pinned():
    assert list(corral.__all__) == EXPECTED_ALL
    assert sorted(EXPECTED_ALL) == EXPECTED_ALL


def test_every_exported_name_exists():
    for name in corral.__all__:
        assert hasattr(corral, name), name


def test_errors_share_one_base():
    for name in corral.__all__:
        obj = getattr(corral, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, corral.CorralError), name


_IMPORT_PROBE = r"""
import json, sys
events = []
def hook(event, args):
    if event.startswith("socket.") or event == "open":
        events.append([event, str(args[0]) if args else ""])
sys.addaudithook(hook)
import corral
client = corral.Client  # touching the facade must not load anything either
print(json.dumps({
    "heavy": [m for m in ("httpx", "httpcore", "anyio", "asyncio", "xllamacpp", "pydantic", "rich", "typer",
                          "corral.transport", "corral.stream", "corral.manager", "corral.manager.engine")
              if m in sys.modules],
    "sockets": [e for e in events if e[0].startswith("socket.")],
    "files": [e[1] for e in events if e[0] == "open" and "__pycache__" not in e[1]
              and not e[1].endswith((".py", ".pyc", ".so", ".pth"))],
}))
"""


def test_import_is_cheap_and_does_no_io(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORRAL_", "PYTHON"))}
    env["CORRAL_CONFIG"] = str(tmp_path / "does-not-exist.toml")  # reading config at import would raise
    env["CORRAL_DEFAULT_PROVIDER"] = "nowhere"
    env["HOME"] = str(tmp_path)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # src/ is being edited: do not let .pyc rewrites count as file I/O
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert report["sockets"] == []
    assert report["files"] == []


_PAIRED = {"close", "aclose", "get_provider"}


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    out = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") or name in _PAIRED:
            continue
        if inspect.isfunction(member):
            out[name] = inspect.signature(member)
    return out


def test_sync_async_parity():
    sync = _public_methods(corral.Client)
    async_ = _public_methods(corral.AsyncClient)
    assert {"chat", "stream", "complete", "embed", "models", "health", "tokenize"} <= set(sync)
    missing = sorted(set(sync) - set(async_))
    assert missing == [], f"AsyncClient lacks {missing}"
    for name, sig in sync.items():
        assert list(sig.parameters) == list(async_[name].parameters), name
        for p, q in zip(sig.parameters.values(), async_[name].parameters.values(), strict=True):
            assert (p.kind, p.default) == (q.kind, q.default), f"{name}({p.name})"


def test_constructor_parity():
    sync = inspect.signature(corral.Client.__init__).parameters
    async_ = inspect.signature(corral.AsyncClient.__init__).parameters
    # Only the async client takes a pluggable transport (the gateway runs it on aiohttp).
    assert list(sync) == [p for p in async_ if p != "transport"]


def test_async_methods_are_coroutines_except_stream():
    for name in _public_methods(corral.AsyncClient):
        fn = getattr(corral.AsyncClient, name)
        # Streams open on `async with`, so the methods that make them are plain functions.
        assert inspect.iscoroutinefunction(fn) is (name not in ("stream", "stream_request")), name
    assert inspect.iscoroutinefunction(corral.AsyncClient.aclose)
    assert hasattr(corral.AsyncClient, "__aenter__") and hasattr(corral.AsyncClient, "__aexit__")
    assert hasattr(corral.Client, "__enter__") and hasattr(corral.Client, "__exit__")


# -- layering ------------------------------------------------------------------------------------------

_FORBIDDEN = (
    "httpx",
    "corral.client",
    "corral.async_client",
    "corral.stream",
    "corral.transport",
    "corral.manager",
    "corral.cli",
)

_PURE_FILES = [
    "types.py",
    "errors.py",
    "events.py",
    "sse.py",
    "config.py",
    "structured.py",
    "reasoning.py",
    "capabilities.py",
]


def _pure_modules() -> list[Path]:
    files = [SRC / f for f in _PURE_FILES] + sorted((SRC / "providers").rglob("*.py"))
    assert all(f.is_file() for f in files)
    return files


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (also inside functions), relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base = ".".join(base_parts[: len(base_parts) - (node.level - 1)])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return found


def _violations(mods: set[str]) -> list[str]:
    return sorted(m for m in mods for f in _FORBIDDEN if m == f or m.startswith(f + "."))


def test_import_resolver_sees_relative_and_function_level_imports(tmp_path):
    # The layering test is only as good as this resolver: check it on the drivers, which do import httpx.
    assert "httpx" in imported_modules(SRC / "client.py")  # under TYPE_CHECKING and inside a method
    assert "corral.transport" in imported_modules(SRC / "client.py")  # "from .transport import ..." in a method
    assert "corral.errors" in imported_modules(SRC / "providers" / "openai_compat" / "stream.py")  # "from ...errors"
    assert _violations(imported_modules(SRC / "stream.py"))


@pytest.mark.parametrize("path", _pure_modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_pure_modules_do_not_import_drivers_or_httpx(path):
    assert _violations(imported_modules(path)) == []


# Layers, bottom up (ARCHITECTURE.md): a module may import its own layer and those below, never above.
# client_base is the drivers' shared no-I/O core, so it sits with them (it asks the manager for the
# embedded engine's spec); __main__ only launches the CLI.
_LAYERS = {
    "core": 0,
    "providers": 1,
    "manager": 2,
    "drivers": 3,
    "apps": 4,
}
_LAYER_OF = {
    "providers": "providers",
    "registry": "providers",
    "manager": "manager",
    "hub": "manager",  # Hugging Face downloads: I/O beside the manager, used by it and by the drivers
    "client": "drivers",
    "async_client": "drivers",
    "client_base": "drivers",
    "stream": "drivers",
    "transport": "drivers",
    "async_transport": "drivers",
    "cli": "apps",
    "gateway": "apps",
    "mcp": "apps",
    "probe": "apps",
    "__main__": "apps",
}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "corral" or len(parts) < 2:
        return None
    return _LAYERS[_LAYER_OF.get(parts[1], "core")]


def test_every_import_points_down():
    """Also imports under TYPE_CHECKING and inside functions: a lazy import upward is still a circle."""
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        name = _module_name(path)
        own = _layer(name)
        if own is None:
            continue
        for mod in imported_modules(path):
            theirs = _layer(mod)
            if theirs is not None and theirs > own:
                upward.append(f"{name} -> {mod}")
    assert upward == []
