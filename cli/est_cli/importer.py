"""``est import``: historical reports from CSV or JSON Lines, through the intake's import API.

Rows go to ``POST /v1/admin/import`` in chunks of 500 with a progress bar. Every refused row is
listed at the end (row number, report id, problem) and written to ``FILE.errors.jsonl``. Running
the same file twice is safe: identical rows are answered from the intake's idempotency store and
count as accepted (already).

The intake takes only UUIDs as report ids. A file's own ids (``1``, ``imp-1``, an export's row
numbers) are sent as UUIDv5 of the id under the import's namespace, itself UUIDv5 of
``IMPORT_NAMESPACE`` and a name (``--namespace``, default ``DEFAULT_NAMESPACE``): the same id
always gets the same UUID, so a second run is still idempotent and ``supersedes`` still finds the
row it corrects. Ids that are UUIDs already are sent as they are.
"""

from __future__ import annotations

import csv
import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from est_intake.reports.domain import UUID_PATTERN
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

CHUNK = 500
IMPORT_NAMESPACE = uuid.UUID("6d1f4c2e-8b3a-5e07-9c45-e57e57a1a9b0")
"""The root of every import namespace (fixed: changing it would give every imported row a new id)."""
DEFAULT_NAMESPACE = "est-import"
_UUID = re.compile(UUID_PATTERN)
FIXED = ("report_id", "area_id", "period", "reporter_id", "submitted_at", "checklist", "nothing_to_report",
         "note", "answers", "supersedes")
TRUE = ("true", "ja", "yes", "1")
FALSE = ("false", "nej", "no", "0")


Rows = list[tuple[int, dict[str, Any] | None, str | None]]


class RowError(ValueError):
    """A row that cannot be read at all (sent nowhere, reported with its row number)."""


def _csv_report(row: dict[str, Any]) -> dict[str, Any]:
    """One CSV row as a report: fixed columns, ``answers`` as JSON and/or one column per item code."""
    rep: dict[str, Any] = {k: v for k, v in row.items() if k in FIXED and v not in (None, "")}
    rep["nothing_to_report"] = str(row.get("nothing_to_report") or "").strip().lower() in TRUE
    answers: dict[str, Any] = {}
    if row.get("answers"):
        try:
            answers = json.loads(row["answers"])
        except ValueError as exc:
            raise RowError(f"the answers column is not JSON: {exc}") from exc
        if not isinstance(answers, dict):
            raise RowError("the answers column must be a JSON object")
    for k, v in row.items():
        if k is None or k in FIXED or v in (None, ""):
            continue
        text = str(v).strip()
        if text.lower() in TRUE[:3] or text.lower() in FALSE[:3]:
            answers[k] = {"value": text.lower() in TRUE}
        else:
            try:
                answers[k] = {"value": int(text)}
            except ValueError as exc:
                raise RowError(f"column {k!r}: {text!r} is not a number or yes/no") from exc
    rep["answers"] = answers
    return rep


def read_rows(path: Path) -> Rows:
    """(row number, report or None, why it could not be read). Row numbers are file lines (CSV: header is 1)."""
    text = path.read_text(encoding="utf-8-sig")
    out: Rows = []
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as exc:
                out.append((n, None, f"not valid JSON: {exc}"))
                continue
            if isinstance(item, dict):
                out.append((n, item, None))
            else:
                out.append((n, None, "a line must be a JSON object"))
        return out
    reader = csv.DictReader(text.splitlines())
    for row in reader:
        n = reader.line_num
        try:
            out.append((n, _csv_report(row), None))
        except RowError as exc:
            out.append((n, None, str(exc)))
    return out


def import_namespace(name: str = DEFAULT_NAMESPACE) -> uuid.UUID:
    """The namespace of an import's ids: one per source whose own ids may overlap another's."""
    return uuid.uuid5(IMPORT_NAMESPACE, name)


def report_uuid(row_id: str, namespace: uuid.UUID) -> str:
    """The UUID a file's own report id is sent as (a UUID stays as it is)."""
    return row_id if _UUID.match(row_id) else str(uuid.uuid5(namespace, row_id))


def with_uuids(rows: Rows, namespace: uuid.UUID) -> tuple[Rows, dict[str, str]]:
    """Rows whose ``report_id`` and ``supersedes`` are UUIDs, and each sent UUID's id in the file."""
    out: Rows = []
    shown: dict[str, str] = {}
    for n, rep, why in rows:
        if rep is not None:
            rep = dict(rep)
            for key in ("report_id", "supersedes"):
                value = rep.get(key)
                if isinstance(value, str) and value:
                    rep[key] = report_uuid(value, namespace)
                    shown[rep[key]] = value
        out.append((n, rep, why))
    return out, shown


def read_reports(path: Path) -> list[dict[str, Any]]:
    """The readable reports of a file (rows that cannot be read are left out)."""
    return [rep for _, rep, _ in read_rows(path) if rep is not None]


def _problem_text(problem: Any) -> str:
    if not isinstance(problem, dict):
        return str(problem)[:500]
    text = str(problem.get("detail") or problem.get("title") or "")
    errors = problem.get("errors") or []
    fields = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors if isinstance(e, dict))
    return f"{text} ({fields})" if fields else text


def post_import(rows: Rows | list[dict[str, Any]], *, url: str, token: str, label: str = "Importing",
                console: Console | None = None) -> dict[str, Any]:
    """POST readable rows (or plain reports, numbered from 1) in chunks of 500; counts and per-row errors."""
    numbered: list[tuple[int, dict[str, Any] | None, str | None]] = (
        [(n, rep, None) for n, rep in enumerate(rows, start=1) if isinstance(rep, dict)]
        if rows and isinstance(rows[0], dict) else [row for row in rows if isinstance(row, tuple)])
    rows = numbered
    accepted = already = 0
    errors: list[dict[str, Any]] = [{"row": n, "report_id": None, "status": None, "problem": why}
                                    for n, rep, why in rows if rep is None]
    sendable = [(n, rep) for n, rep, _ in rows if rep is not None]
    console = console or Console(stderr=True)
    with httpx.Client(base_url=url.rstrip("/"), timeout=120,
                      headers={"Authorization": f"Bearer {token}"}) as client, Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(label, total=len(rows))
        progress.advance(task, len(rows) - len(sendable))
        for i in range(0, len(sendable), CHUNK):
            chunk = sendable[i:i + CHUNK]
            try:
                r = client.post("/v1/admin/import", json={"reports": [rep for _, rep in chunk]})
            except httpx.HTTPError as exc:
                r = None
                whole = f"the intake could not be reached: {exc.__class__.__name__}: {exc}"
            if r is not None and r.status_code < 400:
                for (n, rep), res in zip(chunk, r.json().get("results", []), strict=False):
                    status = int(res.get("status", 500))
                    if 200 <= status < 300:
                        accepted += 1
                        already += bool(res.get("replayed"))
                        continue
                    errors.append({"row": n, "report_id": rep.get("report_id"), "status": status,
                                   "problem": _problem_text(res.get("problem"))})
            else:
                if r is not None:
                    try:
                        whole = _problem_text(r.json())
                    except ValueError:
                        whole = r.text[:500]
                    if r.status_code in (401, 403):
                        raise SystemExit(f"import refused ({r.status_code}): {whole}")
                for n, rep in chunk:
                    errors.append({"row": n, "report_id": rep.get("report_id"),
                                   "status": r.status_code if r is not None else None, "problem": whole})
            progress.advance(task, len(chunk))
    errors.sort(key=lambda e: e["row"])
    return {"rows": len(rows), "accepted": accepted, "already": already, "rejected": len(errors),
            "errors": errors, "problems": errors[:20]}


def errors_path(path: Path) -> Path:
    """Where the per-row error report of an import goes: ``FILE.errors.jsonl`` next to it."""
    return path.with_name(path.name + ".errors.jsonl")


def import_file(path: Path, *, url: str, token: str, namespace: str | None = None) -> dict[str, Any]:
    """Import a file, print the per-row error report and write it to ``FILE.errors.jsonl``."""
    rows, shown = with_uuids(read_rows(path), import_namespace(namespace or DEFAULT_NAMESPACE))
    console = Console(stderr=True)
    result = post_import(rows, url=url, token=token, label=f"Importing {path.name}", console=console)
    for e in result["errors"]:  # the ids as the file has them
        e["report_id"] = shown.get(e["report_id"], e["report_id"])
    out = errors_path(path)
    with out.open("w", encoding="utf-8") as f:
        for e in result["errors"]:
            f.write(json.dumps(e, ensure_ascii=False) + "\n")
    result["errors_file"] = str(out)
    if result["errors"]:
        print(f"{len(result['errors'])} of {len(rows)} rows refused (also in {out}):", file=sys.stderr)
        for e in result["errors"]:
            print(f"  row {e['row']}  {e['report_id'] or '-'}  {e['status'] or '-'}  {e['problem']}",
                  file=sys.stderr)
    else:
        print(f"all {len(rows)} rows accepted (new or already imported)", file=sys.stderr)
    summary = {k: result[k] for k in ("rows", "accepted", "already", "rejected", "errors_file")}
    return {**summary, "problems": result["errors"][:20]}
