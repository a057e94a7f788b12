"""What every command shares: building the Client from options, printing, and failing cleanly."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from ..client import Client
from ..errors import CorralError

T = TypeVar("T")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ProviderOpt = Annotated[
    str | None, typer.Option("--provider", "-p", help="Provider name from the config, or a type (llamacpp, openai…).")
]
DsnOpt = Annotated[str | None, typer.Option("--dsn", help="A DSN such as llamacpp://127.0.0.1:8080.")]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Model name to request.")]
ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="TOML config file (default: $CORRAL_CONFIG).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def make_client(provider: str | None, dsn: str | None, model: str | None, config: str | None) -> Client:
    if dsn and provider:
        fail("give either --dsn or --provider, not both")
    return run(lambda: Client(dsn or provider, model=model, config=config))


def connect(client: Client) -> None:
    """Resolve the provider (this may start the embedded engine) with a status line on a terminal."""
    if client.config.type in ("zero-setup", "embedded") and err.is_terminal:
        with err.status("Starting the local model…"):
            run(lambda: client.provider)
    else:
        run(lambda: client.provider)


def run(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except CorralError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def fail(message: str, code: int = 1) -> NoReturn:
    # One line, no traceback: the message is what the user needs.
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False) if err.is_terminal else print(
        f"error: {message}", file=sys.stderr
    )
    raise typer.Exit(code)


@contextmanager
def closing(client: Client) -> Iterator[Client]:
    try:
        yield client
    finally:
        client.close()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
