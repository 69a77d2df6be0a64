"""Integration tests of the analysis service: real NATS JetStream, real SQLite (and one on PostgreSQL)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docx
import httpx
import nats
import openpyxl
import pytest
from est_analysis.metrics import AnalysisMetrics
from est_analysis.settings import AnalysisSettings
from est_analysis.strategic import db
from est_analysis.strategic.handlers import Context, compile_analysis, handle_picture_published
from est_shared.bus import publish_event
from est_shared.clock import SettableClock
from est_shared.db import make_engine, session_factory
from est_shared.periods import Period
from est_shared.subjects import picture_published
from prometheus_client import CollectorRegistry

from tests.analysis.support import auth, org, picture_event, unique
from tests.support import eventually

T3_WEEKS = [p.id for p in Period.parse("2026-T3").reporting_periods("weekly")]  # 2026-W36 … 2026-W53


async def _collect(nc: Any, subject: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []

    async def cb(msg: Any) -> None:
        got.append({**json.loads(msg.data), "nats_subject": msg.subject})

    await nc.subscribe(subject, cb=cb)
    return got


async def test_persistent_problem_is_raised_once_resolved_and_analysed(service: Any, nats_url: str) -> None:
    m, a, b = unique("m"), unique("a"), unique("b")
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    alerts = await _collect(nc, f"est.alert.*.{m}.>")
    published = await _collect(nc, f"est.analysis.published.{m}")
    try:
        async with service(m) as (base, app):
            await app.state.runtime.apply_org(org(m, [a, b]))
            # area a: klotter flagged W36-W39 (4 periods), quiet from W40; area b: one flag only
            for i, week in enumerate(T3_WEEKS[:4]):
                ev = picture_event(m, a, week, {"klotter": (2, "high" if i else "rising"), "brand": (0, None)})
                await publish_event(js, picture_published(m, a), ev)
                await publish_event(js, picture_published(m, a), ev)  # a resend: same id, counted once
            await publish_event(js, picture_published(m, b), picture_event(m, b, T3_WEEKS[0], {"klotter": (1, "new")}))
            raised = await eventually(lambda: _of(alerts, "se.est.alert.raised"))
            assert raised[0]["id"].startswith(f"persistent:{a}:klotter:")
            assert raised[0]["data"]["kind"] == "persistent"
            assert raised[0]["nats_subject"] == f"est.alert.raised.{m}.{a}"
            for week in T3_WEEKS[4:8]:
                await publish_event(js, picture_published(m, a), picture_event(m, a, week, {"klotter": (0, None)}))
            resolved = await eventually(lambda: _of(alerts, "se.est.alert.resolved"))
            assert resolved[0]["data"]["alert_id"] == raised[0]["id"]
            await asyncio.sleep(0.5)
            assert len(_sync_of(alerts, "se.est.alert.raised")) == 1
            assert len(_sync_of(alerts, "se.est.alert.resolved")) == 1

            async with httpx.AsyncClient(base_url=base, timeout=10) as c:
                r = await c.post("/v1/analyses", json={"municipality_id": m, "period": "2026-T3"},
                                 headers=auth("kf", m))
                assert r.status_code == 201, r.text
                body = r.json()
                assert body["id"] == f"{m}:2026-T3:r1"
                assert body["thursday_rule"]["sv"].startswith("En vecka räknas")
                area_a = next(x for x in body["areas"] if x["area_id"] == a)
                assert area_a["reporting_periods"] == T3_WEEKS
                [problem] = area_a["persistent_problems"]
                assert problem["item"] == "klotter" and (problem["k"], problem["n"]) == (3, 4)
                assert problem["periods_flagged"] == T3_WEEKS[:4]
                assert problem["held_at"][0] == T3_WEEKS[2]
                assert [pt["value"] for pt in problem["trend"][:8]] == [2, 2, 2, 2, 0, 0, 0, 0]
                assert [x["area_id"] for x in body["areas_ranked"]] == [a, b]
                assert area_a["completeness"]["pictures"] == 8
                # the same analysis by id, latest revision, list
                assert (await c.get(f"/v1/analyses/{m}:2026-T3", headers=auth("styr", m))).json()["id"] == body["id"]
                # its persistent problems as a download, read as a spreadsheet reads them
                got = await c.get(f"/v1/analyses/{body['id']}", params={"format": "csv"}, headers=auth("styr", m))
                assert got.headers["content-type"] == "text/csv; charset=utf-8", got.text
                rows = list(csv.reader(io.StringIO(got.content.decode("utf-8-sig")), delimiter=";"))
                assert rows[0] == ["Område", "Punkt", "k av n", "Flaggade perioder", "Bestående vid", "Pågår"]
                assert rows[1][:3] == [f"Område {a}", "Klotter", "3/4"] and rows[1][5] == "nej"
                assert rows[1][3] == ", ".join(T3_WEEKS[:4])
                got = await c.get(f"/v1/analyses/{body['id']}", headers={
                    **auth("styr", m), "Accept": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    "Accept-Language": "en"})
                sheet = openpyxl.load_workbook(io.BytesIO(got.content)).active
                assert sheet is not None and sheet["B1"].value == "Item" and sheet["B2"].value == "Graffiti"
                assert (await c.get(f"/v1/analyses/{body['id']}", params={"format": "csv"},
                                    headers=auth("rep", m))).status_code == 403
                listing = (await c.get("/v1/analyses", params={"municipality_id": m}, headers=auth("styr", m))).json()
                assert [x["id"] for x in listing] == [body["id"]]
                # outsiders and reporters may not
                assert (await c.post("/v1/analyses", json={"municipality_id": m, "period": "2026-T3"},
                                     headers=auth("outsider", m))).status_code == 403
                assert (await c.get(f"/v1/analyses/{body['id']}", headers=auth("rep", m))).status_code == 403
                bad = await c.post("/v1/analyses", json={"municipality_id": m, "period": "2026-W40"},
                                   headers=auth("kf", m))
                assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"

                # the readable report
                html = await c.get(f"/v1/analyses/{body['id']}/report.html", headers=auth("styr", m))
                assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
                assert f"Område {a}" in html.text and "<svg" in html.text and "<script" not in html.text
                assert "torsdag" in html.text and "Bestående problem" in html.text
                en = await c.get(f"/v1/analyses/{body['id']}/report.html", params={"lang": "en"},
                                 headers=auth("styr", m))
                assert "Strategic analysis" in en.text and "Thursday" in en.text
                # the same report as a Word document, opened with a document reader
                word = await c.get(f"/v1/analyses/{body['id']}/report.docx", headers=auth("styr", m),
                                   timeout=120)  # the first document draws its charts after importing matplotlib
                assert word.status_code == 200, word.text
                assert word.headers["content-type"].startswith("application/vnd.openxmlformats-officedocument")
                doc = docx.Document(io.BytesIO(word.content))
                headings = [p.text for p in doc.paragraphs if p.style is not None and p.style.name.startswith(
                    ("Heading", "Title"))]
                assert headings[0].startswith("Strategisk analys") and f"Område {a}" in headings
                assert "Bestående problem" in headings and "Utveckling per punkt" in headings
                cells = [c.text for t in doc.tables for row in t.rows for c in row.cells]
                assert "Klotter" in cells and "3 / 4" in cells
                assert len(doc.inline_shapes) >= 4  # need ranking, and per area trends, flags, completeness
                assert doc.core_properties.title.startswith("Strategisk analys")
                assert (await c.get(f"/v1/analyses/{body['id']}/report.docx",
                                    headers=auth("rep", m))).status_code == 403
                assert (await c.get(f"/v1/analyses/{body['id']}/report.html")).status_code == 401

                metrics = (await c.get("/metrics")).text
                assert 'est_analysis_pictures_consumed_total{outcome="applied"} 9.0' in metrics
                assert "est_analysis_analyses_compiled_total" in metrics

            ap = await eventually(lambda: _of(published, "se.est.analysis.published"))
            assert ap[0]["data"]["report_path"] == f"/v1/analyses/{body['id']}/report.html"
            assert ap[0]["data"]["persistent_problems"][0]["item"] == "klotter"
    finally:
        await nc.close()


async def _of(events: list[dict[str, Any]], etype: str) -> list[dict[str, Any]]:
    return _sync_of(events, etype)


def _sync_of(events: list[dict[str, Any]], etype: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == etype]


async def test_measures_are_decided_re_decided_and_followed_up(service: Any, nats_url: str) -> None:
    m, a = unique("m"), unique("a")
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        async with service(m) as (base, app):
            await app.state.runtime.apply_org(org(m, [a]))
            values = [3, 3, 3, 3, 1, 1, 1, 1]
            for week, v in zip(T3_WEEKS[:8], values, strict=True):
                ev = picture_event(m, a, week, {"samling": (v, "high" if v > 2 else None)})
                await publish_event(js, picture_published(m, a), ev)
            measure = {"title": "Fältvandringar kvällstid", "area_id": a, "items": ["samling"],
                       "responsible_actor": f"actor-{m}", "decided_by": "Styrgruppen 2026-09-20",
                       "start": Period.parse(T3_WEEKS[4]).start.isoformat(), "status": "active",
                       "resources": {"hours": 80, "money_sek": 25000}}
            async with httpx.AsyncClient(base_url=base, timeout=10) as c:
                for who in ("kf", "rep", "outsider"):
                    r = await c.post("/v1/measures", json=measure, headers=auth(who, m))
                    assert r.status_code == 403, (who, r.text)
                r = await c.post("/v1/measures", json={**measure, "responsible_actor": "nobody"},
                                 headers=auth("styr", m))
                assert r.status_code == 422
                r = await c.post("/v1/measures", json={**measure, "end": "2026-01-01"}, headers=auth("styr", m))
                assert r.status_code == 422
                r = await c.post("/v1/measures", json=measure, headers=auth("styr", m))
                assert r.status_code == 201, r.text
                mid = r.json()["id"]
                r = await c.patch(f"/v1/measures/{mid}", json={"status": "completed", "end": "2026-12-31",
                                                               "reason": "Uppföljning visar effekt"},
                                  headers=auth("styr", m))
                assert r.status_code == 200, r.text
                hist = r.json()["history"]
                assert [h["action"] for h in hist] == ["decided", "re-decided"]
                assert hist[1]["by"] == f"styr-{m}" and hist[1]["reason"] == "Uppföljning visar effekt"
                assert hist[1]["changes"]["status"] == {"from": "active", "to": "completed"}
                assert (await c.patch(f"/v1/measures/{mid}", json={"status": "active"},
                                      headers=auth("styr", m))).status_code == 422  # a reason is required
                assert (await c.patch(f"/v1/measures/{mid}", json={"status": "active", "reason": "x"},
                                      headers=auth("kf", m))).status_code == 403
                listed = (await c.get("/v1/measures", params={"area_id": a}, headers=auth("kf", m))).json()
                assert [x["id"] for x in listed] == [mid] and listed[0]["status"] == "completed"
                got = await c.get("/v1/measures", params={"area_id": a, "format": "xlsx"}, headers=auth("kf", m))
                sheet = openpyxl.load_workbook(io.BytesIO(got.content)).active
                assert sheet is not None
                table = [[cell.value for cell in row] for row in sheet.iter_rows()]
                assert table[0][:5] == ["Åtgärd", "Område", "Problem som åtgärden riktar sig mot", "Ansvarig aktör",
                                        "Start"]
                assert table[1][0] == "Fältvandringar kvällstid" and table[1][1] == f"Område {a}"
                assert table[1][6:9] == [80, 25000, "genomförd"] and table[1][10] == 1

                async def pictures_in() -> bool:
                    async with app.state.analysis.sessions() as s:
                        return len(await db.area_pictures(s, a)) == 8

                await eventually(pictures_in)
                r = await c.post("/v1/analyses", json={"municipality_id": m, "period": "2026-T3"},
                                 headers=auth("styr", m))
                [effect] = r.json()["measures"][0]["effect"]
                assert effect["periods_compared"] == 4
                assert (effect["before_mean"], effect["after_mean"], effect["direction"]) == (3.0, 1.0, "fell")
                html = (await c.get(f"/v1/analyses/{r.json()['id']}/report.html", headers=auth("styr", m))).text
                assert "Fältvandringar kvällstid" in html and "minskade" in html
    finally:
        await nc.close()


async def test_auto_compile_once_when_the_tertial_has_ended(service: Any) -> None:
    m, a = unique("m"), unique("a")
    async with service(m, auto_compile=True, compile_interval_seconds=0.05) as (base, app):
        ctx: Context = app.state.analysis
        ctx.clock = SettableClock(datetime(2027, 1, 2, 12, tzinfo=UTC))  # T3 ended, but its week 53 has not
        await app.state.runtime.apply_org(org(m, [a]))
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            async def listing() -> list[dict[str, Any]]:
                r = await c.get("/v1/analyses", params={"municipality_id": m}, headers=auth("admin", m))
                return list(r.json())

            assert await listing() == []
            ctx.clock.set(datetime(2027, 1, 5, 12, tzinfo=UTC))
            done = await eventually(listing)
            await asyncio.sleep(0.3)
            done = await listing()
            assert [(x["period"], x["trigger"]) for x in done] == [("2026-T3", "auto")]


def _ctx(url: str, tmp_path: Path) -> tuple[Context, Any]:
    engine = make_engine(url)
    settings = AnalysisSettings(data_dir=tmp_path, durable="handler-test")
    snap = {"org": None}
    ctx = Context(sessions=session_factory(engine), settings=settings, metrics=AnalysisMetrics(CollectorRegistry()),
                  snapshot=lambda: snap["org"])  # type: ignore[arg-type,return-value]
    return ctx, (engine, snap)


async def _handler_flow(url: str, tmp_path: Path) -> None:
    ctx, (engine, snap) = _ctx(url, tmp_path)
    async with engine.begin() as conn:
        await conn.run_sync(db.metadata.create_all)
    m, a = unique("m"), unique("a")
    snap["org"] = org(m, [a])
    try:
        v1 = picture_event(m, a, "2026-W40", {"klotter": (1, None)})
        v2 = picture_event(m, a, "2026-W40", {"klotter": (3, "high")}, version=2)
        assert await handle_picture_published(v2, ctx=ctx) == "applied"
        assert await handle_picture_published(v2, ctx=ctx) == "duplicate"
        assert await handle_picture_published(v1, ctx=ctx) == "stale"  # an older version arriving later
        for week in ("2026-W41", "2026-W42"):
            await handle_picture_published(picture_event(m, a, week, {"klotter": (2, "rising")}), ctx=ctx)
        async with ctx.sessions() as s:
            [row] = [r for r in await db.area_pictures(s, a) if r["period"] == "2026-W40"]
            assert row["version"] == 2 and row["items"]["klotter"]["value"] == 3
            states = await db.area_problem_states(s, a)
            assert states["klotter"]["status"] == "open"
            assert states["klotter"]["alert_id"] == f"persistent:{a}:klotter:2026-W42"
            n_out = len((await s.execute(db.outbox.select())).all())
        assert n_out == 1
        body = await compile_analysis(ctx=ctx, municipality_id=m, period="2026-Q4")
        assert body["persistent_problems"][0]["periods_flagged"] == ["2026-W40", "2026-W41", "2026-W42"]
        again = await compile_analysis(ctx=ctx, municipality_id=m, period="2026-Q4")
        assert again["id"] == f"{m}:2026-Q4:r2"
    finally:
        await engine.dispose()


async def test_picture_revisions_replace_older_versions_and_duplicates_count_once(tmp_path: Path) -> None:
    await _handler_flow(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", tmp_path)


@pytest.mark.postgres
async def test_projection_alerts_and_analyses_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    await _handler_flow(postgres_url, tmp_path)
