"""``corral health``: is the provider up? Exit code 0 only when it is."""

from __future__ import annotations

import time

import typer

from .common import ConfigOpt, DsnOpt, JsonOpt, ProviderOpt, closing, connect, make_client, out, print_json, run


def health(
    provider: ProviderOpt = None, dsn: DsnOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False
) -> None:
    """Check that the provider answers and its model is loaded."""
    with closing(make_client(provider, dsn, None, config)) as client:
        connect(client)
        started = time.perf_counter()
        report = run(client.health)
        ms = (time.perf_counter() - started) * 1000
        if as_json:
            print_json(
                {
                    "status": report.status,
                    "provider": report.provider,
                    "endpoint": report.endpoint,
                    "detail": report.detail,
                    "latency_ms": round(ms, 1),
                }
            )
        else:
            colour = {"ok": "green", "loading": "yellow"}.get(report.status, "red")
            detail = f" ({report.detail})" if report.detail else ""
            out.print(f"[{colour}]{report.status}[/] {report.provider} at {report.endpoint} in {ms:.0f} ms{detail}")
        if not report.ok:
            raise typer.Exit(1)
