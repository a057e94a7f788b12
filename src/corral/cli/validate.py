"""``corral validate``: which capabilities a model really has, probe by probe, with evidence.

A report, not a gate: the exit code is 0 even when probes fail (1 only when corral itself cannot
run, e.g. a bad config). The report is stored so that failed capabilities are not advertised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..probe.validate import PROBES, ValidationReport
from ..probe.validate import validate as run_probes
from .bench import progress_bar
from .common import ConfigOpt, DsnOpt, JsonOpt, ProviderOpt, closing, connect, make_client, out, print_json, run

_STATUS = {"pass": "[green]PASS[/]", "fail": "[red]FAIL[/]", "skip": "[yellow]SKIP[/]"}


def validate(
    model: Annotated[
        str | None, typer.Argument(help="Model name, or a GGUF path (run embedded when no provider is given).")
    ] = None,
    provider: ProviderOpt = None,
    dsn: DsnOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    probe: Annotated[
        list[str] | None, typer.Option("--probe", help=f"Run only this probe (repeatable): {', '.join(PROBES)}.")
    ] = None,
) -> None:
    """Probe a model: chat, streaming, JSON schema, tool calls, reasoning, embeddings, GGUF integrity."""
    gguf = Path(model).expanduser() if model and model.endswith(".gguf") else None
    if gguf is not None and not (provider or dsn or config) and gguf.is_file():
        # A bare GGUF path: load it in the embedded engine, the only server that can answer for it.
        dsn = f"embedded://{gguf.resolve()}"
    with closing(make_client(provider, dsn, None, config)) as client:
        connect(client)
        with progress_bar("validate") as progress:
            report = run(lambda: run_probes(client, model, gguf_path=gguf, progress=progress, probes=probe or None))
        if as_json:
            print_json(report.as_dict())
        else:
            out.print(_table(report))


def _table(r: ValidationReport) -> Table:
    table = Table(
        "probe",
        "result",
        "evidence",
        title=f"{r.model or 'default model'} on {r.provider} at {r.endpoint}",
        caption=f"{len(r.passed)} passed, {len(r.failed)} failed, {len(r.skipped)} skipped",
    )
    for p in r.probes:
        table.add_row(p.name, _STATUS[p.status], escape(p.evidence))
    return table
