"""The reliability and security battery for ``corral serve``, on loopback:

    python benchmarks/reliability/run.py [fuzz|faults|storm|soak|canary|all] [--minutes N] [--json]

  fuzz     Hypothesis-made requests with nasty values to every gateway route (see fuzz.py)
  faults   every fault of the fault backend, on every provider type and caller protocol (faults.py)
  storm    N clients x M managed models with max_loaded = 1 (storm.py)
  soak     a steady request rate for a while: p50/p99, RSS and open files per minute (soak.py)
  canary   recognisable secrets in the config, searched for on every surface (canary.py)

``--minutes`` bounds fuzz, storm and soak each (faults and canary are a fixed set of requests).
Every process started is stopped and reaped; nothing leaves 127.0.0.1. The exit status is 1 when a
check failed. Short forms of each part run in the test suite (tests/stress).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[2])
    __package__ = "benchmarks.reliability"

from benchmarks.reliability.report import Result, table

PARTS = ("fuzz", "faults", "storm", "soak", "canary")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", nargs="?", default="all", choices=(*PARTS, "all"))
    p.add_argument("--minutes", type=float, default=1.0, help="time bound of fuzz, storm and soak, each")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                   help="JSON to PATH as well as the table, or to stdout instead of it without PATH")  # fmt: skip
    p.add_argument("--seed", type=int, default=None, help="fuzz: Hypothesis seed (default: derandomized)")
    p.add_argument("--max-requests", type=int, default=1_000_000, help="fuzz: bound on the request count")
    p.add_argument("--families", default="", help="fuzz: comma-separated families (default: all, mixed)")
    p.add_argument("--rate", type=float, default=50.0, help="soak: requests per second")
    p.add_argument("--clients", type=int, default=30, help="storm: concurrent clients")
    p.add_argument("--models", type=int, default=3, help="storm: managed models")
    p.add_argument("--real-engine", action="store_true", help="storm: the bundled gemma on llama.cpp, not the fake")
    p.add_argument("--drain-timeout", type=float, default=None, help="storm: [manager] drain_timeout")
    p.add_argument("--no-mcp", action="store_true", help="canary: skip the MCP tools")
    args = p.parse_args(argv)
    parts = PARTS if args.part == "all" else (args.part,)
    seconds = args.minutes * 60
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="corral-battery-") as tmp:
        for part in parts:
            workdir = Path(tmp) / part
            workdir.mkdir()
            print(f"[{time.strftime('%H:%M:%S')}] {part} ...", file=sys.stderr, flush=True)
            results.append(_run(part, args, seconds, workdir))
    text = json.dumps([r.as_dict() for r in results], indent=2, default=str)
    if args.json == "-":
        print(text)
    else:
        print(table(results))
        if args.json:
            Path(args.json).write_text(text)
    return 1 if any(r.failed() for r in results) else 0


def _run(part: str, args: argparse.Namespace, seconds: float, workdir: Path) -> Result:
    families = tuple(f for f in args.families.split(",") if f)
    return run_part(part, workdir, minutes=seconds / 60, seed=args.seed, max_requests=args.max_requests,
                    families=families, rate=args.rate, clients=args.clients, models=args.models,
                    real_engine=args.real_engine, drain_timeout=args.drain_timeout, mcp=not args.no_mcp)  # fmt: skip


def run_part(part: str, workdir: Path, *, minutes: float = 10.0, seed: int | None = None,
             max_requests: int = 1_000_000, families: tuple[str, ...] = (), rate: float = 50.0, clients: int = 30,
             models: int = 3, real_engine: bool = False, drain_timeout: float | None = None,
             mcp: bool = True) -> Result:  # fmt: skip
    """One part of the battery in its long form (also what tests/stress/test_long.py runs), with the
    machine's load average before and after (the figures mean little on a busy host)."""
    before = os.getloadavg()[0]
    result = _part(part, workdir, minutes * 60, seed, max_requests, families, rate, clients, models, real_engine,
                   drain_timeout, mcp)  # fmt: skip
    result.figure(
        "load average (1 min) before/after", f"{before:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    return result


def _part(part: str, workdir: Path, seconds: float, seed: int | None, max_requests: int, families: tuple[str, ...],
          rate: float, clients: int, models: int, real_engine: bool, drain_timeout: float | None,
          mcp: bool) -> Result:  # fmt: skip
    if part == "fuzz":
        from .fuzz import FuzzOptions, run_fuzz

        opts = FuzzOptions(seconds=seconds, max_requests=max_requests, seed=seed)
        if families:
            opts.families = families
        return run_fuzz(opts, workdir)
    if part == "faults":
        from .faults import FaultOptions, run_faults

        return run_faults(FaultOptions(), workdir)
    if part == "storm":
        from .storm import StormOptions, run_storm

        opts_storm = StormOptions(clients=clients, models=models, seconds=seconds, real_engine=real_engine,
                                  drain_timeout=drain_timeout)  # fmt: skip
        return run_storm(opts_storm, workdir)
    if part == "soak":
        from .soak import SoakOptions, run_soak

        return run_soak(SoakOptions(rate=rate, seconds=seconds), workdir)
    if part == "canary":
        from .canary import run_canary

        return run_canary(workdir, mcp=mcp)
    raise ValueError(f"unknown part {part!r}: one of {', '.join(PARTS)}")


if __name__ == "__main__":
    sys.exit(main())
