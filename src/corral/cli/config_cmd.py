"""``corral config``: the effective configuration, secrets masked."""

from __future__ import annotations

from ..config import load_settings
from ..registry import resolve
from .common import ConfigOpt, DsnOpt, JsonOpt, ProviderOpt, out, print_json, run


def config(
    provider: ProviderOpt = None, dsn: DsnOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False
) -> None:
    """Show the effective configuration (file + environment), secrets masked."""
    settings = run(lambda: load_settings(config))
    chosen = run(lambda: resolve(dsn or provider, config=settings))
    view = settings.display()
    view["selected"] = (
        {
            "name": "default",
            "type": "zero-setup",
            "detail": "llama-server at http://127.0.0.1:8080 if it answers, else the embedded engine "
            "with the bundled model",
        }
        if chosen.type == "zero-setup"
        else {"name": chosen.name, **chosen.display()}
    )
    if as_json:
        print_json(view)
        return
    out.print(f"[bold]config file:[/] {view['source'] or '(none)'}")
    out.print(f"[bold]default provider:[/] {view['default_provider'] or '(not set)'}")
    for name, fields in view["providers"].items():
        out.print(f"[bold]\\[providers.{name}][/]")
        for key, value in fields.items():
            out.print(f"  {key} = {value!r}")
    sel = view["selected"]
    out.print(f"[bold]selected:[/] {sel['name']} ({sel['type']})")
