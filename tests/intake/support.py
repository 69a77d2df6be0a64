"""Helpers for the intake tests: a small organisation and a running intake app."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import nats
import yaml
from est_intake.app import create_app
from est_intake.settings import IntakeSettings
from est_shared.testing import serve
from fastapi import FastAPI

from tests.support import TRYGG_1

TOKENS = {"anna": "tok-anna", "bo": "tok-bo", "lena": "tok-lena", "admin": "tok-admin", "olle": "tok-olle",
          "kim": "tok-kim"}


def auth(who: str) -> dict[str, str]:
    """An Authorization header for a person of the test organisation."""
    return {"Authorization": f"Bearer {TOKENS[who]}"}


def make_org(muni: str = "vaxjo", area: str = "araby", other: str = "braas") -> dict[str, Any]:
    """A municipality with a weekly and a biweekly area, two actors and four people."""
    return {
        "municipalities": [{
            "id": muni, "name": "Växjö kommun", "analysis_period": "tertial",
            "areas": [
                {"id": area, "name": "Araby", "cadence": "weekly", "places": ["centrum", "skolgarden", "parkeringen"]},
                {"id": other, "name": "Braås", "cadence": "biweekly", "places": ["torget"]},
            ],
        }],
        "actors": [
            {"id": "vaxjohem", "name": "Växjöhem AB", "kind": "property_company"},
            {"id": "kommunen", "name": "Växjö kommun", "kind": "municipality"},
        ],
        "people": [
            {"id": "anna", "name": "Anna Andersson", "actor": "vaxjohem", "email": "anna@example.org",
             "roles": ["reporter"], "areas": [area], "token": TOKENS["anna"]},
            {"id": "bo", "name": "Bo Berg", "actor": "kommunen", "roles": ["reporter", "key_function"],
             "areas": [muni], "token": TOKENS["bo"]},
            {"id": "lena", "name": "Lena Lind", "actor": "kommunen", "roles": ["styrgrupp"], "areas": [muni],
             "token": TOKENS["lena"]},
            {"id": "admin", "name": "Admin", "actor": "kommunen", "roles": ["admin"], "token": TOKENS["admin"]},
        ],
        "subscriptions": [{"name": "ignored by the intake", "events": ["picture.published"]}],
    }


TEST_IDS = uuid.UUID("9f1c2b3a-4d5e-5f60-8a7b-1c2d3e4f5a6b")


def rid(name: str) -> str:
    """A report id (a UUID) of its own for a name, the same every time: for tests that name their reports."""
    return str(uuid.uuid5(TEST_IDS, name))


def report(area: str = "araby", **kw: Any) -> dict[str, Any]:
    """A valid report body with a fresh id."""
    body: dict[str, Any] = {"report_id": str(uuid.uuid4()), "area_id": area,
                            "answers": {"klotter": {"value": 2, "places": ["centrum"], "note": "nytt på garaget"},
                                        "skadegorelse": {"value": 1}}}
    body.update(kw)
    return body


async def last_event(url: str, subject: str) -> tuple[dict[str, str], dict[str, Any]]:
    """The newest event on a subject of EST_REPORTS: (headers, CloudEvent JSON)."""
    nc = await nats.connect(url)
    try:
        msg = await nc.jetstream().get_last_msg("EST_REPORTS", subject)
        return dict(msg.headers or {}), json.loads(msg.data)
    finally:
        await nc.close()


def settings_for(tmp_path: Path, nats_url: str, org: dict[str, Any] | None = None, **kw: Any) -> IntakeSettings:
    """Intake settings on a temp data dir, with the organisation written to a YAML file."""
    org_file = None
    if org is not None:
        org_file = tmp_path / "org.yaml"
        org_file.write_text(yaml.safe_dump(org, allow_unicode=True), encoding="utf-8")
    return IntakeSettings(nats_url=nats_url, data_dir=tmp_path / "var", org_file=org_file, publish_timeout=2.0,
                          log_level="WARNING", **kw)


@asynccontextmanager
async def running(settings: IntakeSettings) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """Run the intake app and yield an HTTP client on it and the app."""
    app = create_app(settings)
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=15) as client:
        yield client, app



def two_municipalities_org() -> dict[str, Any]:
    """``make_org`` with Växjö on its own checklist (``TRYGG_1``) and Alvesta on the standard one: olle
    reports for Alvesta's Centrum, kim for Araby (Växjö) and Alvesta's Centrum."""
    org = make_org()
    org["checklists"] = [TRYGG_1]
    org["municipalities"][0]["checklist"] = "vaxjo-trygg@1"
    org["municipalities"].append({"id": "alvesta", "name": "Alvesta kommun", "areas": [
        {"id": "alv-centrum", "name": "Alvesta centrum", "places": ["stationen"]}]})
    org["people"] += [
        {"id": "olle", "name": "Olle Ost", "actor": "kommunen", "roles": ["reporter"], "areas": ["alv-centrum"],
         "token": TOKENS["olle"]},
        {"id": "kim", "name": "Kim Kvist", "actor": "kommunen", "roles": ["reporter"],
         "areas": ["araby", "alv-centrum"], "token": TOKENS["kim"]},
    ]
    return org
