"""The printable picture: ``report.html`` and ``report.pdf`` of an area and period, read as a meeting's
participants read them (the PDF opened with a PDF reader, its text extracted), with what each caller may see:
the key function reads the notes and who has not reported, a reporter of a property company only how many
notes there are."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import httpx
import pytest
from pypdf import PdfReader

from tests.aggregator.support import Bus, World, picture_when, report, running, settings_for

NOTE = "Krossade rutor vid cykelrummet"
CONFIRM = {"confirm_incomplete": True}


async def _fill(world: World, bus: Bus) -> None:
    for week, value in (("2026-W08", 1), ("2026-W09", 0), ("2026-W10", 3)):
        await bus.send(report(world, None, {"skadegorelse": {"value": value, "places": ["centrum"]},
                                            "klotter": {"value": 2, "note": NOTE if week == "2026-W10" else ""}},
                              period=week))


async def test_the_printable_page_shows_what_the_reader_may_see(world: World, bus: Bus, nats_url: str,
                                                                tmp_path: Path) -> None:
    async with running(world, settings_for(world, nats_url, tmp_path)) as (base, _app), httpx.AsyncClient() as c:
        await _fill(world, bus)
        await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 1 and p["note_count"] == 1)
        r = await c.post(f"{base}/v1/areas/{world.area}/pictures/2026-W10/publish", headers=world.headers(),
                         json={"comment": "Fastighetsbolaget byter rutorna i veckan.", **CONFIRM})
        assert r.status_code == 200, r.text

        page = await c.get(f"{base}/v1/areas/{world.area}/pictures/2026-W10/report.html", headers=world.headers())
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        html = page.text
        assert "Lägesbild Testområdet, v. 10 (2–8 mar 2026)" in html
        assert "Fastighetsbolaget byter rutorna i veckan." in html
        assert "1 av 3 förväntade rapportörer har rapporterat (33 %)" in html
        assert "Har inte rapporterat: Bo, Cy" in html
        assert f"Klotter: {NOTE}" in html and "Skadegörelse" in html and "centrum (1)" in html
        assert "v. 8" in html and "v. 10" in html  # the last periods
        assert "skadegorelse" not in html and "flag:" not in html  # names, not codes

        theirs = await c.get(f"{base}/v1/areas/{world.area}/pictures/2026-W10/report.html",
                             headers=world.headers("anna"))
        assert theirs.status_code == 200
        assert NOTE not in theirs.text and "1 anteckningar" in theirs.text and "Bo, Cy" not in theirs.text
        en = await c.get(f"{base}/v1/areas/{world.area}/pictures/2026-W10/report.html", params={"lang": "en"},
                         headers=world.headers())
        assert "Situational picture Testområdet, week 10 (2–8 Mar 2026)" in en.text
        assert (await c.get(f"{base}/v1/areas/{world.area}/pictures/2026-W10/report.html")).status_code == 401
        r = await c.get(f"{base}/v1/areas/{world.area}/pictures/2026-W10/report.html", params={"lang": "de"},
                        headers=world.headers())
        assert r.status_code == 422


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium (installed by .ci/run)")
async def test_the_pdf_opens_in_a_reader_with_the_picture(world: World, bus: Bus, nats_url: str,
                                                           tmp_path: Path) -> None:
    async with running(world, settings_for(world, nats_url, tmp_path)) as (base, _app), httpx.AsyncClient(
            timeout=60) as c:
        await _fill(world, bus)
        await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 1 and p["note_count"] == 1)
        pdf = await c.get(f"{base}/v1/areas/{world.area}/pictures/2026-W10/report.pdf", headers=world.headers())
        assert pdf.status_code == 200, pdf.text
        assert pdf.headers["content-type"] == "application/pdf"
        reader = PdfReader(io.BytesIO(pdf.content))
        assert 1 <= len(reader.pages) <= 2
        text = " ".join((p.extract_text() or "") for p in reader.pages)
        assert "Lägesbild Testområdet" in text and NOTE in text and "Har inte rapporterat" in text
