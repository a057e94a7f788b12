"""The ``corral`` command line. One module per command; this one wires them into one app."""

from __future__ import annotations

import typer

from . import bench, chat, config_cmd, doctor_cmd, health, mcp_cmd, models, pull, scan, serve, validate

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
app.command("mcp")(mcp_cmd.mcp)
app.command("scan")(scan.scan)
app.command("bench")(bench.bench)
app.command("validate")(validate.validate)
app.command("pull")(pull.pull)
app.command("rm")(pull.rm)
app.command("doctor")(doctor_cmd.doctor)


def main() -> None:
    app()
