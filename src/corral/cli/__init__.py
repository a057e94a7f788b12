"""The ``corral`` command line. One module per command; this one wires them into one app."""

from __future__ import annotations

import typer

from . import chat, config_cmd, health, models, serve

app = typer.Typer(
    name="corral",
    help="One interface to local llama.cpp and cloud LLMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("chat")(chat.chat)
app.command("models")(models.models)
app.command("health")(health.health)
app.command("config")(config_cmd.config)
app.command("serve")(serve.serve)


def main() -> None:
    app()
