"""Child-process entry point: llama.cpp's HTTP server (the xllamacpp wheel) on loopback.

Takes llama-server's own flags (the table in :mod:`corral.manager.engine_flags`), so the same argv
works for the real binary and for this engine. Prints one JSON line ``{"url": ...}`` on stdout once
the model is loaded and the server listens, then serves until its stdin closes (the parent died or
asked it to stop) or it receives SIGTERM.

    python -m corral.manager.engine_child -m model.gguf --port 0 [any llama-server flag…]
    python -m corral.manager.engine_child -hf org/repo:Q4_K_M      # pulled through corral's Hub cache
    python -m corral.manager.engine_child --models-dir DIR [--models-max N]   # router mode

Router mode is corral's (:mod:`corral.manager.router`): the xllamacpp build has llama.cpp's router
disabled ("params.model.path is required: xllamacpp disabled the router server feature").

The API key, if any, comes from the CORRAL_ENGINE_API_KEY (or LLAMA_ARG_API_KEY) environment
variable so that it never shows in a process listing.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any


def _die_with_parent() -> None:
    # Belt and braces next to the stdin watch: Linux can signal us when the parent dies.
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass


def _report(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def _note(text: str) -> None:
    # The manager and EngineProcess keep this log; "corral-engine:" lines are corral's own notes.
    print(f"corral-engine: {text}", file=sys.stderr, flush=True)


def _resolve_hf(parsed: Any, params: Any) -> None:
    """``-hf repo[:quant]`` (and ``-hfd`` for the draft): pulled into corral's cache, then run by path."""
    from ..hub import pull

    token = parsed.extra.get("hf_token")
    if "hf_repo" in parsed.extra:
        ref = parsed.extra["hf_repo"]
        if "hf_file" in parsed.extra:
            ref = f"{ref.split(':', 1)[0]}:{parsed.extra['hf_file']}"
        model = pull(ref, token=token, progress=_note)
        params.model.path = str(model.path)
        if model.mmproj is not None and not params.mmproj.path and not params.no_mmproj:
            params.mmproj.path = str(model.mmproj)
        if not params.model_alias:
            params.model_alias = {model.name}
    if "hf_repo_draft" in parsed.extra:
        from .engine_flags import set_draft_model

        set_draft_model(params, str(pull(parsed.extra["hf_repo_draft"], token=token).path), _xllamacpp())


def _xllamacpp() -> Any:
    import xllamacpp

    return xllamacpp


def _api_key_from_env() -> str:
    return os.environ.pop("CORRAL_ENGINE_API_KEY", "") or os.environ.pop("LLAMA_ARG_API_KEY", "")


def main(argv: list[str] | None = None) -> int:
    from .engine_flags import EngineFlagError, apply_flags, hardware_notes, parse_engine_args

    argv = sys.argv[1:] if argv is None else argv
    try:
        parsed = parse_engine_args(argv)
    except EngineFlagError as exc:
        _report({"error": str(exc)})
        print(f"corral-engine: error: {exc}", file=sys.stderr)
        return 2
    _die_with_parent()
    host = str(parsed.extra.get("host", "127.0.0.1"))
    port = int(parsed.extra.get("port", 0))
    key = _api_key_from_env()
    if "models_dir" in parsed.extra:
        from .router import serve_router

        return serve_router(parsed, argv, host=host, port=port, api_key=key, report=_report, note=_note)
    x = _xllamacpp()
    params = x.CommonParams()
    params.n_ctx = 4096  # llama-server's 0 means "the model's": 32k+ for modern models, too much by default here
    params.n_parallel = 1
    try:
        apply_flags(params, parsed, x)
        if "hf_repo" in parsed.extra or "hf_repo_draft" in parsed.extra:
            _resolve_hf(parsed, params)
    except Exception as exc:  # a bad value, an unreadable template file, a failed pull: one line, no traceback
        _report({"error": str(exc)})
        return 2
    if not params.model.path:
        _report({"error": "no model: give -m FILE, -hf org/repo[:quant], or --models-dir DIR (router mode)"})
        return 2
    params.hostnames = [host]
    params.port = port
    if key:
        params.api_keys = [key]
    for note in hardware_notes(parsed, x.get_device_info()):
        _note(note)
    _note("settings: " + " ".join(parsed.names()))
    try:
        server = x.Server(params)
    except Exception as exc:  # the engine reports load failures as generic exceptions
        _report({"error": f"engine failed to start: {exc}"})
        return 1
    _report({"url": server.listening_address, "pid": os.getpid()})
    _serve_until_stdin_closes()
    return 0


def _serve_until_stdin_closes() -> None:
    import signal

    # SIGTERM from the manager: exit now (the C++ server threads would make a clean shutdown slow).
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    stop = threading.Event()

    def watch_stdin() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    stop.wait()
    # Skip interpreter teardown: the C++ server's threads make a clean shutdown slow.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
