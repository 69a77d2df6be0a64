"""Reads: a picture (live or a published version), a series for charts, a municipality's common picture,
an area's alerts, the reports of an area's period and a municipality's Kronoberg figures over weeks."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from est_shared.events import PictureData
from est_shared.org import OrgSnapshot
from est_shared.orghistory import OrgHistory, held_at, held_over
from est_shared.periods import Period
from sqlalchemy.ext.asyncio import AsyncSession

from est_aggregator.pictures import db
from est_aggregator.pictures.compute import (
    AreaInfo,
    PassInputs,
    area_info,
    compute_picture,
    deadline_of,
    expected_in,
    extras_of,
    items_for,
    parse_period,
    pass_inputs,
    resolve_period,
    timezone_of,
)
from est_aggregator.pictures.deps import Deps
from est_aggregator.pictures.domain.errors import (
    AreaNotFound,
    InvalidPeriod,
    MunicipalityNotFound,
    PictureUnavailable,
    VersionNotFound,
)
from est_aggregator.pictures.domain.kronoberg import kronoberg_aggregates, kronoberg_view, merge_kronoberg
from est_aggregator.pictures.domain.notes import notes_view
from est_aggregator.pictures.domain.periods import history_periods, period_ids
from est_aggregator.pictures.domain.picture import build_picture
from est_aggregator.pictures.domain.reports import ReportRecord, as_utc, report_states, stored_id
from est_aggregator.pictures.domain.tally import PeriodTally

log = logging.getLogger("est.aggregator")


async def read_picture(*, deps: Deps, org: OrgSnapshot, area_id: str, period_text: str,
                       version: int | None = None, personal: bool = False,
                       reads_notes: bool = False, reads_missing: bool = False) -> dict[str, Any]:
    """The picture: a published version as sent (``version``, with when it was published, whether it was a
    revision and what it changed), the latest published one, or the live open one.

    Small-count coarsening: counts of the checklist's count items stay as they are for everyone
    (they count incidents, not persons). The Kronoberg figures describe young people: callers who
    see personal data (``personal``: police, social services) get them exact; everyone else gets
    them coarsened (``domain.kronoberg.coarsen_kronoberg``: counts below ``kronoberg_min_count`` as ``"<3"``).
    The reporters' notes: callers who read them (``reads_notes``: ``domain.notes.reads_notes``) get their
    text; everyone else an empty ``notes`` and only ``note_count``.
    """
    body = await _read_picture_exact(deps=deps, org=org, area_id=area_id, period_text=period_text, version=version)
    return _view(body, deps=deps, personal=personal, reads_notes=reads_notes, reads_missing=reads_missing)


def _view(body: dict[str, Any], *, deps: Deps, personal: bool, reads_notes: bool,
          reads_missing: bool) -> dict[str, Any]:
    body = notes_view(body, reads=reads_notes, reads_missing=reads_missing)
    if "kronoberg" not in body:
        return body
    return {**body, "kronoberg": kronoberg_view(body.get("kronoberg"), personal=personal,
                                                min_count=deps.kronoberg_min_count)}


async def _read_picture_exact(*, deps: Deps, org: OrgSnapshot, area_id: str, period_text: str,
                              version: int | None = None) -> dict[str, Any]:
    """``read_picture`` with exact Kronoberg figures (kept beside a published version, which is sent coarsened)."""
    async with deps.sessions() as s:
        info = await area_info(s, org, area_id)
        period = resolve_period(info, period_text)
        if version is not None:
            v = await db.get_version(s, area_id, period.id, version)
            if v is None:
                raise VersionNotFound(f"{area_id} {period.id} v{version}")
            sent = {**json.loads(v.picture), "published_at": v.published_at.isoformat(),
                    "revision": bool(v.revision), "changes": list(v.changes or [])}
            if (v.extras or {}).get("kronoberg_exact") is not None:
                sent["kronoberg"] = v.extras["kronoberg_exact"]
            return sent
        row = await db.picture_row(s, area_id, period.id)
        if row is not None and row.status == "published":
            return await _published(s, area_id, period, row.version)
        return await _computed(s, deps=deps, org=org, info=info, period=period)


async def _published(s: AsyncSession, area_id: str, period: Period, version: int) -> dict[str, Any]:
    """The published version of a picture as read: its extras beside it, the Kronoberg figures exact."""
    v = await db.get_version(s, area_id, period.id, version)
    extras = dict(v.extras or {})
    body = {**json.loads(v.picture), **extras, "published_at": v.published_at.isoformat(),
            "revision": bool(v.revision), "changes": list(v.changes or [])}
    exact = body.pop("kronoberg_exact", None)
    if exact is not None:
        body["kronoberg"] = exact
    return body


async def _computed(s: AsyncSession, *, deps: Deps, org: OrgSnapshot, info: AreaInfo, period: Period,
                    inputs: PassInputs | None = None) -> dict[str, Any]:
    """The live picture computed from the stored reports (``inputs``: read for many pictures at once)."""
    try:
        built = await compute_picture(s, org=org, info=info, period=period, rules=deps.rules,
                                      cache=deps.cache if inputs is not None else None, inputs=inputs)
    except Exception as exc:  # stored data this code cannot compute: named, counted and logged
        deps.metrics.picture_failures.labels("read").inc()
        log.error("picture could not be computed for a read",
                  extra={"area": info.area_id, "period": period.id, "error": type(exc).__name__})
        raise PictureUnavailable(f"{info.area_id} {period.id}") from exc
    return {**built.picture.model_dump(mode="json"),
            **extras_of(built, deadline_of(org, info.municipality_id, period))}


async def _read_pictures_exact(*, deps: Deps, org: OrgSnapshot, area_ids: Sequence[str], period_text: str
                               ) -> tuple[list[dict[str, Any]], list[str]]:
    """``_read_picture_exact`` of many areas' live or latest published pictures of one period, with one query
    per table for all of them (``compute.pass_inputs``; the reports per area, from the report cache where it
    is current): the pictures in the order of ``area_ids`` and the areas whose picture could not be computed.
    An area the period does not fit (a biweekly id asked of a weekly area) is left out."""
    wanted: list[tuple[AreaInfo, Period]] = []
    bodies: dict[str, dict[str, Any]] = {}
    unavailable: list[str] = []
    async with deps.reading() as s:
        for area_id in area_ids:
            info = await area_info(s, org, area_id)
            try:
                wanted.append((info, resolve_period(info, period_text)))
            except InvalidPeriod:
                continue
        rows = await db.picture_rows_of(s, [i.area_id for i, _ in wanted], sorted({p.id for _, p in wanted}))
        live: list[tuple[AreaInfo, Period]] = []
        for info, period in wanted:
            row = rows.get((info.area_id, period.id))
            if row is not None and row.status == "published":
                bodies[info.area_id] = await _published(s, info.area_id, period, row.version)
            else:
                live.append((info, period))
        inputs = (await pass_inputs(s, org=org, pictures=live, rules=deps.rules, with_reports=deps.cache is None)
                  if live else None)
        for info, period in live:
            try:
                bodies[info.area_id] = await _computed(s, deps=deps, org=org, info=info, period=period, inputs=inputs)
            except PictureUnavailable as exc:
                unavailable.append(info.area_id)  # one area's picture never takes the common picture down
                if exc.__cause__ is not None:
                    await deps.units.recover(s, exc.__cause__)  # type: ignore[arg-type]
    return [bodies[a] for a in area_ids if a in bodies], unavailable


def compact(picture: PictureData, status: str, version: int,
            continued: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    """A small form of a picture for charts; an item whose value holds answers to the earlier codes it
    continues names them (``continued``)."""
    continued = continued or {}
    return {"period": picture.period, "status": status, "version": version, "reports": picture.reports,
            "completeness_rate": picture.completeness.rate,
            "items": {k: {"value": v.value, "trend": v.trend, "flag": v.flag,
                          **({"continued": continued[k]} if k in continued else {})}
                      for k, v in picture.items.items()}}


async def read_series(*, deps: Deps, org: OrgSnapshot, area_id: str, first: str, last: str,
                      max_periods: int = 160, with_replaced: bool = True) -> dict[str, Any]:
    """Compact pictures of the periods from ``first`` to ``last`` (inclusive), computed from stored reports,
    each period's completeness against the reporters it expected then (``compute.expected_in``).

    One series per item code: an item that continues earlier codes (``domain.lineage``) carries their
    values in the periods before it existed (``continues`` names the mapping, with the items' labels).
    An area that replaces others (``Area.replaces``: a split or a merge) shows their history beside its
    own: ``replaces`` holds each old area's compact pictures of the periods it was held in (``_replaced``).
    """
    async with deps.sessions() as s:
        info = await area_info(s, org, area_id)
        p0, p1 = resolve_period(info, first), resolve_period(info, last)
        if p0 > p1:
            raise InvalidPeriod(f"{first} is after {last}")
        periods = [p0]
        while periods[-1] < p1:
            if len(periods) >= max_periods:
                raise InvalidPeriod(f"at most {max_periods} periods per request")
            periods.append(periods[-1].next())
        idmap: dict[str, Period] = {}
        for p in [*history_periods(p0, deps.rules.window), *periods]:
            for pid in period_ids(p):
                idmap[pid] = p
        by_period: dict[Period, list[ReportRecord]] = defaultdict(list)
        for r in await db.reports_for(s, area_id, idmap):
            by_period[idmap[r.period]].append(r)
        superseded = await db.superseded_in_area(s, area_id)
        rows = await db.picture_rows_between(s, area_id, p0.id, p1.id)
        area = org.areas.get(area_id)
        old_ids = [a for a in (area.replaces if area and with_replaced else []) if a != area_id and stored_id(a)]
        history = await held_over(s, db.org_history, [area_id, *old_ids])
    tz = timezone_of(org, info.municipality_id)
    # each period tallied once, by its own deadline; as history only its sums count
    tallies = {p: PeriodTally.of(rs, superseded, deadline_of(org, info.municipality_id, p))
               for p, rs in by_period.items()}
    out = []
    continues: dict[str, dict[str, Any]] = {}
    for p in periods:
        tally = tallies.get(p)
        chosen = items_for(org, info.municipality_id, tally.checklists if tally else ())
        built = build_picture(municipality_id=info.municipality_id, area_id=area_id, area_name=info.name, period=p,
                              superseded=superseded, tallies=tallies, items=chosen.items, lineage=chosen.lineage,
                              expected=expected_in(history, org, area_id, p, tz),
                              deadline=deadline_of(org, info.municipality_id, p), rules=deps.rules)
        row = rows.get(p.id)
        out.append(compact(built.picture, row.status if row else "open", row.version if row else 0, built.continued))
        labels = {it.code: it for it in [*chosen.items, *chosen.folded]}
        for code, older in chosen.continues.items():
            it = labels[code]
            continues.setdefault(code, {"label_sv": it.label_sv, "label_en": it.label_en, "continues": [
                {"item": o, "label_sv": labels[o].label_sv if o in labels else o,
                 "label_en": labels[o].label_en if o in labels else o} for o in older]})
    return {"area_id": area_id, "municipality_id": info.municipality_id, "from": p0.id, "to": p1.id,
            "continues": continues, "pictures": out,
            "replaces": await _replaced(deps=deps, org=org, area_id=area_id, old_ids=old_ids, periods=periods,
                                        history=history, tz=tz)}


async def _replaced(*, deps: Deps, org: OrgSnapshot, area_id: str, old_ids: Sequence[str], periods: Sequence[Period],
                    history: OrgHistory, tz: str) -> list[dict[str, Any]]:
    """The old areas' series beside a new one: each over the periods of ``periods`` it was held in as they
    began (unrecorded: those before the new area began)."""
    begun = history.first_held(area_id)
    new_since = begun.since if begun is not None else None
    out: list[dict[str, Any]] = []
    for old in old_ids:
        spans = history.areas.get(old)
        held = [p for p in periods if (held_at(spans, as_utc(p.start_at(tz))) is not None if spans
                                       else new_since is not None and as_utc(p.start_at(tz)) < new_since)]
        pictures: list[dict[str, Any]] = []
        if held:
            try:
                pictures = (await read_series(deps=deps, org=org, area_id=old, first=held[0].id, last=held[-1].id,
                                              max_periods=len(periods), with_replaced=False))["pictures"]
            except AreaNotFound:  # nothing stored of it
                pass
        out.append({"area_id": old, "area_name": history.name_of(old) or "", "pictures": pictures})
    return out


async def read_municipality(*, deps: Deps, org: OrgSnapshot, municipality_id: str, period_text: str,
                            area_ids: Sequence[str], personal: bool = False,
                            reads_notes: bool = False, reads_missing: bool = False) -> dict[str, Any]:
    """The common picture: the pictures of the given areas of a municipality, plus totals."""
    if municipality_id not in org.municipalities:
        raise MunicipalityNotFound(municipality_id)
    parse_period(period_text)
    pictures, unavailable = await _read_pictures_exact(deps=deps, org=org, area_ids=area_ids,
                                                       period_text=period_text)
    items: dict[str, dict[str, Any]] = {}
    for pic in pictures:
        for code, it in pic.get("items", {}).items():
            t = items.setdefault(code, {"answer": it["answer"], "label_sv": it.get("label_sv", ""),
                                        "label_en": it.get("label_en", ""), "value": 0.0, "reports": 0,
                                        "areas_flagged": []})
            t["value"] = max(t["value"], it["value"]) if it["answer"] == "level" else t["value"] + it["value"]
            t["reports"] += it.get("reports", 0)
            if it.get("flag"):
                t["areas_flagged"].append(pic["area_id"])
    comp = {k: sum(p.get("completeness", {}).get(k, 0) for p in pictures)
            for k in ("expected", "received", "on_time", "late", "nothing_to_report")}
    comp["rate"] = round(comp["received"] / comp["expected"], 4) if comp["expected"] else 0.0
    kronoberg = kronoberg_view(merge_kronoberg(p.get("kronoberg") for p in pictures), personal=personal,
                               min_count=deps.kronoberg_min_count)
    return {"municipality_id": municipality_id, "period": period_text,
            "areas": [_view(p, deps=deps, personal=personal, reads_notes=reads_notes, reads_missing=reads_missing)
                      for p in pictures],
            "unavailable": unavailable,
            "totals": {"reports": sum(p.get("reports", 0) for p in pictures), "items": items, "completeness": comp,
                       "kronoberg": kronoberg}}


async def read_alerts(*, deps: Deps, area_id: str) -> list[dict[str, Any]]:
    """Alert history of an area (open and resolved)."""
    if not stored_id(area_id):
        return []
    async with deps.sessions() as s:
        return await db.list_alerts(s, area_id)


async def read_reports(*, deps: Deps, org: OrgSnapshot, area_id: str, period_text: str,
                       reads_names: bool) -> dict[str, Any]:
    """The stored reports of an area's period, oldest first, each with what became of it (``report_states``),
    its answers, notes and who sent it: the reporter's name for callers who read names (``reads_names``:
    key functions and admins), else only the actor. A withdrawal is not a row of its own: the report it takes
    back reads ``withdrawn``."""
    async with deps.sessions() as s:
        info = await area_info(s, org, area_id)
        period = resolve_period(info, period_text)
        own = sorted(period_ids(period))
        records = await db.reports_for(s, area_id, own)
        notes = await db.notes_for(s, area_id, own)
        superseded = await db.superseded_in_area(s, area_id)
    states = report_states(records, superseded)
    notes_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for n in notes:
        notes_of[n.report_id].append({"item": n.item, "places": list(n.places), "text": n.text})
    rows = []
    for r in records:
        if r.report_id not in states:
            continue
        person = org.people.get(r.reporter_id)
        actor = org.actors.get(r.actor_id)
        rows.append({"report_id": r.report_id, "period": r.period, "received_at": as_utc(r.received_at).isoformat(),
                     "state": states[r.report_id], "supersedes": r.supersedes, "late": r.late,
                     "nothing_to_report": r.nothing_to_report, "checklist": r.checklist,
                     "reporter_id": r.reporter_id if reads_names else None,
                     "reporter_name": (person.name if person else r.reporter_id) if reads_names else None,
                     "actor_id": r.actor_id, "actor_name": actor.name if actor else r.actor_id,
                     "answers": {code: dict(a) for code, a in r.answers.items()},
                     "notes": notes_of.get(r.report_id, [])})
    return {"area_id": area_id, "area_name": info.name, "municipality_id": info.municipality_id,
            "period": period.id, "reports": rows}


def kronoberg_weeks(period_text: str | None, first_text: str | None, last_text: str | None, *,
                    max_weeks: int) -> tuple[str, list[Period]]:
    """The weeks a Kronoberg read covers, and what to call them: a quarter, tertial or year (its weeks by the
    Thursday rule), or the weeks ``first``…``last`` (inclusive, at most ``max_weeks``)."""
    if period_text is not None:
        p = parse_period(period_text)
        if p.kind == "week":
            return p.id, [p]
        if p.kind not in ("quarter", "tertial", "year"):
            raise InvalidPeriod(f"{period_text!r} is not a week, quarter, tertial or year")
        return p.id, p.weeks()
    if not first_text or not last_text:
        raise InvalidPeriod("from and to are both needed")
    first, last = parse_period(first_text), parse_period(last_text)
    if first.kind != "week" or last.kind != "week":
        raise InvalidPeriod("from and to are weeks (2026-W10)")
    weeks = [first]
    while weeks[-1] < last and len(weeks) <= max_weeks:
        weeks.append(weeks[-1].next())
    if last < first or len(weeks) > max_weeks:
        raise InvalidPeriod(f"from {first.id} to {last.id}: 1 to {max_weeks} weeks, from before to")
    return f"{first.id}–{last.id}", weeks


OUTSIDE_AREAS = "Utanför områdena"
"""The name of the Kronoberg figures' row of the protocols recorded outside every area."""


async def read_kronoberg(*, deps: Deps, org: OrgSnapshot, municipality_id: str, area_ids: Sequence[str],
                         name: str, weeks: Sequence[Period], personal: bool) -> dict[str, Any]:
    """A municipality's Kronoberg figures over a run of weeks, in all and per area, from the protocols
    themselves (exact for ``personal`` callers, coarsened for everyone else): the shape of a week's figures
    (``tables.kronoberg_view_of``) with the dates covered and the weeks."""
    tz = timezone_of(org, municipality_id)
    start, end = as_utc(weeks[0].start_at(tz)), as_utc(weeks[-1].end_at(tz))
    muni = org.municipalities.get(municipality_id)
    every_area = [a.id for a in org.areas.values() if a.municipality_id == municipality_id]
    async with deps.sessions() as s:
        protocols = await db.forfeitures_of(s, area_ids, start, end)
        # protocols recorded outside every area count in the municipality's figures, for those who see all of it
        outside = (await db.forfeitures_outside(s, municipality_id, every_area, start, end)
                   if set(every_area) <= set(area_ids) else [])
    exact = {a: kronoberg_aggregates([p._mapping for p in protocols.get(a, [])], tz=tz) for a in area_ids}
    beyond = kronoberg_aggregates([p._mapping for p in outside], tz=tz) if outside else None

    def shown(block: Mapping[str, Any] | None) -> dict[str, Any] | None:
        return kronoberg_view(block, personal=personal, min_count=deps.kronoberg_min_count)

    return {"municipality_id": municipality_id, "municipality_name": muni.name if muni else municipality_id,
            "period": name, "from": weeks[0].id, "to": weeks[-1].id, "start": weeks[0].start.isoformat(),
            "end": (weeks[-1].end - timedelta(days=1)).isoformat(), "weeks": [w.id for w in weeks],
            "totals": shown(merge_kronoberg([*exact.values(), beyond])),
            "areas": [{"area_id": a, "area_name": org.areas[a].name if a in org.areas else a,
                       "kronoberg": shown(exact[a])} for a in area_ids]
            + ([{"area_id": None, "area_name": OUTSIDE_AREAS, "kronoberg": shown(beyond)}] if beyond else [])}
