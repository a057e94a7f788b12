"""``corral models``: what the provider serves (with each model's load status where the server
manages models), or with ``--local`` the models pulled into corral's cache."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .common import ConfigOpt, DsnOpt, JsonOpt, ProviderOpt, closing, connect, make_client, out, print_json, run
from .scan import human_size


def models(
    provider: ProviderOpt = None,
    dsn: DsnOpt = None,
    config: ConfigOpt = None,
    local: Annotated[bool, typer.Option("--local", help="List the models pulled into corral's cache.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List the models the provider serves (or, with --local, the pulled ones)."""
    if local:
        _local(as_json)
        return
    from ..manager.lifecycle import from_router_models

    with closing(make_client(provider, dsn, None, config)) as client:
        connect(client)
        found = run(client.models)
        states = {s.id: s for s in from_router_models([m.meta for m in found])}
        if as_json:
            print_json(
                [
                    {"id": m.id, "owned_by": m.owned_by, "context_length": m.context_length, "provider": m.provider,
                     **({"status": states[m.id].status} if m.id in states else {})}
                    for m in found
                ]
            )  # fmt: skip
            return
        table = Table("model", "context", "owned by", title=f"{client.provider.name} at {client.provider.endpoint}")
        if states:
            table.add_column("status")
        for m in found:
            row = [m.id, str(m.context_length or "?"), m.owned_by]
            table.add_row(*row, *([states[m.id].status if m.id in states else ""] if states else []))
        out.print(table)


def _local(as_json: bool) -> None:
    from ..hub import hub_dir, local_models

    pulled = local_models()
    if as_json:
        print_json([m.as_dict() for m in pulled])
        return
    if not pulled:
        out.print(f"no pulled model in {hub_dir()}: corral pull org/repo:QUANT", markup=False)
        return
    table = Table(title=f"pulled models in {hub_dir()}")
    table.add_column("name", no_wrap=True)  # what --model takes: never cut
    for column in ("size", "parts", "mmproj", "pulled"):
        table.add_column(column)
    table.add_column("path", overflow="fold")
    for m in pulled:
        d = m.as_dict()
        table.add_row(m.name, human_size(m.size), str(len(m.files)), "yes" if m.mmproj else "no",
                      d["pulled_at"][:10], str(m.path))  # fmt: skip
    out.print(table)
