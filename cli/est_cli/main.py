"""The ``est`` command: run the whole system, one service, or talk to a running system."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

app = typer.Typer(name="est", help="EST Lägesbild: local crime-prevention collaboration on NATS JetStream.",
                  no_args_is_help=True, add_completion=False)
org_app = typer.Typer(help="The organisation (municipalities, areas, actors, people).", no_args_is_help=True)
app.add_typer(org_app, name="org")
token_app = typer.Typer(help="Personal API tokens: issue (shown once), list, revoke.", no_args_is_help=True)
app.add_typer(token_app, name="token")
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
    from est_cli.procs import serve

    serve(service)


def _token(token: str | None) -> str:
    token = token or os.environ.get("EST_TOKEN")
    if not token:
        typer.echo("a token is needed: --token or EST_TOKEN", err=True)
        raise typer.Exit(2)
    return token


def _intake(url: str | None) -> str:
    """The intake's base URL: --url or EST_INTAKE_URL, else where ``est up`` runs it (EST_INTAKE_PORT, EST_HOST)."""
    from est_cli.up import service_url

    return (url or service_url("intake")).rstrip("/")


IntakeUrl = Annotated[str | None, typer.Option(
    envvar="EST_INTAKE_URL", help="intake base URL (default: as est up runs it, EST_INTAKE_PORT and EST_HOST, "
                                  "else http://127.0.0.1:8000)")]
AdminToken = Annotated[str | None, typer.Option(help="an admin token (or EST_TOKEN)")]
PersonId = Annotated[str, typer.Argument(help="the person's id")]


def _tokens_of(url: str | None, person: str) -> str:
    """The URL of a person's issued tokens at the intake."""
    return f"{_intake(url)}/v1/admin/people/{quote(person, safe='')}/tokens"


def _call(method: str, url: str, token: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
    """One request to the intake as the token's person: the JSON answer, or a message and exit 1."""
    import httpx

    try:
        r = httpx.request(method, url, timeout=30, headers={"Authorization": f"Bearer {token}", **(headers or {})},
                          **kw)
    except httpx.TransportError as exc:
        typer.echo(f"kunde inte nå {url} / could not reach {url}: {exc}", err=True)
        raise typer.Exit(1) from None
    if r.status_code >= 400:
        typer.echo(f"avvisades / refused ({r.status_code}): {r.text}", err=True)
        raise typer.Exit(1)
    return r.json()


@org_app.command("apply")
def org_apply(
    file: Annotated[Path, typer.Argument(help="organisation file (YAML)", exists=True, dir_okay=False)],
    url: IntakeUrl = None,
    token: AdminToken = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show the changes it would make; store nothing")] = False,
) -> None:
    """Apply an organisation file to a running system (declarative, idempotent)."""
    base = _intake(url)
    body = _call("PUT", f"{base}/v1/admin/org", _token(token), content=file.read_bytes(),
                 params={"dry_run": "true"} if dry_run else None, headers={"Content-Type": "application/yaml"})
    if dry_run:
        typer.echo(f"Provkörning mot {base}: inget sparades / Dry run against {base}: nothing was stored")
        if body.get("changed"):
            typer.echo(f"skulle bli organisationsversion {body.get('version')} / would become organisation "
                       f"version {body.get('version')}")
        else:
            typer.echo(f"inga ändringar, version {body.get('version')} gäller / no changes, version "
                       f"{body.get('version')} stays")
    else:
        typer.echo(f"Skickade organisationsfilen till {base} / Sent the organisation file to {base}")
        typer.echo(f"organisation version {body.get('version')}")
    for change in body.get("changes", []):
        typer.echo(f"  {change}")


def _expiry(text: str | None) -> str | None:
    """--expires as the API takes it: a date (the token works through that day, EST_TIMEZONE) or an ISO time
    with timezone."""
    from datetime import date, datetime, time, timedelta
    from zoneinfo import ZoneInfo

    from est_shared.settings import ServiceSettings

    if text is None:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            at = None
        if at is None or at.tzinfo is None:
            typer.echo("--expires: ett datum (2027-06-30) eller en tid med tidszon (2027-06-30T12:00:00+02:00) / "
                       "a date (2027-06-30) or a time with timezone (2027-06-30T12:00:00+02:00)", err=True)
            raise typer.Exit(2) from None
        return at.isoformat()
    zone = ZoneInfo(ServiceSettings().timezone)
    return datetime.combine(day + timedelta(days=1), time(0), zone).isoformat()


@token_app.command("issue")
def token_issue(
    person: PersonId,
    name: Annotated[str, typer.Option(help="what the token is for, e.g. the device")],
    expires: Annotated[str | None, typer.Option(
        help="last day it works (YYYY-MM-DD, local time) or an ISO time with timezone; default: until revoked")] = None,
    url: IntakeUrl = None,
    token: AdminToken = None,
) -> None:
    """Issue a person a personal API token: printed once, alone on standard output."""
    body = _call("POST", _tokens_of(url, person), _token(token), json={"name": name, "expires_at": _expiry(expires)})
    until = body.get("expires_at") or "återkallas / revoked"
    typer.echo(f"token {body['id']} för/for {person} ({name}), gäller till/valid until {until}; visas bara nu / "
               "shown only now:", err=True)
    typer.echo(body["token"])


@token_app.command("revoke")
def token_revoke(person: PersonId,
                 token_id: Annotated[str, typer.Argument(help="the token's id (est token list PERSON)")],
                 url: IntakeUrl = None, token: AdminToken = None) -> None:
    """Revoke a person's issued token: every service refuses it within seconds."""
    body = _call("DELETE", f"{_tokens_of(url, person)}/{quote(token_id, safe='')}", _token(token))
    typer.echo(f"återkallade/revoked {token_id} ({person}), organisation version {body.get('org_version')}")


@token_app.command("list")
def token_list(person: PersonId, url: IntakeUrl = None, token: AdminToken = None) -> None:
    """A person's issued tokens (ids, names, dates; never the tokens)."""
    body = _call("GET", _tokens_of(url, person), _token(token))
    for t in body.get("tokens", []):
        state = "utgången/expired" if t["expired"] else "giltig/valid"
        typer.echo(f"{t['id']}  {t['name']}  skapad/created {t['created_at']}  upphör/expires "
                   f"{t['expires_at'] or '-'}  senast använd/last used {t['last_used_at'] or '-'}  {state}")


@app.command("import")
def import_reports(
    file: Annotated[Path, typer.Argument(help="reports as CSV or JSON Lines", exists=True, dir_okay=False)],
    url: IntakeUrl = None,
    token: AdminToken = None,
    namespace: Annotated[str | None, typer.Option(
        help="name of the source of the file's own report ids, which are sent as UUIDv5 under it (default "
             "est-import); give each source whose ids may overlap another's its own")] = None,
) -> None:
    """Import historical reports through the same validation as the API, with a progress bar."""
    from est_cli.importer import import_file

    result = import_file(file, url=_intake(url), token=_token(token), namespace=namespace)
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
