"""One contender of ``sdk_overhead.py``, driven over stdin/stdout (one JSON object per line).

Each contender runs in its own process so that no library's import, caches or garbage weigh on
another's timings, and so that litellm can run under its own interpreter (it is not installed in
the project venv). Only the stdlib is imported at module level: the contender's library is
imported after start-up, under whichever interpreter runs this file.

Protocol::

    worker -> {"ready": true, "version": "...", "import_s": 0.12}     after import + warm-up
    parent -> {"run": 100}                                              time 100 calls
    worker -> {"ns": [...]}                                             one duration per call
    parent closes stdin                                                 worker exits
    worker -> {"error": "..."}                                          instead of any answer above
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, TextIO

CONTENDERS = ("httpx", "corral", "openai", "litellm")
MESSAGES = [{"role": "user", "content": "hi"}]


def _protocol_stdout() -> TextIO:
    """Keep the real stdout for the protocol and send fd 1 to stderr.

    Some libraries print to stdout (litellm's feedback banners, for one); a stray line there would
    corrupt the protocol, so only this private copy of the original fd carries protocol lines.
    """
    private = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(private, "w", buffering=1, encoding="utf-8")


def _build(args: argparse.Namespace) -> tuple[Callable[[], str], str]:
    """Import the contender's library and return (one chat call returning the reply text, version).

    Every contender sends the same JSON body: model "x", the one user message, max_tokens and,
    when given, temperature. Each reuses one client object, so connections stay pooled.
    """
    base = args.url.rstrip("/")
    v1 = base + "/v1"
    extra: dict[str, Any] = {} if args.temperature is None else {"temperature": args.temperature}

    if args.contender == "httpx":
        import httpx

        # The floor: the same POST with nothing on top but JSON encode/decode of the body.
        client = httpx.Client(timeout=300.0)
        url = v1 + "/chat/completions"
        payload = {"model": "x", "messages": MESSAGES, "max_tokens": args.max_tokens, **extra}
        headers = {"Authorization": "Bearer x"}

        def call_httpx() -> str:
            r = client.post(url, json=payload, headers=headers)
            r.raise_for_status()
            return str(r.json()["choices"][0]["message"]["content"])

        return call_httpx, httpx.__version__

    if args.contender == "corral":
        import corral

        if args.backend == "llamacpp":
            host_port = base.split("://", 1)[-1]
            cc = corral.Client(f"llamacpp://{host_port}")
        else:
            cc = corral.Client(provider="openai", base_url=v1, api_key="x")

        def call_corral() -> str:
            return cc.chat(MESSAGES, model="x", max_tokens=args.max_tokens, **extra).content

        return call_corral, corral.__version__

    if args.contender == "openai":
        import openai

        oc = openai.OpenAI(base_url=v1, api_key="x")

        def call_openai() -> str:
            resp = oc.chat.completions.create(
                model="x",
                messages=MESSAGES,  # type: ignore[arg-type]  # plain dicts are what users pass
                max_tokens=args.max_tokens,
                **extra,
            )
            return str(resp.choices[0].message.content)

        return call_openai, openai.__version__

    if args.contender == "litellm":
        # The bundled cost map, not a download of it at import (there is no network but loopback).
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_TELEMETRY", "False")
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        from importlib.metadata import version

        def call_litellm() -> str:
            resp = litellm.completion(
                model="openai/x",
                api_base=v1,
                api_key="x",
                messages=MESSAGES,
                max_tokens=args.max_tokens,
                **extra,
            )
            return str(resp.choices[0].message.content)

        return call_litellm, version("litellm")

    raise SystemExit(f"unknown contender {args.contender!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="sdk_overhead.py worker (not meant to be run by hand)")
    parser.add_argument("--contender", choices=CONTENDERS, required=True)
    parser.add_argument("--backend", choices=("canned", "llamacpp"), required=True)
    parser.add_argument("--url", required=True, help="server root, e.g. http://127.0.0.1:8080")
    parser.add_argument("--max-tokens", type=int, required=True)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args(argv)
    out = _protocol_stdout()

    def send(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")

    try:
        t0 = time.perf_counter()
        call, version = _build(args)
        import_s = time.perf_counter() - t0
        # Warm-up: connection set-up, lazy imports and first-call caches stay out of the timings.
        for _ in range(args.warmup):
            if not call():
                raise RuntimeError("empty reply during warm-up")
    except BaseException as exc:
        send({"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]})
        return 1
    send({"ready": True, "version": version, "import_s": import_s, "python": sys.version.split()[0]})

    clock = time.perf_counter_ns
    for line in sys.stdin:
        cmd = json.loads(line)
        n = int(cmd.get("run", 0))
        ns: list[int] = []
        try:
            for _ in range(n):
                t = clock()
                call()
                ns.append(clock() - t)
        except Exception as exc:
            send({"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]})
            return 1
        send({"ns": ns})
    return 0


if __name__ == "__main__":
    sys.exit(main())
