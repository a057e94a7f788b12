"""Child-process entry point: llama.cpp's HTTP server (the xllamacpp wheel) on loopback.

Takes a subset of llama-server's own flags, so the same argv works for the real
binary and for this engine. Prints one JSON line ``{"url": ...}`` on stdout once
the model is loaded and the server listens, then serves until its stdin closes
(the parent died or asked it to stop) or it receives SIGTERM.

    python -m corral.manager.engine_child -m model.gguf --port 0 [-c 4096] [-np 2]
        [--embeddings] [--reranking] [--slots] [--metrics] [--props] [--slot-save-path DIR]
        [--jinja] [--chat-template-file F] [--pooling mean] [--threads N]

The API key, if any, comes from the CORRAL_ENGINE_API_KEY environment variable
so that it never shows in a process listing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading


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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="corral-engine", description=__doc__)
    p.add_argument("-m", "--model", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("-c", "--ctx-size", type=int, default=4096)
    p.add_argument("-np", "--parallel", type=int, default=1)
    p.add_argument("-t", "--threads", type=int, default=0)
    p.add_argument("--embeddings", "--embedding", action="store_true")
    p.add_argument("--reranking", "--rerank", action="store_true", help="as llama-server: embeddings, rank pooling")
    p.add_argument("--pooling", choices=["none", "mean", "cls", "last", "rank"], default=None)
    p.add_argument("--slots", action="store_true")
    p.add_argument("--props", action="store_true")
    p.add_argument("--metrics", action="store_true")
    p.add_argument("--slot-save-path", default=None)
    p.add_argument("--jinja", action="store_true")
    p.add_argument("--chat-template-file", default=None)
    p.add_argument("--alias", default=None)
    p.add_argument("--sse-ping-interval", type=int, default=None)
    p.add_argument("-b", "--batch-size", type=int, default=None)
    p.add_argument("-ub", "--ubatch-size", type=int, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _die_with_parent()
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.ctx_size
    params.n_parallel = args.parallel
    if args.threads:
        params.cpuparams.n_threads = args.threads
        params.cpuparams_batch.n_threads = args.threads
    if args.embeddings or args.reranking:
        params.embedding = True
        pooling = "rank" if args.reranking else (args.pooling or "mean")
        params.pooling_type = getattr(xllamacpp.llama_pooling_type, f"LLAMA_POOLING_TYPE_{pooling.upper()}")
    params.endpoint_slots = args.slots
    params.endpoint_props = args.props
    params.endpoint_metrics = args.metrics
    if args.slot_save_path:
        os.makedirs(args.slot_save_path, exist_ok=True)
        # llama-server's own flag parser adds the trailing separator; the engine joins paths by concatenation.
        params.slot_save_path = os.path.join(args.slot_save_path, "")
    if args.jinja or args.chat_template_file:
        params.use_jinja = True
    if args.chat_template_file:
        with open(args.chat_template_file, encoding="utf-8") as fh:
            params.chat_template = fh.read()
    if args.sse_ping_interval is not None:
        params.sse_ping_interval = args.sse_ping_interval
    if args.batch_size:
        params.n_batch = args.batch_size
    if args.ubatch_size:
        params.n_ubatch = args.ubatch_size
    if args.alias:
        params.model_alias = {args.alias}
    # The key comes by environment so it never shows in a process listing; LLAMA_ARG_API_KEY is the
    # variable the real llama-server reads, so the manager passes both engines the same way.
    key = os.environ.pop("CORRAL_ENGINE_API_KEY", "") or os.environ.pop("LLAMA_ARG_API_KEY", "")
    if key:
        params.api_keys = [key]
    try:
        server = xllamacpp.Server(params)
    except Exception as exc:  # the engine reports load failures as generic exceptions
        print(json.dumps({"error": f"engine failed to start: {exc}"}), flush=True)
        return 1
    print(json.dumps({"url": server.listening_address, "pid": os.getpid()}), flush=True)
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
