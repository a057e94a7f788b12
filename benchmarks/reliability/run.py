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
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--seed", type=int, default=None, help="fuzz: Hypothesis seed (default: derandomized)")
    p.add_argument("--max-requests", type=int, default=1_000_000, help="fuzz: bound on the request count")
    p.add_argument("--families", default="", help="fuzz: comma-separated families (default: all, mixed)")
    p.add_argument("--rate", type=float, default=50.0, help="soak: requests per second")
    p.add_argument("--clients", type=int, default=30, help="storm: concurrent clients")
    p.add_argument("--models", type=int, default=3, help="storm: managed models")
    p.add_argument("--real-engine", action="store_true", help="storm: the bundled gemma on llama.cpp, not the fake")
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
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2, default=str))
    else:
        print(table(results))
    return 1 if any(r.failed() for r in results) else 0


def _run(part: str, args: argparse.Namespace, seconds: float, workdir: Path) -> Result:
    if part == "fuzz":
        from .fuzz import FuzzOptions, run_fuzz

        fams = tuple(f for f in args.families.split(",") if f)
        opts = FuzzOptions(seconds=seconds, max_requests=args.max_requests, seed=args.seed)
        if fams:
            opts.families = fams
        return run_fuzz(opts, workdir)
    if part == "faults":
        from .faults import FaultOptions, run_faults

        return run_faults(FaultOptions(), workdir)
    if part == "storm":
        from .storm import StormOptions, run_storm

        return run_storm(StormOptions(clients=args.clients, models=args.models, seconds=seconds,
                                      real_engine=args.real_engine), workdir)  # fmt: skip
    if part == "soak":
        from .soak import SoakOptions, run_soak

        return run_soak(SoakOptions(rate=args.rate, seconds=seconds), workdir)
    from .canary import run_canary

    return run_canary(workdir, mcp=not args.no_mcp)


if __name__ == "__main__":
    sys.exit(main())
