"""Downloads from the aggregator, opened as a spreadsheet opens them: the municipality's picture as CSV (read
with the csv module, ``;``, UTF-8 with BOM), an area's series as XLSX (openpyxl), its alerts as CSV; names,
not codes; what the JSON hides from the caller the download hides too."""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

import httpx
import openpyxl
from est_shared.exports import XLSX_TYPE
from est_shared.org import Person, hash_token

from tests.aggregator.support import Bus, World, picture_when, report, running, settings_for


def _csv(content: bytes) -> list[list[str]]:
    assert content.startswith("\ufeff".encode())
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"), newline=""), delimiter=";"))


async def test_pictures_series_and_alerts_download_as_spreadsheets(world: World, bus: Bus, nats_url: str,
                                                                   tmp_path: Path) -> None:
    async with running(world, settings_for(world, nats_url, tmp_path)) as (base, _app), httpx.AsyncClient() as c:
        await bus.send(report(world, None, {"skadegorelse": 2, "klotter": 1}, period="2026-W10"))
        await bus.send(report(world, None, {"skadegorelse": 3}, period="2026-W10", reporter="bo"))
        await bus.send(report(world, None, {"skadegorelse": 1}, period="2026-W09"))
        await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 2)
        await picture_when(c, base, world, "2026-W09", lambda p: p["reports"] == 1)

        r = await c.get(f"{base}/v1/municipalities/{world.muni}/pictures/2026-W10", params={"format": "csv"},
                        headers=world.headers())
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "text/csv; charset=utf-8"
        assert r.headers["content-disposition"] == f'attachment; filename="lagesbild-{world.muni}-2026-W10.csv"'
        rows = _csv(r.content)
        head = rows[0]
        assert head[:9] == ["Område", "Period", "Från", "Till", "Status", "Rapporter", "Rapportörer som rapporterat",
                            "Förväntade rapportörer", "Rapporteringsgrad"]
        row = dict(zip(head, rows[1], strict=True))
        area_name = world.org.areas[world.area].name
        assert (row["Område"], row["Period"], row["Från"], row["Till"]) == (area_name, "2026-W10", "2026-03-02",
                                                                           "2026-03-08")
        assert (row["Status"], row["Rapporter"], row["Rapportörer som rapporterat"]) == ("öppen", "2", "2")
        assert row["Skadegörelse"] == "5" and row["Klotter"] == "1" and row["Rapporteringsgrad"] == "0,6667"

        r = await c.get(f"{base}/v1/areas/{world.area}/pictures", params={"from": "2026-W09", "to": "2026-W10"},
                        headers={**world.headers(), "Accept": XLSX_TYPE, "Accept-Language": "en"})
        assert r.status_code == 200 and r.headers["content-type"] == XLSX_TYPE, r.text
        sheet = openpyxl.load_workbook(io.BytesIO(r.content)).active
        assert sheet is not None
        table = [[cell.value for cell in row] for row in sheet.iter_rows()]
        assert table[0][:7] == ["Period", "From", "To", "Status", "Version", "Reports", "Completeness"]
        col = table[0].index("Vandalism / criminal damage")
        assert [(t[0], t[col]) for t in table[1:]] == [("2026-W09", 1), ("2026-W10", 5)]

        r = await c.get(f"{base}/v1/areas/{world.area}/alerts", params={"format": "csv"}, headers=world.headers())
        assert r.status_code == 200 and _csv(r.content)[0][:4] == ["Larmat", "Period", "Punkt", "Slag"]
        r = await c.get(f"{base}/v1/areas/{world.area}/alerts", params={"format": "docx"}, headers=world.headers())
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
        # the same access rules as the JSON
        assert (await c.get(f"{base}/v1/areas/{world.area}/alerts", params={"format": "csv"})).status_code == 401
        r = await c.get(f"{base}/v1/municipalities/{world.muni}/pictures/2026-W10", params={"format": "csv"},
                        headers=world.headers("anna"))  # a reporter of the area downloads it too
        assert r.status_code == 200 and len(_csv(r.content)) == 2


async def test_completeness_per_actor_downloads_with_each_actors_total(world: World, bus: Bus, nats_url: str,
                                                                       tmp_path: Path) -> None:
    async with running(world, settings_for(world, nats_url, tmp_path)) as (base, _app), httpx.AsyncClient() as c:
        await bus.send(report(world, None, {"skadegorelse": 2}, period="2026-W10"))
        await bus.send(report(world, None, {}, period="2026-W10", reporter="cy", actor="polis", nothing=True))
        await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 2)
        url = f"{base}/v1/municipalities/{world.muni}/pictures/2026-W10/completeness"

        r = await c.get(url, headers=world.headers())
        assert r.status_code == 200, r.text
        rows = [(x["area"], x["actor"], x["expected"], x["received"], x["nothing_to_report"], x["rate"])
                for x in r.json()["rows"]]
        # Hem AB expects Anna and Bo (Anna reported), the police Cy (nothing to report); then
        # each actor's total (no area)
        assert rows == [("Testområdet", "Hem AB", 2, 1, 0, 0.5), ("Testområdet", "Polisen", 1, 1, 1, 1.0),
                        (None, "Hem AB", 2, 1, 0, 0.5), (None, "Polisen", 1, 1, 1, 1.0)]

        table = _csv((await c.get(url, params={"format": "csv"}, headers=world.headers("anna"))).content)
        assert table[0] == ["Område", "Aktör", "Förväntade rapportörer", "Har rapporterat", "I tid", "Sent",
                            "Inget att rapportera", "Rapporteringsgrad"]
        assert table[1][:2] == ["Testområdet", "Hem AB"] and table[3][:2] == ["Hela kommunen", "Hem AB"]
        assert table[1][-1] == "0,5"
        r = await c.get(url, headers={**world.headers(), "Accept": XLSX_TYPE, "Accept-Language": "en"})
        sheet = openpyxl.load_workbook(io.BytesIO(r.content)).active
        assert sheet is not None
        assert [c.value for c in sheet[4]][:4] == ["Whole municipality", "Hem AB", 2, 1]
        assert (await c.get(url)).status_code == 401


async def test_reports_of_an_area_and_period_download_with_names_and_what_became_of_each(
        world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    """The reports of a period as the key function reads them: the reporter by name, the items by label, the
    notes and places, a corrected and a withdrawn report marked; police read them without the reporter's name,
    reporters not at all."""
    org = world.org
    police = Person(id="pia", name="Pia", actor="polis", roles=["police"], areas=[world.area],
                    token_sha256=hash_token(f"tok-pia-{world.muni}"))
    world.org = org.model_copy(update={"people": {**org.people, "pia": police}})
    async with running(world, settings_for(world, nats_url, tmp_path)) as (base, _app), httpx.AsyncClient() as c:
        first, second = str(uuid.uuid4()), str(uuid.uuid4())
        await bus.send(report(world, first, {"skadegorelse": 2, "klotter": {"value": 1, "places": ["torget"],
                                                                             "note": "=HYPERLINK(\"x\")"}}))
        await bus.send(report(world, None, {"skadegorelse": 4, "tillhall": True}, supersedes=first))
        await bus.send(report(world, second, {"skadegorelse": 7}, reporter="bo"))
        await bus.send(report(world, None, {}, reporter="bo", supersedes=second))
        await bus.send(report(world, None, {}, reporter="cy", actor="polis", nothing=True))
        await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 2)
        url = f"{base}/v1/areas/{world.area}/reports/2026-W10"

        r = await c.get(url, headers=world.headers())
        assert r.status_code == 200, r.text
        body = r.json()
        got = [(x["reporter_name"], x["actor_name"], x["state"], x["answers"].get("skadegorelse", {}).get("value"))
               for x in body["reports"]]
        assert sorted(got, key=str) == sorted([("Anna", "Hem AB", "corrected", 2), ("Anna", "Hem AB", "correction", 4),
                                               ("Bo", "Hem AB", "withdrawn", 7), ("Cy", "Polisen", "counts", None)],
                                              key=str)
        counting = sum(x["answers"].get("skadegorelse", {}).get("value", 0) for x in body["reports"]
                       if x["state"] in ("counts", "correction"))
        picture = (await c.get(f"{base}/v1/areas/{world.area}/pictures/2026-W10", headers=world.headers())).json()
        assert counting == picture["items"]["skadegorelse"]["value"] == 4

        r = await c.get(url, params={"format": "csv"}, headers=world.headers())
        assert r.status_code == 200 and r.headers["content-type"] == "text/csv; charset=utf-8", r.text
        assert r.headers["content-disposition"] == f'attachment; filename="rapporter-{world.area}-2026-W10.csv"'
        rows = _csv(r.content)
        head = rows[0]
        assert head[:7] == ["Mottagen", "Period", "Rapportör", "Aktör", "Status", "Sen", "Inget att rapportera"]
        assert head[7:9] == ["Skadegörelse", "Klotter"] and head[-2:] == ["Platser", "Anteckningar"]
        table = [dict(zip(head, row, strict=True)) for row in rows[1:]]
        by_state = {t["Status"]: t for t in table}
        assert set(by_state) == {"gäller", "rättelse (gäller)", "ersatt av rättelse", "tillbakatagen"}
        old = by_state["ersatt av rättelse"]
        assert (old["Rapportör"], old["Skadegörelse"], old["Klotter"]) == ("Anna", "2", "1")
        assert old["Platser"] == "Klotter: torget"
        assert old["Anteckningar"] == "Klotter (torget): =HYPERLINK(\"x\")"  # not at the cell's start: no formula
        assert by_state["rättelse (gäller)"]["Tillhåll"] == "ja"
        assert by_state["gäller"]["Inget att rapportera"] == "ja" and by_state["gäller"]["Aktör"] == "Polisen"

        r = await c.get(url, headers={**world.headers("adm"), "Accept": XLSX_TYPE, "Accept-Language": "en"})
        assert r.status_code == 200 and r.headers["content-type"] == XLSX_TYPE, r.text
        sheet = openpyxl.load_workbook(io.BytesIO(r.content)).active
        assert sheet is not None
        cells = [[cell.value for cell in row] for row in sheet.iter_rows()]
        assert cells[0][:5] == ["Received", "Period", "Reporter", "Actor", "State"]
        col = cells[0].index("Vandalism / criminal damage")
        assert sorted((x[4], x[col]) for x in cells[1:] if x[col] is not None) == [
            ("correction (counts)", 4), ("replaced by a correction", 2), ("withdrawn", 7)]

        # police read the reports and their notes, not who sent them; reporters do not read them
        r = await c.get(url, params={"format": "csv"}, headers=world.headers("pia"))
        assert r.status_code == 200, r.text
        assert "Rapportör" not in _csv(r.content)[0] and "Anna" not in r.content.decode("utf-8-sig")
        seen = (await c.get(url, headers=world.headers("pia"))).json()["reports"]
        assert len(seen) == 4 and all(x["reporter_name"] is None for x in seen)
        assert (await c.get(url, params={"format": "csv"}, headers=world.headers("anna"))).status_code == 403
        assert (await c.get(url)).status_code == 401
        r = await c.get(f"{base}/v1/areas/{world.area}/reports/2026-T2", headers=world.headers())
        assert r.status_code == 422
