"""``corral models``: what the provider serves."""

from __future__ import annotations

from rich.table import Table

from .common import ConfigOpt, DsnOpt, JsonOpt, ProviderOpt, closing, connect, make_client, out, print_json, run


def models(
    provider: ProviderOpt = None, dsn: DsnOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False
) -> None:
    """List the models the provider serves."""
    with closing(make_client(provider, dsn, None, config)) as client:
        connect(client)
        found = run(client.models)
        if as_json:
            print_json(
                [
                    {"id": m.id, "owned_by": m.owned_by, "context_length": m.context_length, "provider": m.provider}
                    for m in found
                ]
            )
            return
        table = Table("model", "context", "owned by", title=f"{client.provider.name} at {client.provider.endpoint}")
        for m in found:
            table.add_row(m.id, str(m.context_length or "?"), m.owned_by)
        out.print(table)
