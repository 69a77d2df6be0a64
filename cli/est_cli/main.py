"""The ``est`` command: run the whole system, one service, or talk to a running system."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(name="est", help="EST Lägesbild: local crime-prevention collaboration on NATS JetStream.",
                  no_args_is_help=True, add_completion=False)
org_app = typer.Typer(help="The organisation (municipalities, areas, actors, people).", no_args_is_help=True)
app.add_typer(org_app, name="org")
aggregator_app = typer.Typer(help="The aggregator's projection.", no_args_is_help=True)
analysis_app = typer.Typer(help="The analysis service's projection.", no_args_is_help=True)
app.add_typer(aggregator_app, name="aggregator")
app.add_typer(analysis_app, name="analysis")

SERVICES = ("intake", "aggregator", "notifier", "analysis", "web")


@app.command()
def up(
    org: Annotated[Path | None, typer.Option(help="organisation file (YAML) to apply at start")] = None,
    demo: Annotated[bool, typer.Option(help="load a demo municipality with months of history")] = False,
    data_dir: Annotated[Path, typer.Option(help="where NATS, SQLite files, logs and the mail outbox live")] = Path(
        "var"),
) -> None:
    """Run the whole system on the embedded default: NATS JetStream, SQLite, the four services."""
    from est_cli.up import run_up

    raise typer.Exit(run_up(org=org, demo=demo, data_dir=data_dir))


@app.command("run")
def run_service(
    service: Annotated[str, typer.Argument(help="intake | aggregator | notifier | analysis | web")],
) -> None:
    """Run one service, configured from EST_* environment variables (production, replicas)."""
    if service not in SERVICES:
        typer.echo(f"unknown service {service!r}; choose one of {', '.join(SERVICES)}", err=True)
        raise typer.Exit(2)
    import uvicorn
    from est_shared.adapters.serving import ServerLimits, server_options

    module = importlib.import_module(f"est_{service}.app")
    settings = module.Settings()
    application = module.create_app(settings)
    uvicorn.run(application, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                lifespan="on", timeout_graceful_shutdown=10, **server_options(ServerLimits.of(settings)))


def _token(token: str | None) -> str:
    token = token or os.environ.get("EST_TOKEN")
    if not token:
        typer.echo("a token is needed: --token or EST_TOKEN", err=True)
        raise typer.Exit(2)
    return token


@org_app.command("apply")
def org_apply(
    file: Annotated[Path, typer.Argument(help="organisation file (YAML)", exists=True, dir_okay=False)],
    url: Annotated[str, typer.Option(envvar="EST_INTAKE_URL", help="intake base URL")] = "http://127.0.0.1:8000",
    token: Annotated[str | None, typer.Option(help="an admin token (or EST_TOKEN)")] = None,
) -> None:
    """Apply an organisation file to a running system (declarative, idempotent)."""
    import httpx

    r = httpx.put(f"{url.rstrip('/')}/v1/admin/org", content=file.read_bytes(), timeout=30,
                  headers={"Authorization": f"Bearer {_token(token)}", "Content-Type": "application/yaml"})
    if r.status_code >= 400:
        typer.echo(f"refused ({r.status_code}): {r.text}", err=True)
        raise typer.Exit(1)
    body = r.json()
    typer.echo(f"organisation version {body.get('version')}")
    for change in body.get("changes", []):
        typer.echo(f"  {change}")


@app.command("import")
def import_reports(
    file: Annotated[Path, typer.Argument(help="reports as CSV or JSON Lines", exists=True, dir_okay=False)],
    url: Annotated[str, typer.Option(envvar="EST_INTAKE_URL", help="intake base URL")] = "http://127.0.0.1:8000",
    token: Annotated[str | None, typer.Option(help="an admin token (or EST_TOKEN)")] = None,
    namespace: Annotated[str | None, typer.Option(
        help="name of the source of the file's own report ids, which are sent as UUIDv5 under it (default "
             "est-import); give each source whose ids may overlap another's its own")] = None,
) -> None:
    """Import historical reports through the same validation as the API, with a progress bar."""
    from est_cli.importer import import_file

    result = import_file(file, url=url, token=_token(token), namespace=namespace)
    typer.echo(json.dumps(result))
    if result["rejected"]:
        raise typer.Exit(1)


@aggregator_app.command("rebuild")
def aggregator_rebuild() -> None:
    """Recompute every picture from the report stream (run with the aggregator stopped), with a progress bar."""
    from est_aggregator.rebuild import run_cli

    run_cli()


@analysis_app.command("rebuild")
def analysis_rebuild() -> None:
    """Rebuild the picture projection and problem states from the picture stream (service stopped)."""
    import asyncio

    from est_analysis.app import Settings, rebuild
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]Rebuilding the analysis projection"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn()) as bar:
        task = bar.add_task("rebuild", total=None)
        result = asyncio.run(rebuild(Settings(), progress=lambda done, total: bar.update(
            task, completed=done, total=total)))
    typer.echo(f"{result.events} events replayed in {result.seconds:.1f} s: {result.pictures} pictures, "
               f"{result.open_problems} open persistent problems")


def main() -> None:
    app(prog_name="est")


if __name__ == "__main__":
    main()
