"""Per-call client overhead of corral against raw httpx, the openai SDK and litellm.

One non-streaming chat call -- ``messages=[{"role": "user", "content": "hi"}]`` -- timed per call for:

  httpx    ``httpx.Client.post`` of the same JSON, then ``.json()``: the floor
  corral   ``corral.Client(...).chat(...)``
  openai   ``OpenAI(base_url=..., api_key="x").chat.completions.create(...)``
  litellm  ``litellm.completion(model="openai/x", api_base=..., api_key="x", ...)``

against two servers on 127.0.0.1:

  canned    benchmarks/canned_backend.py, a fixed chat.completion over HTTP/1.1 keep-alive
            (stdlib asyncio, answers in tens of microseconds): what is left is client overhead
  llamacpp  the real llama.cpp server (``python -m corral.manager.engine_child``) with the bundled
            gemma-3-270m model; few calls, since each generates tokens

Each contender runs in its own worker process (benchmarks/sdk_overhead_worker.py) with one client
object reused for every call, warmed up before timing. Contenders are interleaved in rounds, in
a rotating order, so that machine noise falls on all of them alike. litellm runs under its own
interpreter (``--litellm-python``; ``--setup-litellm`` creates benchmarks/.venv-litellm), since it
must not be installed in the project venv.

Also measured, each in fresh subprocesses: ``import corral`` time and RSS after it.

    python benchmarks/sdk_overhead.py [--setup-litellm] [-n 2000] [--json [PATH]]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
WORKER = HERE / "sdk_overhead_worker.py"
CANNED = HERE / "canned_backend.py"
DEFAULT_LITELLM_VENV = HERE / ".venv-litellm"
CONTENDERS = ("httpx", "corral", "openai", "litellm")
LABELS = {"httpx": "httpx (raw)", "corral": "corral", "openai": "openai SDK", "litellm": "litellm"}

# The targets this benchmark checks corral against.
TARGET_OVERHEAD_MS = 0.8
TARGET_IMPORT_S = 0.15
TARGET_RSS_MB = 40.0


def log(msg: str) -> None:
    # Progress goes to stderr so that ``--json`` output on stdout stays machine-readable.
    print(f"[sdk_overhead] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Child processes: every one is started inside an ExitStack and stopped and reaped on the way out.
# --------------------------------------------------------------------------------------------------
class ChildError(RuntimeError):
    pass


class Child:
    """A subprocess spoken to in JSON lines, with timeouts on every read.

    stdin is a pipe we hold: closing it is the polite stop for all our children (workers, the
    canned backend and engine_child all exit on EOF), and it also happens if we die.
    """

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        # stderr to a file, not a pipe: a chatty child (llama.cpp logs a lot) must never block on
        # a full pipe that nobody reads, and the tail is there to show if it fails.
        self._err: IO[bytes] = tempfile.TemporaryFile(prefix=f"sdk_overhead-{name}-")  # noqa: SIM115  # closed in close()
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            env=env,
            bufsize=0,
            start_new_session=True,  # our Ctrl-C is handled here, not delivered to every child
        )
        self._buf = b""
        self._sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        except BrokenPipeError:
            raise ChildError(f"{self.name} exited early{self.stderr_tail()}") from None

    def recv(self, timeout: float) -> dict[str, Any]:
        """The next JSON object the child prints; non-JSON lines (log noise) are skipped."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line, self._buf = self._buf[:nl], self._buf[nl + 1 :]
                with contextlib.suppress(ValueError):
                    obj = json.loads(line)
                    if isinstance(obj, dict):
                        return obj
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildError(f"{self.name}: no answer within {timeout:.0f} s{self.stderr_tail()}")
            if not self._sel.select(left):
                continue
            chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
            if not chunk:
                raise ChildError(f"{self.name} exited (code {self.proc.poll()}){self.stderr_tail()}")
            self._buf += chunk

    def rss_mb(self) -> float | None:
        return _vmrss_mb(Path(f"/proc/{self.pid}/status"))

    def stderr_tail(self, limit: int = 1500) -> str:
        try:
            self._err.seek(0, os.SEEK_END)
            size = self._err.tell()
            self._err.seek(max(0, size - limit))
            tail = self._err.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return f"\n--- {self.name} stderr (tail) ---\n{tail}" if tail else ""

    def close(self) -> None:
        """Stop and reap: EOF first, then SIGTERM, then SIGKILL, to the child's whole session."""
        proc = self.proc
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        for sig, wait in ((None, 5.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
            if sig is not None and proc.poll() is None:
                # The session id is the child's pid (start_new_session): this reaches only what it
                # started, e.g. helper processes of a library, and never anything of ours.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self._sel.close()
        with contextlib.suppress(OSError):
            if proc.stdout is not None:
                proc.stdout.close()
        self._err.close()


@contextlib.contextmanager
def child(name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Iterator[Child]:
    c = Child(name, argv, env)
    try:
        yield c
    finally:
        c.close()


def _vmrss_mb(status_file: Path) -> float | None:
    try:
        text = status_file.read_text()
    except OSError:
        return None
    m = re.search(r"^VmRSS:\s+(\d+)\s+kB", text, re.M)
    return int(m.group(1)) / 1024 if m else None


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # Loopback only: no proxy may sit between a client and 127.0.0.1 and add its own latency.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env.pop(var, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    return env


# --------------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------------
@dataclass
class Backend:
    name: str
    url: str  # server root, no /v1
    calls: int
    round_size: int
    warmup: int
    max_tokens: int
    temperature: float | None
    note: str = ""


def _ready_url(c: Child, timeout: float) -> str:
    msg = c.recv(timeout)
    if "url" not in msg:
        raise ChildError(f"{c.name} did not start: {msg.get('error', msg)}{c.stderr_tail()}")
    url = str(msg["url"]).rstrip("/")
    if "://" not in url:  # a bare host:port
        url = "http://" + url
    host = url.split("://", 1)[1].split(":", 1)[0]
    if not host.startswith("127.") and host != "localhost":
        raise ChildError(f"{c.name} listens on {url}, not on loopback")
    return url.replace("://localhost:", "://127.0.0.1:")


def server_floor_ms(url: str, calls: int = 1000) -> float:
    """Median round trip of the canned POST over a bare keep-alive socket: the server's own share.

    Every contender pays this too, so it shows how much of the httpx floor is the server and
    loopback, and how much is client library.
    """
    host_port = url.split("://", 1)[1]
    host, port = host_port.rsplit(":", 1)
    body = b'{"model":"x","messages":[{"role":"user","content":"hi"}],"max_tokens":8}'
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (host_port.encode(), len(body), body)
    )
    times: list[int] = []
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(calls):
            t = time.perf_counter_ns()
            sock.sendall(request)
            got = b""
            # The canned answer is one small write; read until its whole body is in.
            while b"\r\n\r\n" not in got or len(got) < got.index(b"\r\n\r\n") + 4 + _content_length(got):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ChildError("canned backend closed the connection")
                got += chunk
            times.append(time.perf_counter_ns() - t)
    return statistics.median(times) / 1e6


def _content_length(response: bytes) -> int:
    m = re.search(rb"(?i)content-length:\s*(\d+)", response)
    return int(m.group(1)) if m else 0


def _gguf_path(explicit: str | None) -> str:
    if explicit:
        return explicit
    from corral.manager.bundled import bundled_model_path

    return str(bundled_model_path())


# --------------------------------------------------------------------------------------------------
# Rounds
# --------------------------------------------------------------------------------------------------
@dataclass
class Result:
    contender: str
    version: str = ""
    python: str = ""
    ns: list[int] = field(default_factory=list)
    rss_mb: float | None = None
    skipped: str = ""

    def ms(self) -> list[float]:
        return [n / 1e6 for n in self.ns]


def _litellm_python(args: argparse.Namespace) -> Path | None:
    if args.litellm_python:
        return Path(args.litellm_python)
    default = DEFAULT_LITELLM_VENV / "bin" / "python"
    return default if default.exists() else None


def _start_worker(
    stack: contextlib.ExitStack, contender: str, backend: Backend, python: str, env: dict[str, str]
) -> tuple[Child | None, Result]:
    res = Result(contender)
    argv = [
        python,
        str(WORKER),
        "--contender",
        contender,
        "--backend",
        backend.name,
        "--url",
        backend.url,
        "--max-tokens",
        str(backend.max_tokens),
        "--warmup",
        str(backend.warmup),
    ]
    if backend.temperature is not None:
        argv += ["--temperature", str(backend.temperature)]
    c = stack.enter_context(child(f"{contender}-worker", argv, env))
    # litellm's import alone takes seconds; warm-up on a real model takes a few generations.
    try:
        msg = c.recv(timeout=300.0)
    except ChildError as exc:
        res.skipped = str(exc).splitlines()[0]
        return None, res
    if not msg.get("ready"):
        res.skipped = str(msg.get("error", msg))
        if contender != "litellm":
            log(f"{contender} worker failed:\n{msg.get('trace', '')}{c.stderr_tail()}")
        return None, res
    res.version = str(msg.get("version", ""))
    res.python = str(msg.get("python", ""))
    return c, res


def run_backend(backend: Backend, args: argparse.Namespace, deadline: float) -> dict[str, Any]:
    env = _child_env()
    results: dict[str, Result] = {}
    rounds_done = 0
    truncated = False
    with contextlib.ExitStack() as stack:
        workers: dict[str, Child] = {}
        for contender in args.contenders:
            python = sys.executable
            if contender == "litellm":
                lp = _litellm_python(args)
                if lp is None or not lp.exists():
                    results[contender] = Result(
                        contender,
                        skipped="no litellm interpreter (run with --setup-litellm, or pass --litellm-python)",
                    )
                    continue
                python = str(lp)
            log(f"{backend.name}: starting {contender} worker")
            w, res = _start_worker(stack, contender, backend, python, env)
            results[contender] = res
            if w is None:
                log(f"{backend.name}: {contender} skipped: {res.skipped}")
            else:
                workers[contender] = w
        if "httpx" not in workers:
            raise ChildError("the raw httpx contender is the baseline and could not run")

        order = list(workers)
        n_rounds = math.ceil(backend.calls / backend.round_size)
        per_round_timeout = 60.0 + backend.round_size * (30.0 if backend.name == "llamacpp" else 1.0)
        log(f"{backend.name}: {n_rounds} rounds x {backend.round_size} calls x {len(order)} contenders")
        for r in range(n_rounds):
            if time.monotonic() > deadline:
                truncated = True
                log(f"{backend.name}: time limit reached after {r} rounds; reporting what ran")
                break
            size = min(backend.round_size, backend.calls - r * backend.round_size)
            # Rotate who goes first each round: no contender always follows the same neighbour.
            k = r % len(order)
            for contender in order[k:] + order[:k]:
                w = workers[contender]
                w.send({"run": size})
                msg = w.recv(per_round_timeout)
                if "ns" not in msg:
                    raise ChildError(f"{contender} failed in round {r}: {msg.get('error')}\n{msg.get('trace', '')}")
                results[contender].ns.extend(int(x) for x in msg["ns"])
            rounds_done = r + 1
        for contender, w in workers.items():
            results[contender].rss_mb = w.rss_mb()
    return {
        "backend": backend.name,
        "url": backend.url,
        "calls_per_contender": backend.calls,
        "round_size": backend.round_size,
        "rounds_done": rounds_done,
        "truncated": truncated,
        "warmup": backend.warmup,
        "max_tokens": backend.max_tokens,
        "temperature": backend.temperature,
        "note": backend.note,
        "contenders": summarize(results),
    }


def _p99(xs: list[float]) -> float:
    if len(xs) < 2:
        return xs[0]
    return statistics.quantiles(xs, n=100, method="inclusive")[98]


def summarize(results: dict[str, Result]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    base = statistics.median(results["httpx"].ms()) if results.get("httpx") and results["httpx"].ns else None
    lite = results.get("litellm")
    lite_med = statistics.median(lite.ms()) if lite and lite.ns else None
    for name, res in results.items():
        row: dict[str, Any] = {"version": res.version, "python": res.python, "rss_mb": res.rss_mb}
        if res.skipped or not res.ns:
            row["skipped"] = res.skipped or "no calls ran"
            out[name] = row
            continue
        ms = res.ms()
        med = statistics.median(ms)
        row.update(
            n=len(ms),
            median_ms=med,
            p99_ms=_p99(ms),
            mean_ms=statistics.fmean(ms),
            min_ms=min(ms),
            overhead_ms=None if base is None else med - base,
            ratio_vs_httpx=None if base is None else med / base,
            ratio_vs_litellm=None if lite_med is None else med / lite_med,
        )
        out[name] = row
    return out


# --------------------------------------------------------------------------------------------------
# Import time and memory, each in fresh interpreters
# --------------------------------------------------------------------------------------------------
_IMPORT_PROBE = (
    "import time,sys;t=time.perf_counter();import {mod};d=time.perf_counter()-t;"
    "import re;rss=int(re.search(r'^VmRSS:\\s+(\\d+)',open('/proc/self/status').read(),re.M).group(1));"
    "sys.__stdout__.write('%r %d\\n'%(d,rss))"
)


def measure_import(python: str, module: str, runs: int, env: dict[str, str]) -> dict[str, Any]:
    """Median wall time of ``import module`` and RSS right after, over ``runs`` fresh interpreters.

    One extra run first is discarded: it may compile .pyc files, which no user pays twice.
    """
    times: list[float] = []
    rss: list[float] = []
    for i in range(runs + 1):
        proc = subprocess.run(
            [python, "-c", _IMPORT_PROBE.format(mod=module)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            return {"module": module, "skipped": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
        d, kb = proc.stdout.split()[-2:]
        if i:
            times.append(float(d))
            rss.append(int(kb) / 1024)
    return {
        "module": module,
        "runs": runs,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "rss_mb": statistics.median(rss),
    }


def import_profile(python: str, module: str, env: dict[str, str], top: int = 6) -> list[dict[str, Any]]:
    """The modules with the most *self* time among those ``import module`` loads (``-X importtime``).

    Self time, not cumulative: a cumulative figure is charged to whichever module happened to
    import a shared dependency first, which says little about where the time really goes.
    """
    proc = subprocess.run(
        [python, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    # importtime prints in post-order: a top-level import's whole subtree comes right before its
    # own depth-0 line, so the subtree of ``module`` is what accumulated since the last depth-0 line.
    pending: list[dict[str, Any]] = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( *)(\S+)", line)
        if not m:
            continue
        row = {"module": m.group(4), "self_us": int(m.group(1)), "cumulative_us": int(m.group(2))}
        pending.append(row)
        if len(m.group(3)) == 1:  # depth 0
            if row["module"] == module:
                pending.sort(key=lambda r: r["self_us"], reverse=True)
                return pending[:top]
            pending = []
    return []


def run_imports(args: argparse.Namespace) -> dict[str, Any]:
    env = _child_env()
    out: dict[str, Any] = {"baseline": measure_import(sys.executable, "sys", args.import_runs, env)}
    log("import: corral")
    out["corral"] = measure_import(sys.executable, "corral", args.import_runs, env)
    out["corral_heaviest"] = import_profile(sys.executable, "corral", env)
    if args.compare_imports:
        log("import: openai")
        out["openai"] = measure_import(sys.executable, "openai", args.import_runs, env)
        lp = _litellm_python(args)
        if lp is not None and lp.exists():
            log("import: litellm")
            lenv = dict(env, LITELLM_LOCAL_MODEL_COST_MAP="True")
            out["litellm"] = measure_import(str(lp), "litellm", max(1, min(args.import_runs, 3)), lenv)
        else:
            out["litellm"] = {"module": "litellm", "skipped": "no litellm interpreter"}
    return out


# --------------------------------------------------------------------------------------------------
# litellm's own venv
# --------------------------------------------------------------------------------------------------
def setup_litellm(spec: str) -> Path:
    python = DEFAULT_LITELLM_VENV / "bin" / "python"
    if not python.exists():
        log(f"creating {DEFAULT_LITELLM_VENV}")
        # The base interpreter, not this venv's site-packages: litellm must see none of corral's deps.
        subprocess.run([sys.executable, "-m", "venv", str(DEFAULT_LITELLM_VENV)], check=True)
    log(f"pip install {spec} into {DEFAULT_LITELLM_VENV} (takes a minute the first time)")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", spec],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return python


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------
def _f(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def render(report: dict[str, Any]) -> str:
    lines: list[str] = []
    m = report["machine"]
    lines.append(f"corral SDK overhead benchmark -- {m['platform']}, {m['cpus']} CPUs, Python {m['python']}")
    for b in report["backends"]:
        lines.append("")
        temp = "" if b["temperature"] is None else f", temperature={b['temperature']}"
        lines.append(
            f"Backend: {b['backend']} ({b['url']}) -- {b['rounds_done']} rounds of {b['round_size']} calls"
            f" per contender, interleaved; max_tokens={b['max_tokens']}{temp}; warm-up {b['warmup']}"
        )
        if b.get("note"):
            lines.append(f"  {b['note']}")
        if b["truncated"]:
            lines.append("  (stopped early at the time limit)")
        head = (
            f"  {'contender':<12} {'version':<10} {'calls':>6} {'median ms':>10} {'p99 ms':>9}"
            f" {'overhead ms':>12} {'x httpx':>8} {'x litellm':>10} {'RSS MB':>7}"
        )
        lines.append(head)
        lines.append("  " + "-" * (len(head) - 2))
        for name, row in b["contenders"].items():
            label = LABELS.get(name, name)
            if "skipped" in row:
                lines.append(f"  {label:<12} skipped: {row['skipped']}")
                continue
            ovh = row["overhead_ms"]
            lines.append(
                f"  {label:<12} {row['version'][:10]:<10} {row['n']:>6}"
                f" {row['median_ms']:>10.3f} {row['p99_ms']:>9.3f}"
                f" {'' if ovh is None else f'{ovh:+.3f}':>12} {_f(row['ratio_vs_httpx'], '.2f'):>8}"
                f" {_f(row['ratio_vs_litellm'], '.3f'):>10} {_f(row['rss_mb'], '.1f'):>7}"
            )
    imp = report.get("imports")
    if imp:
        lines.append("")
        lines.append("Import (fresh interpreter, perf_counter around the import; RSS right after it)")
        for key in ("baseline", "corral", "openai", "litellm"):
            r = imp.get(key)
            if not r:
                continue
            label = "python (no import)" if key == "baseline" else f"import {key}"
            if "skipped" in r:
                lines.append(f"  {label:<20} skipped: {r['skipped']}")
            else:
                t = "" if key == "baseline" else f"{r['median_s'] * 1000:8.1f} ms median of {r['runs']}"
                lines.append(f"  {label:<20} {t:<28} RSS {r['rss_mb']:6.1f} MB")
        heavy = imp.get("corral_heaviest") or []
        if heavy:
            parts = ", ".join(f"{h['module']} {h['self_us'] / 1000:.1f}" for h in heavy)
            lines.append(f"  slowest modules under import corral (-X importtime, one run, self ms): {parts}")
    lines.append("")
    lines.append("Targets (corral)")
    for t in report["targets"]:
        value = "-" if t["value"] is None else f"{t['value']:.3f} {t['unit']}"
        lines.append(f"  {t['name']:<34} {value:>12}   target <= {t['target']} {t['unit']:<3}  {t['verdict']}")
    return "\n".join(lines)


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    def verdict(value: float | None, limit: float) -> str:
        if value is None:
            return "NOT MEASURED"
        return "PASS" if value <= limit else f"MISS by {value - limit:.3f}"

    overhead = None
    for b in report["backends"]:
        if b["backend"] == "canned":
            overhead = b["contenders"].get("corral", {}).get("overhead_ms")
    imp = report.get("imports") or {}
    import_s = imp.get("corral", {}).get("median_s")
    rss = imp.get("corral", {}).get("rss_mb")
    return [
        {
            "name": "per-call overhead (canned backend)",
            "value": overhead,
            "target": TARGET_OVERHEAD_MS,
            "unit": "ms",
            "verdict": verdict(overhead, TARGET_OVERHEAD_MS),
        },
        {
            "name": "import corral",
            "value": import_s,
            "target": TARGET_IMPORT_S,
            "unit": "s",
            "verdict": verdict(import_s, TARGET_IMPORT_S),
        },
        {
            "name": "RSS after import corral",
            "value": rss,
            "target": TARGET_RSS_MB,
            "unit": "MB",
            "verdict": verdict(rss, TARGET_RSS_MB),
        },
    ]


# --------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "-n",
        "--calls",
        type=int,
        default=2000,
        help="timed calls per contender, canned backend (%(default)s)",
    )
    p.add_argument("--round-size", type=int, default=100, help="calls per contender per round, canned (%(default)s)")
    p.add_argument("--warmup", type=int, default=50, help="untimed warm-up calls per contender, canned (%(default)s)")
    p.add_argument("--llama-calls", type=int, default=20, help="timed calls per contender, llama.cpp (%(default)s)")
    p.add_argument(
        "--llama-round-size",
        type=int,
        default=5,
        help="calls per contender per round, llama.cpp (%(default)s)",
    )
    p.add_argument("--llama-max-tokens", type=int, default=4, help="max_tokens on llama.cpp (%(default)s)")
    p.add_argument("--gguf", default=None, help="GGUF for llama.cpp (default: corral's bundled gemma-3-270m)")
    p.add_argument(
        "--backends",
        default="canned,llamacpp",
        help="comma-separated: canned, llamacpp (default: %(default)s)",
    )
    p.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help="comma-separated subset of %(default)s (httpx is required)",
    )
    p.add_argument(
        "--litellm-python",
        default=None,
        help="interpreter that has litellm (default: benchmarks/.venv-litellm/bin/python if it exists)",
    )
    p.add_argument(
        "--setup-litellm",
        action="store_true",
        help=f"create {DEFAULT_LITELLM_VENV.name} and pip install litellm",
    )
    p.add_argument("--litellm-spec", default="litellm", help="pip requirement for --setup-litellm (%(default)s)")
    p.add_argument("--import-runs", type=int, default=7, help="fresh interpreters per import measurement (%(default)s)")
    p.add_argument("--no-imports", dest="imports", action="store_false", help="skip the import/RSS measurements")
    p.add_argument(
        "--no-compare-imports",
        dest="compare_imports",
        action="store_false",
        help="measure import corral only",
    )
    p.add_argument("--time-limit", type=float, default=240.0, help="stop starting rounds after this many seconds")
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="also write the results as JSON to PATH; without PATH, print JSON instead of the table",
    )
    args = p.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    for b in args.backends:
        if b not in ("canned", "llamacpp"):
            p.error(f"unknown backend {b!r}")
    for c in args.contenders:
        if c not in CONTENDERS:
            p.error(f"unknown contender {c!r}")
    if "httpx" not in args.contenders:
        args.contenders.insert(0, "httpx")  # the baseline every overhead is measured from
    if args.calls < 1 or args.round_size < 1 or args.llama_calls < 1 or args.llama_round_size < 1:
        p.error("call counts and round sizes must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM becomes SystemExit so that every finally/ExitStack runs and each child is reaped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    deadline = started + args.time_limit
    if args.setup_litellm:
        args.litellm_python = args.litellm_python or str(setup_litellm(args.litellm_spec))

    report: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "backends": [],
    }
    env = _child_env()
    for name in args.backends:
        with contextlib.ExitStack() as stack:
            if name == "canned":
                server = stack.enter_context(child("canned-backend", [sys.executable, str(CANNED)], env))
                url = _ready_url(server, timeout=30.0)
                floor = server_floor_ms(url)
                backend = Backend(
                    name,
                    url,
                    args.calls,
                    args.round_size,
                    args.warmup,
                    8,
                    None,
                    note=f"server + loopback alone (bare keep-alive socket, no HTTP library): {floor:.3f} ms median",
                )
            else:
                gguf = _gguf_path(args.gguf)
                log(f"starting llama.cpp server on {Path(gguf).name}")
                argv = [sys.executable, "-m", "corral.manager.engine_child", "-m", gguf]
                argv += ["--port", "0", "-c", "2048", "-np", "1"]
                server = stack.enter_context(child("llama-server", argv, env))
                url = _ready_url(server, timeout=300.0)
                backend = Backend(
                    name,
                    url,
                    args.llama_calls,
                    args.llama_round_size,
                    2,
                    args.llama_max_tokens,
                    0.0,
                    note=f"model {Path(gguf).name}; timings include token generation",
                )
            log(f"{name} backend at {url}")
            result = run_backend(backend, args, deadline)
            result["server_rss_mb"] = server.rss_mb()
            report["backends"].append(result)
    if args.imports:
        report["imports"] = run_imports(args)
    report["targets"] = targets(report)
    report["elapsed_s"] = time.monotonic() - started

    if args.json == "-":
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
        print(f"\n(total {report['elapsed_s']:.0f} s)")
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
            log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ChildError as exc:
        print(f"sdk_overhead: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
