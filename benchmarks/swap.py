"""What the model manager adds to a cold start.

For the bundled gemma GGUF, interleaved over --runs rounds:

  engine   spawn the engine (`python -m corral.manager.engine_child`, the same argv the manager uses),
           poll /health until 200: the engine's own start-to-healthy time; then the time to the first
           streamed token of a warm request (prompt processing + one token).
  manager  `corral serve` with a [manager] config; the model unloaded; time from sending a streamed
           request to its first content byte (spawn + health-wait + the same first token).

added = manager - (engine start-to-healthy + warm first token); target: <= 100 ms (median).

    python benchmarks/swap.py [--runs 5] [--json]

Loopback only; every process started here is stopped and reaped.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BODY = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "stream": True, "temperature": 0}
ENGINE_ARGS = ["-c", "1024", "-np", "1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def first_token(http: httpx.Client, url: str, body: dict[str, object]) -> float:
    """Seconds from sending a streamed chat request to the first chunk carrying content."""
    started = time.perf_counter()
    with http.stream("POST", url, json=body, timeout=300) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data:") and '"content":"' in line.replace(" ", ""):
                return time.perf_counter() - started
    raise RuntimeError("no content arrived")


def engine_round(gguf: Path, http: httpx.Client) -> tuple[float, float]:
    port = free_port()
    argv = [sys.executable, "-m", "corral.manager.engine_child", "-m", str(gguf), "--host", "127.0.0.1",
            "--port", str(port), *ENGINE_ARGS]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if http.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError("engine exited while starting")
            time.sleep(0.005)
        healthy = time.perf_counter() - started
        warm = first_token(http, f"http://127.0.0.1:{port}/v1/chat/completions", BODY)
        return healthy, warm
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def manager_round(gateway: str, http: httpx.Client) -> float:
    http.post(f"{gateway}/api/models/unload", timeout=60).raise_for_status()
    return first_token(http, f"{gateway}/v1/chat/completions", {**BODY, "model": "gemma"})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from corral.manager.bundled import bundled_model_path

    gguf = bundled_model_path()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "corral.toml"
        config.write_text(
            f'[manager]\nstate_dir = "{tmp}"\n'
            f'[manager.models.gemma]\ngguf = "{gguf}"\nargs = {json.dumps(ENGINE_ARGS)}\n'
        )
        port = free_port()
        gateway = subprocess.Popen(
            [sys.executable, "-m", "corral.cli", "serve", "--config", str(config), "--port", str(port),
             "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "CORRAL_CACHE_DIR": tmp},
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        healthy, warm, cold = [], [], []
        try:
            with httpx.Client() as http:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    try:
                        if http.get(f"{url}/health", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.05)
                manager_round(url, http)  # warm the page cache and the interpreter paths once
                for _ in range(args.runs):
                    h, w = engine_round(gguf, http)
                    healthy.append(h)
                    warm.append(w)
                    cold.append(manager_round(url, http))
        finally:
            gateway.terminate()
            gateway.wait(timeout=30)
    med = {k: statistics.median(v) * 1000 for k, v in (("healthy", healthy), ("warm", warm), ("cold", cold))}
    added = med["cold"] - med["healthy"] - med["warm"]
    result = {
        "runs": args.runs,
        "engine_start_to_healthy_ms": round(med["healthy"], 1),
        "warm_first_token_ms": round(med["warm"], 1),
        "manager_cold_first_token_ms": round(med["cold"], 1),
        "added_ms": round(added, 1),
        "target_ms": 100,
        "met": added <= 100,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"cold start through corral's manager, {args.runs} interleaved runs (medians)")
        print(f"  engine start-to-healthy        {med['healthy']:8.1f} ms")
        print(f"  warm request, first token      {med['warm']:8.1f} ms")
        print(f"  manager: request to 1st token  {med['cold']:8.1f} ms")
        verdict = "PASS" if added <= 100 else "MISS"
        print(f"  added by corral                {added:8.1f} ms   target <= 100 ms   {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
