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
    draft: Annotated[
        str | None,
        typer.Option(
            "--draft",
            help="A draft model (GGUF path or hf://org/repo:QUANT): measure the embedded "
            "engine with and without speculative decoding (--model: the target GGUF, default the bundled).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure prompt and generation tokens/s and time to first token (llama.cpp's own timings when sent)."""
    if draft is not None:
        _speculative(model, draft, runs, prompt_tokens, max_tokens, as_json)
        return
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


def _speculative(model: str | None, draft: str, runs: int, prompt_tokens: int, max_tokens: int, as_json: bool) -> None:
    """The same target on the embedded engine twice, without and with ``-md draft``: tokens/s of each."""
    from ..client import Client
    from ..hub import resolve_model
    from ..manager.bundled import bundled_model_path
    from ..manager.engine import DEFAULT_ENGINE_ARGS

    target = run(lambda: resolve_model(model)[0] if model else bundled_model_path())
    draft_path = run(lambda: resolve_model(draft)[0])
    results: dict[str, BenchResult] = {}
    for label, extra in (("baseline", ()), ("speculative", ("-md", str(draft_path)))):
        table = {"type": "embedded", "gguf": str(target), "args": [*DEFAULT_ENGINE_ARGS, *extra]}
        with closing(run(lambda t=table: Client("bench", config={"providers": {"bench": t}}))) as client:  # type: ignore[misc]
            connect(client)
            with progress_bar(f"bench {label}") as progress:
                results[label] = run(
                    lambda c=client, p=progress: benchmark(  # type: ignore[misc]
                        c, None, prompt_tokens=prompt_tokens, max_tokens=max_tokens, runs=runs, progress=p
                    )
                )
    base, spec = results["baseline"].generation_tps, results["speculative"].generation_tps
    speedup = round(spec / base, 2) if base and spec else None
    if as_json:
        print_json(
            {
                "target": str(target),
                "draft": str(draft_path),
                "speedup": speedup,
                **{k: v.as_dict() for k, v in results.items()},
            }
        )
        return
    for label, result in results.items():
        out.print(
            _table(
                result,
                title=f"{label}: {target.name}" + (f" + draft {draft_path.name}" if label == "speculative" else ""),
            )
        )
    out.print(
        f"generation: {_num(base)} tok/s without the draft, {_num(spec)} tok/s with it"
        + (f" (x{speedup})" if speedup else "")
    )


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(r: BenchResult, title: str | None = None) -> Table:
    table = Table(
        "run", "prompt tok", "gen tok", "TTFT ms", "total ms", "prompt tok/s", "gen tok/s", "source",
        title=title or f"{r.model or 'default model'} on {r.provider} at {r.endpoint}",
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
