"""The fuzzer, short: a few dozen Hypothesis-made requests per family of nasty values (derandomized:
the same requests every run) against two ``corral serve`` processes, then the battery's invariants:
no corral-made 5xx, no error outside the caller's protocol shape, no leaked key, no hang, /metrics
200 and bounded, no traceback or forged line in the log, RSS bounded, the event loop never blocked
as long as a hang (the stall itself is measured by the long run: benchmarks/reliability)."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.reliability.fuzz import FuzzOptions, run_fuzz
from benchmarks.reliability.report import Result

CLEAN = ("valid", "wrong-types", "duplicate-keys", "non-json", "utf16", "content-types", "methods", "auth",
         "random-json", "unicode")  # fmt: skip


def fuzz(tmp_path: Path, families: tuple[str, ...], requests: int, **kw: object) -> Result:
    # A stall is measured and reported; in CI only one as long as a hang fails the test (timings belong to
    # the long runs in benchmarks/, not to assertions on a shared machine).
    kw.setdefault("stall_limit_ms", 20_000.0)
    opts = FuzzOptions(seconds=60, max_requests=requests, families=families, metrics_every=10, timeout=20, **kw)  # type: ignore[arg-type]
    return run_fuzz(opts, tmp_path)


def assert_invariants(result: Result) -> None:
    failed = {c.name: c.value for c in result.failed()}
    notes = "\n".join(f"{f.kind} @ {f.where}: {f.detail}\n    repro: {f.repro}" for f in result.findings[:8])
    assert not failed, f"{failed}\n{notes}"
    assert result.get("requests") > 0


def test_clean_families(tmp_path: Path) -> None:
    """Wrong types, duplicate keys, non-JSON, UTF-16, wrong content types and methods, bad keys, random
    JSON and unicode: each a clean 4xx in the caller's shape (or an answer), nothing else."""
    assert_invariants(fuzz(tmp_path, CLEAN, 150))


@pytest.mark.parametrize(
    ("families", "requests", "kw"),
    [
        pytest.param(("surrogates",), 30, {}, id="surrogates"),  # issue 12 #1, #7
        pytest.param(("surrogate-bytes",), 30, {"gateways": ("open",)}, id="surrogate-bytes"),  # #7, raw form
        pytest.param(("huge-names",), 20, {}, id="huge-names"),  # #2
        pytest.param(("huge-strings",), 12, {}, id="huge-strings"),  # #2
        pytest.param(("nesting",), 30, {}, id="nesting"),  # #7
        pytest.param(("non-json",), 40, {"gateways": ("routed",), "routes": ("POST /upstream/{model}/{path}",)},
                     id="non-json-upstream"),  # #7
        pytest.param(("crlf",), 20, {}, id="crlf"),  # #13
        pytest.param(("many-messages",), 2, {"heavy_every": 0, "gateways": ("open",),
                                             "routes": ("POST /v1/chat/completions",)},
                     id="many-messages"),  # #10
    ],
)  # fmt: skip
def test_nasty_family(tmp_path: Path, families: tuple[str, ...], requests: int, kw: dict[str, object]) -> None:
    assert_invariants(fuzz(tmp_path, families, requests, **kw))
