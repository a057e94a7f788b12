"""``corral doctor``: what is wrong with this set-up, and how to fix it. Exit code 1 on a failure."""

from __future__ import annotations

import typer
from rich.table import Table

from .common import ConfigOpt, JsonOpt, out, print_json
from .doctor_checks import run_checks

_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def doctor(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Check the config, each provider (reachable, key accepted, models, llama.cpp features), the
    GGUF files and engine flags of managed models, free ports, the model cache and the installed extras."""
    findings = run_checks(config)
    failed = any(f.level == "fail" for f in findings)
    if as_json:
        print_json({"ok": not failed, "checks": [f.as_dict() for f in findings]})
    else:
        table = Table("check", "", "detail", "fix", title="corral doctor", show_lines=False)
        for f in findings:
            table.add_row(f.check, f"[{_STYLE[f.level]}]{f.level}[/]", f.detail, f.fix)
        out.print(table)
        counts = {lvl: sum(1 for f in findings if f.level == lvl) for lvl in _STYLE}
        out.print(f"{counts['ok']} ok, {counts['warn']} warning(s), {counts['fail']} failure(s)")
    if failed:
        raise typer.Exit(1)
