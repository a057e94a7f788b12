"""Defects of issue 12 that today's gateway still has, as strict xfail marks for the battery's tests.

When the lead's fix for one lands, its tests pass, strict xfail reports that as a failure, and the
mark (or the entry below) comes off.
"""

from __future__ import annotations

import pytest


def issue12(number: int | str, what: str) -> pytest.MarkDecorator:
    label = f"#{number}" if isinstance(number, int) else number
    return pytest.mark.xfail(strict=True, reason=f"issue 12 {label}: {what}")


def fault_defect(fault: str, ptype: str, call: str, check: str) -> pytest.MarkDecorator | None:
    """The defect that keeps one fault scenario (benchmarks/reliability/faults.py) from reaching the
    client as an error in its protocol (``check="answer"``) or from being logged as one (``"log"``)."""
    return None
