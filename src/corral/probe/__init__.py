"""corral.probe: measured benchmarks and honest model validation (``corral bench``, ``corral validate``).

Not imported by ``import corral``: load it when you need it.

    from corral.probe import benchmark, validate
    result = benchmark(client, runs=3)          # tokens/s and time to first token, medians of the runs
    report = validate(client)                   # chat, stream, json_schema, tool_call, reasoning, embeddings
"""

from __future__ import annotations

from .bench import BenchResult, BenchRun, benchmark
from .capabilities import model_capabilities
from .validate import PROBES, ProbeResult, ValidationReport, validate

__all__ = [
    "PROBES",
    "BenchResult",
    "BenchRun",
    "ProbeResult",
    "ValidationReport",
    "benchmark",
    "model_capabilities",
    "validate",
]
