"""The battery's long forms, opt-in: ``CORRAL_STRESS_LONG=1 python -m pytest tests/stress/test_long.py``
(``CORRAL_STRESS_MINUTES``, default 10, bounds fuzz, storm and soak each). Each part must pass every
check it makes; the table is printed (``-s``) whatever the outcome. The same runs, without pytest:
``python benchmarks/reliability/run.py all --minutes 10``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from benchmarks.reliability.report import Result, table
from benchmarks.reliability.run import PARTS, run_part

LONG = os.environ.get("CORRAL_STRESS_LONG", "") not in ("", "0")
MINUTES = float(os.environ.get("CORRAL_STRESS_MINUTES", "10"))

pytestmark = [
    pytest.mark.skipif(not LONG, reason="long reliability runs are opt-in: set CORRAL_STRESS_LONG=1"),
    pytest.mark.timeout(int(MINUTES * 60 * 2 + 600)),
]


@pytest.mark.parametrize("part", PARTS)
def test_long_form(part: str, tmp_path: Path) -> None:
    result: Result = run_part(part, tmp_path, minutes=MINUTES)
    print("\n" + table([result]))
    assert not result.failed(), [f"{c.name}: {c.value}" for c in result.failed()]
