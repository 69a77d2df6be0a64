"""The yearly lägesbild and åtgärdsplan (lag 2023:196): an analysis of the period ``2026`` over the year's
published pictures, with the action plan built from the measures decided (what, where, problems, who,
resources, when, follow-up, effect so far), as HTML, DOCX and PDF, each read as its reader reads it."""

from __future__ import annotations

import io
import re
import shutil
from typing import Any

import docx
import httpx
import nats
from est_analysis.strategic import db
from est_shared.bus import publish_event
from est_shared.periods import Period
from est_shared.subjects import picture_published
from pypdf import PdfReader

from tests.analysis.support import auth, org, picture_event, unique
from tests.support import eventually

YEAR_WEEKS = [p.id for p in Period.parse("2026").reporting_periods("weekly")]


async def test_the_yearly_picture_and_action_plan(service: Any, nats_url: str) -> None:
    m, a = unique("m"), unique("a")
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        async with service(m) as (base, app):
            await app.state.runtime.apply_org(org(m, [a]))
            # gatherings high through spring, quiet after the measure began in week 20
            for i, week in enumerate(YEAR_WEEKS[:30]):
                high = 5 <= i < 19
                await publish_event(js, picture_published(m, a), picture_event(
                    m, a, week, {"samling": (3 if high else 1, "high" if high else None)}))
            async with httpx.AsyncClient(base_url=base, timeout=120) as c:
                measure = {"title": "Fältvandringar kvällstid", "description": "Fritidsgården och polisen går "
                           "tillsammans fredagar.", "area_id": a, "items": ["samling"],
                           "responsible_actor": f"actor-{m}", "decided_by": "Styrgruppen 2026-05-04",
                           "start": Period.parse(YEAR_WEEKS[19]).start.isoformat(), "status": "active",
                           "resources": {"hours": 120, "money_sek": 45000}}
                r = await c.post("/v1/measures", json=measure, headers=auth("styr", m))
                assert r.status_code == 201, r.text
                r = await c.patch(f"/v1/measures/{r.json()['id']}", json={
                    "resources": {"hours": 160, "money_sek": 45000}, "reason": "Fler kvällar under sommaren"},
                    headers=auth("styr", m))
                assert r.status_code == 200, r.text

                async def pictures_in() -> bool:
                    async with app.state.analysis.sessions() as s:
                        return len(await db.area_pictures(s, a)) == 30

                await eventually(pictures_in, timeout=20)
                got = await c.post("/v1/analyses", json={"municipality_id": m, "period": "2026"},
                                   headers=auth("styr", m))
                assert got.status_code == 201, got.text
                body = got.json()
                assert body["kind"] == "year" and body["period"] == "2026"
                assert body["areas"][0]["reporting_periods"] == YEAR_WEEKS
                [problem] = body["persistent_problems"]
                assert problem["item"] == "samling"
                assert (await c.post("/v1/analyses", json={"municipality_id": m, "period": "2026-X"},
                                     headers=auth("styr", m))).status_code == 422

                html = (await c.get(f"/v1/analyses/{body['id']}/report.html", headers=auth("styr", m))).text
                assert "Lägesbild och åtgärdsplan" in html and "lag (2023:196)" in html
                assert "<h2>Åtgärdsplan</h2>" in html and "Fältvandringar kvällstid (pågående)" in html
                assert "Fritidsgården och polisen går tillsammans fredagar." in html
                assert "160 timmar, 45\u00a0000 kr" in html and "från 2026-05-11" in re.sub(r"<[^>]+>", "", html)
                assert "Fler kvällar under sommaren" in html
                assert "Samling av personer som skapar otrygghet: 3 → 1 minskade" in html
                en = (await c.get(f"/v1/analyses/{body['id']}/report.html", params={"lang": "en"},
                                  headers=auth("styr", m))).text
                assert "Situational picture and action plan" in en and "<h2>Action plan</h2>" in en

                word = await c.get(f"/v1/analyses/{body['id']}/report.docx", headers=auth("styr", m))
                document = docx.Document(io.BytesIO(word.content))
                headings = [p.text for p in document.paragraphs if p.style is not None and p.style.name.startswith(
                    ("Heading", "Title"))]
                assert headings[0].startswith("Lägesbild och åtgärdsplan") and "Åtgärdsplan" in headings
                plan = next(t for t in document.tables if t.rows[0].cells[0].text == "Vad")
                row = [cell.text for cell in plan.rows[1].cells]
                assert row[0].startswith("Fältvandringar kvällstid")
                assert row[2] == "Samling av personer som skapar otrygghet"
                assert row[3] == "Bostadsbolaget" and "160 timmar" in row[4] and "minskade" in row[7]

                if shutil.which("chromium"):
                    pdf = await c.get(f"/v1/analyses/{body['id']}/report.pdf", headers=auth("styr", m))
                    assert pdf.status_code == 200, pdf.text
                    text = " ".join(p.extract_text() or "" for p in PdfReader(io.BytesIO(pdf.content)).pages)
                    words = " ".join(text.split()).lower()  # lines wrap and headings are set in capitals
                    assert "åtgärdsplan" in words and "fältvandringar kvällstid" in words
    finally:
        await nc.close()
