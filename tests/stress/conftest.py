"""The reliability battery's short forms (benchmarks/reliability): each part run for seconds against a
real ``corral serve`` child process, asserting the battery's invariants.

Tests that fail because of a defect listed in issue 12 are ``xfail(strict=True)`` naming the defect:
when a fix lands, the test passes, strict xfail turns that into a failure, and the mark comes off.
The long forms run with ``CORRAL_STRESS_LONG=1`` (test_long.py) or ``python benchmarks/reliability/run.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # benchmarks.reliability, imported as a package


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.stress)
