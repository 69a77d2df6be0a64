"""``est import``: historical reports from CSV or JSON Lines, through the intake's import API."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

CHUNK = 500


def read_reports(path: Path) -> list[dict[str, Any]]:
    """JSON Lines: one report per line. CSV: report_id, area_id, period, reporter_id, submitted_at,
    checklist, nothing_to_report, note, and ``answers`` as JSON (or one column per item code)."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    rows = list(csv.DictReader(text.splitlines()))
    out = []
    fixed = {"report_id", "area_id", "period", "reporter_id", "submitted_at", "checklist", "nothing_to_report",
             "note", "answers", "supersedes"}
    for row in rows:
        rep: dict[str, Any] = {k: v for k, v in row.items() if k in fixed and v not in (None, "")}
        rep["nothing_to_report"] = str(row.get("nothing_to_report", "")).lower() in ("1", "true", "yes", "ja")
        answers = json.loads(row["answers"]) if row.get("answers") else {}
        for k, v in row.items():
            if k not in fixed and v not in (None, ""):
                answers[k] = {"value": v.lower() in ("true", "ja", "yes") if v.lower() in (
                    "true", "false", "ja", "nej", "yes", "no") else int(v)}
        rep["answers"] = answers
        out.append(rep)
    return out


def post_import(reports: list[dict[str, Any]], *, url: str, token: str, label: str = "Importing") -> dict[str, Any]:
    """POST in chunks of 500; returns counts and the first problems."""
    accepted = rejected = 0
    problems: list[Any] = []
    with httpx.Client(base_url=url, timeout=120, headers={"Authorization": f"Bearer {token}"}) as client, Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
    ) as progress:
        task = progress.add_task(label, total=len(reports))
        for i in range(0, len(reports), CHUNK):
            chunk = reports[i:i + CHUNK]
            r = client.post("/v1/admin/import", json={"reports": chunk})
            if r.status_code >= 400:
                rejected += len(chunk)
                problems.append(r.json() if r.headers.get("content-type", "").endswith("json") else r.text)
            else:
                for res in r.json().get("results", []):
                    if 200 <= int(res.get("status", 500)) < 300:
                        accepted += 1
                    else:
                        rejected += 1
                        if len(problems) < 20:
                            problems.append(res)
            progress.advance(task, len(chunk))
    return {"accepted": accepted, "rejected": rejected, "problems": problems}


def import_file(path: Path, *, url: str, token: str) -> dict[str, Any]:
    reports = read_reports(path)
    return post_import(reports, url=url, token=token, label=f"Importing {path.name}")
