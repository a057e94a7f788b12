"""``corral chat``: one-shot (streamed to the terminal) or an interactive conversation."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Annotated

import typer

from ..client import Client
from ..events import ContentDelta, Done, ReasoningDelta, ToolCallEnd
from ..manager.bundled import DEMO_MAX_TOKENS
from ..types import ChatResponse, Message
from .common import ConfigOpt, DsnOpt, JsonOpt, ModelOpt, ProviderOpt, closing, connect, err, make_client, out, run

DEFAULT_MAX_TOKENS = 512


def chat(
    prompt: Annotated[str | None, typer.Argument(help="The message; omit it for an interactive chat.")] = None,
    system: Annotated[str | None, typer.Option("--system", "-s", help="A system prompt.")] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option("--max-tokens", "-n", min=1, help="Most tokens to generate [default: 512; the demo model: 128]."),
    ] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", "-t", min=0.0, max=2.0)] = None,
    provider: ProviderOpt = None,
    dsn: DsnOpt = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Chat with a model. Streams the reply; without PROMPT, starts a conversation (Ctrl-D to end)."""
    with closing(make_client(provider, dsn, model, config)) as client:
        connect(client)
        if client.demo_model:
            err.print(
                "note: no model is configured: this is corral's bundled 270M demo model (expect weak answers); "
                "get a real one with `corral pull bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M` "
                "and chat with `--model bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M`",
                style="dim", markup=False,
            )  # fmt: skip
        if max_tokens is None:
            # The demo model is a base model that rarely stops: its engine's own cap (-n 128) bounds it.
            max_tokens = DEMO_MAX_TOKENS if client.demo_model else DEFAULT_MAX_TOKENS
        history: list[Message] = [Message.system(system)] if system else []
        if prompt is not None:
            if prompt == "-":
                prompt = sys.stdin.read()
            history.append(Message.user(prompt))
            response = _turn(client, history, max_tokens, temperature, as_json)
            if as_json:
                sys.stdout.write(json.dumps(asdict(response), default=str, indent=2) + "\n")
            return
        _repl(client, history, max_tokens, temperature)


def _turn(
    client: Client, history: list[Message], max_tokens: int, temperature: float | None, quiet: bool
) -> ChatResponse:
    def go() -> ChatResponse:
        with client.stream(history, max_tokens=max_tokens, temperature=temperature) as stream:
            in_reasoning = False
            for event in stream:
                if quiet:
                    continue
                if isinstance(event, ReasoningDelta):
                    in_reasoning = True
                    out.print(event.text, style="dim italic", end="")
                elif isinstance(event, ContentDelta):
                    if in_reasoning:
                        out.print()
                        in_reasoning = False
                    out.out(event.text, end="", highlight=False)
                elif isinstance(event, ToolCallEnd):
                    out.print(f"\n[tool call] {event.call.name}({event.call.arguments})", style="cyan")
                elif isinstance(event, Done):
                    out.print()
            return stream.final()

    response = run(go)
    if response.finish_reason == "length" and not quiet:
        limit = f"--max-tokens {max_tokens}" if response.usage.completion_tokens >= max_tokens else "the model's limit"
        err.print(f"(stopped at {limit})", style="dim")
    return response


def _repl(client: Client, history: list[Message], max_tokens: int, temperature: float | None) -> None:
    err.print(
        f"corral chat with {client.provider.name} at {client.provider.endpoint}. Ctrl-D or /exit to end.", style="dim"
    )
    while True:
        try:
            line = input("you> " if sys.stdin.isatty() else "")
        except EOFError:
            break
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        if line.strip() in ("/exit", "/quit"):
            break
        if not line.strip():
            continue
        history.append(Message.user(line))
        response = _turn(client, history, max_tokens, temperature, quiet=False)
        history.append(response.message)
