"""``corral bench``: tokens/s and time to first token, measured over a few streamed runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..probe.bench import BenchResult, benchmark
from .common import (
    ConfigOpt,
    DsnOpt,
    JsonOpt,
    ModelOpt,
    ProviderOpt,
    closing,
    connect,
    err,
    make_client,
    out,
    print_json,
    run,
)


def bench(
    model: ModelOpt = None,
    runs: Annotated[int, typer.Option("--runs", "-r", min=1, help="Measured requests; medians are reported.")] = 3,
    prompt_tokens: Annotated[int, typer.Option("--prompt-tokens", min=1, help="Prompt length, about.")] = 128,
    max_tokens: Annotated[int, typer.Option("--max-tokens", "-n", min=1, help="Tokens to generate per run.")] = 64,
    provider: ProviderOpt = None,
    dsn: DsnOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure prompt and generation tokens/s and time to first token (llama.cpp's own timings when sent)."""
    with closing(make_client(provider, dsn, model, config)) as client:
        connect(client)
        with progress_bar("bench") as progress:
            result = run(
                lambda: benchmark(
                    client, model, prompt_tokens=prompt_tokens, max_tokens=max_tokens, runs=runs, progress=progress
                )
            )
        if as_json:
            print_json(result.as_dict())
        else:
            out.print(_table(result))


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(r: BenchResult) -> Table:
    table = Table(
        "run", "prompt tok", "gen tok", "TTFT ms", "total ms", "prompt tok/s", "gen tok/s", "source",
        title=f"{r.model or 'default model'} on {r.provider} at {r.endpoint}",
        caption="tok/s from llama.cpp's timings" if r.source == "timings" else "tok/s from the wall clock",
    )  # fmt: skip
    for i, x in enumerate(r.runs, 1):
        table.add_row(
            str(i), str(x.prompt_tokens), str(x.completion_tokens), _num(x.ttft_ms, 0), _num(x.total_ms, 0),
            _num(x.prompt_tps), _num(x.generation_tps), x.source,
        )  # fmt: skip
    table.add_row(
        "[bold]median[/]", str(r.prompt_tokens), str(r.completion_tokens), _num(r.ttft_ms, 0), _num(r.total_ms, 0),
        _num(r.prompt_tps), f"[bold]{_num(r.generation_tps)}[/]", r.source,
    )  # fmt: skip
    return table


# shared with ``corral validate``
@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int, str], None]]:
    """Yields a ``progress(done, total, message)`` callback; silent when stderr is not a terminal,
    so that piped output (``--json | jq``) stays clean."""
    bar = Progress(
        TextColumn(f"[bold]{label}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = bar.add_task("", total=None)

    def update(done: int, total: int, message: str) -> None:
        bar.update(task, completed=done, total=total, description=message)

    with bar:
        yield update
