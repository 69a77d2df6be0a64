"""Use cases of the analysis service as plain async functions (keyword-only collaborators)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time as _time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from est_shared import subjects
from est_shared.bus import PoisonEvent
from est_shared.clock import Clock, SystemClock, utcnow
from est_shared.db import mark_processed, transaction
from est_shared.errors import Unavailable
from est_shared.events import AlertData, AnalysisPublished, CloudEvent, PicturePublished, new_event
from est_shared.freetext import free_text_errors
from est_shared.observability import error_name
from est_shared.org import OrgSnapshot, Principal
from est_shared.periods import (
    DEFAULT_TIMEZONE,
    THURSDAY_RULE_EN,
    THURSDAY_RULE_SV,
    AnalysisKind,
    Cadence,
    Period,
    local_date,
    reporting_kind,
)
from est_shared.printing import NoPrinter, Printer, PrintFailed, PrintingOff
from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from est_analysis.documents.report import render_report
from est_analysis.metrics import AnalysisMetrics
from est_analysis.settings import AnalysisSettings
from est_analysis.strategic import db
from est_analysis.strategic.domain import (
    AnalysisNotFound,
    AreaNeed,
    InvalidMeasure,
    MeasureNotFound,
    Rule,
    TextRefused,
    UnknownMunicipality,
    Vocabulary,
    before,
    check_measure_dates,
    completeness_summary,
    continuations,
    continue_series,
    continued_points,
    episodes,
    flag_counts,
    held_from,
    in_force,
    inherited_overrides,
    is_flagged,
    item_labels,
    lineage_text,
    measure_effect,
    moved_problems,
    parse_analysis_period,
    persistent_problems,
    picture_faults,
    picture_value,
    rank_areas,
    rule_for,
    scoped_overrides,
    shown_periods,
    stored_id,
    summary_text,
    timeline,
    trend,
    vocabulary,
)

log = logging.getLogger("est.analysis")

SOURCE = "/est/analysis"
ANALYSIS_ID = 200  # characters of an analysis id (its column)
NEED_SCORE_SV = ("Behovspoäng = 10 per bestående problem + 2 per punkt-period flaggad 'hög' + 1 per annan "
                 "flaggad punkt-period (ökande/ny) under perioden.")
NEED_SCORE_EN = ("Need score = 10 per persistent problem + 2 per item-period flagged 'high' + 1 per other "
                 "flagged item-period (rising/new) in the period.")


class PdfCache:
    """The last few printed reports, by the content they were printed from (the analysis as stored and the
    language): asking again for the same report, or for a report whose analysis did not change, prints nothing."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._pdfs: OrderedDict[str, bytes] = OrderedDict()

    @staticmethod
    def key(body: Mapping[str, Any], lang: str) -> str:
        text = json.dumps(body, sort_keys=True, default=str, separators=(",", ":"))
        return f"{lang}:{hashlib.sha256(text.encode()).hexdigest()}"

    def get(self, key: str) -> bytes | None:
        pdf = self._pdfs.get(key)
        if pdf is not None:
            self._pdfs.move_to_end(key)
        return pdf

    def put(self, key: str, pdf: bytes) -> None:
        self._pdfs[key] = pdf
        self._pdfs.move_to_end(key)
        while len(self._pdfs) > self.size:
            self._pdfs.popitem(last=False)


@dataclass
class Context:
    """The collaborators every use case needs, built once by the composition root."""

    sessions: async_sessionmaker[AsyncSession]
    settings: AnalysisSettings
    metrics: AnalysisMetrics
    snapshot: Callable[[], OrgSnapshot]
    wake: Callable[[], None] = lambda: None
    clock: Clock = field(default_factory=SystemClock)
    printer: Printer = field(default_factory=NoPrinter)
    pdfs: PdfCache = field(default_factory=PdfCache)
    # one picture at a time per process: a fetched batch is handled concurrently, and k of n reads the
    # area's whole history; serialising keeps SQLite free of write conflicts (replicas rely on constraints)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def rule(self) -> Rule:
        return Rule(k=self.settings.persistent_k, n=self.settings.persistent_n)


# --- pictures and persistent-problem alerts ---------------------------------------------------

def picture_subject(municipality_filter: str) -> str:
    """The subject filter for published pictures of one municipality, or of all ('*')."""
    return f"est.picture.published.{municipality_filter or '*'}.>"


def vocabulary_of(snap: OrgSnapshot, municipality_id: str | None) -> Vocabulary:
    """A municipality's checklist vocabulary: its versions newest first (the one in force first), then the
    organisation's other checklists for the labels of codes only they name."""
    own = snap.checklist_versions_for(municipality_id) if municipality_id else []
    refs = {cl.ref for cl in own}
    others = sorted((cl for ref, cl in snap.checklists.items() if ref not in refs),
                    key=lambda cl: (cl.id, -cl.version))
    return vocabulary([*own, *others])


async def handle_picture_published(event: CloudEvent[PicturePublished], *, ctx: Context) -> str:
    """Project a published picture (latest version wins) and raise/resolve persistent-problem alerts."""
    async with ctx.lock, transaction(ctx.sessions) as s:
        outcome, queued = await apply_picture(s, event, ctx=ctx)
        open_count = await db.open_problem_count(s)
    ctx.metrics.pictures.labels(outcome).inc()
    ctx.metrics.open_problems.set(open_count)
    if queued:
        ctx.wake()
    return outcome


async def apply_picture(s: AsyncSession, event: CloudEvent[PicturePublished], *, ctx: Context,
                        emit: bool = True) -> tuple[str, int]:
    """The projection step inside the caller's transaction: (outcome, alerts queued).

    ``emit=False`` (rebuild) updates the problem states exactly as live but queues no alerts.
    """
    pic = event.data.picture
    faults = picture_faults(pic)
    if faults:  # the reasons only: the picture's own text never goes to logs or dead-letter headers
        raise PoisonEvent("; ".join(faults)[:400])
    period = Period.parse(pic.period)
    if not await mark_processed(s, db.processed, consumer=ctx.settings.durable, event_id=event.id):
        return "duplicate", 0
    current = await db.picture_version(s, pic.area_id, period.id)
    if current is not None and current >= pic.version:
        return "stale", 0
    last_before = await db.last_picture_period(s, pic.area_id, kind=period.kind)
    items = {code: {"value": it.value, "flag": it.flag, "trend": it.trend, "answer": it.answer,
                    "label_sv": it.label_sv, "label_en": it.label_en}
             for code, it in pic.items.items()}
    await db.put_picture(s, {
        "area_id": pic.area_id, "period": period.id, "municipality_id": pic.municipality_id,
        "area_name": pic.area_name, "kind": period.kind, "period_start": period.start,
        "version": pic.version, "items": items,
        "completeness": pic.completeness.model_dump(mode="json", include=COMPLETENESS_COUNTS),
        "event_id": event.id, "updated_at": utcnow()}, exists=current is not None)
    queued = await reconcile_alerts(s, ctx=ctx, municipality_id=pic.municipality_id, area_id=pic.area_id,
                                    area_name=pic.area_name, kind=period.kind, changed=period,
                                    last_before=Period.parse(last_before) if last_before else None, emit=emit)
    return "applied", queued


# what the analysis reads of a picture's completeness (not who is missing: it names no person)
COMPLETENESS_COUNTS = {"expected", "received", "on_time", "late", "nothing_to_report", "rate"}


def _value_or_zero(point: Mapping[str, Any] | None) -> float | None:
    """An item's value for a measure's effect: 0 when the picture does not have the item, None when its
    stored value is unusable (that period is then skipped)."""
    return 0.0 if not point or point.get("value") is None else picture_value(point)


def _alert_message(item_sv: str, item_en: str, area: str, rule: Rule, flagged: list[str], *,
                   resolved: bool) -> dict[str, str]:
    if resolved:
        return {"sv": f"Bestående problem avslutat: {item_sv} i {area} uppfyller inte längre {rule.k} av {rule.n}.",
                "en": f"Persistent problem resolved: {item_en} in {area} no longer meets {rule.k} of {rule.n}."}
    periods = ", ".join(flagged)
    return {"sv": f"Bestående problem: {item_sv} i {area} flaggat i {len(flagged)} av de senaste {rule.n} "
                  f"perioderna ({periods}).",
            "en": f"Persistent problem: {item_en} in {area} flagged in {len(flagged)} of the last {rule.n} "
                  f"periods ({periods})."}


@dataclass
class _Change:
    """One problem-state change decided by reconciliation."""

    item: str
    action: str  # open | reopen | resolve
    period: str
    rule: Rule
    flagged: list[str] = field(default_factory=list)


def _n_max(ctx: Context) -> int:
    return max([ctx.rule.n, *(int(o.get("n", ctx.rule.n)) for o in ctx.settings.persistent_overrides.values())])


def _plan(rows: list[dict[str, Any]], states: dict[str, dict[str, Any]], *, ctx: Context, area_id: str,
          first: Period | None = None, start: Period | None = None) -> tuple[list[_Change], dict[str, Any]]:
    """Compare the k-of-n episodes over ``rows`` with the stored states (the machine starts at ``start``);
    an item's series continues the earlier codes it replaces (``continue_series``)."""
    area = ctx.snapshot().areas.get(area_id)
    municipality_id = area.municipality_id if area else None
    vocab = vocabulary_of(ctx.snapshot(), municipality_id)
    history = continue_series({r["period"]: r["items"] for r in rows}, vocab)
    overrides = inherited_overrides(ctx.settings.persistent_overrides, vocab, municipality_id)
    tl = timeline(first or Period.parse(rows[0]["period"]), Period.parse(rows[-1]["period"]))
    begin = 0 if start is None else max(0, min(len(tl), tl.index(start) if start in tl else 0))
    changes: list[_Change] = []
    for item in sorted({i for pts in history.values() for i in pts} | set(states)):
        rule = rule_for(item, ctx.rule, overrides, municipality_id)
        flags = [is_flagged(history, p.id, item) for p in tl]
        eps = episodes(flags, rule, ctx.settings.resolve_after, begin)
        ongoing = eps[-1] if eps and eps[-1].resolved is None else None
        st = states.get(item)
        if ongoing is not None:
            if st is not None and st["status"] == "open":
                continue  # never twice for an ongoing problem
            opened = tl[ongoing.opened]
            if st is not None and st["alert_id"] == f"persistent:{area_id}:{item}:{opened.id}":
                changes.append(_Change(item, "reopen", opened.id, rule))  # a revision reopened the same episode
                continue
            flagged = [tl[j].id for j in range(max(0, ongoing.opened - rule.n + 1), ongoing.opened + 1) if flags[j]]
            changes.append(_Change(item, "open", opened.id, rule, flagged))
        elif st is not None and st["status"] == "open":
            last = eps[-1] if eps else None
            resolved = tl[last.resolved] if last is not None and last.resolved is not None else tl[-1]
            changes.append(_Change(item, "resolve", resolved.id, rule))
    return changes, history


async def reconcile_alerts(session: AsyncSession, *, ctx: Context, municipality_id: str, area_id: str,
                           area_name: str, kind: str, changed: Period | None = None,
                           last_before: Period | None = None, emit: bool = True) -> int:
    """Compare the area's k-of-n episodes with the stored problem state; queue raised/resolved alerts.

    A new latest picture (``changed`` after ``last_before``) is checked on a bounded window: from n-1 periods
    before the earliest of the period after ``last_before`` and the opening period of each open problem. The
    stored state says the machine was closed there, so the window gives the full history's answer; when it
    finds a change (rare: once per episode) the full history decides. Revisions of older periods use the full
    history directly. This keeps a picture's cost independent of the length of the history.
    """
    states = await db.area_problem_states(session, area_id)
    # an open problem of an earlier code goes on as the item that continues it: same state, same alert
    for old_code, heir in moved_problems(states, vocabulary_of(ctx.snapshot(), municipality_id)):
        moved = {**states.pop(old_code), "item": heir}
        await db.move_problem_state(session, area_id, old_code, moved, replace=heir in states)
        states[heir] = moved
        log.info("persistent problem continues under a new item", extra={"area": area_id, "item": heir})
    changes: list[_Change] | None = None
    history: dict[str, Any] = {}
    if changed is not None and last_before is not None and changed > last_before:
        start = min([last_before.next(), *(Period.parse(st["opened_period"]) for st in states.values()
                                           if st["status"] == "open")])
        first = start.shift(-(_n_max(ctx) - 1))
        rows = await db.area_pictures(session, area_id, kind=kind, since=first.start)
        if not rows:
            return 0
        changes, history = _plan(rows, states, ctx=ctx, area_id=area_id, first=first, start=start)
        if not changes:
            return 0
    rows = await db.area_pictures(session, area_id, kind=kind)
    if not rows:
        return 0
    changes, history = _plan(rows, states, ctx=ctx, area_id=area_id)
    queued = 0
    name = area_name or area_id
    for ch in changes:
        st = states.get(ch.item)
        sv, en = item_labels(history, ch.item)
        if ch.action in ("open", "reopen"):
            alert_id = f"persistent:{area_id}:{ch.item}:{ch.period}"
            await db.put_problem_state(session, {
                "area_id": area_id, "item": ch.item, "municipality_id": municipality_id, "status": "open",
                "alert_id": alert_id, "opened_period": ch.period, "resolved_period": None}, exists=st is not None)
            if ch.action == "reopen" or not emit:
                continue
            data = AlertData(alert_id=alert_id, municipality_id=municipality_id, area_id=area_id, item=ch.item,
                             kind="persistent", period=ch.period,
                             severity="critical" if len(ch.flagged) >= ch.rule.n else "warning",
                             message=_alert_message(sv, en, name, ch.rule, ch.flagged, resolved=False))
            ev = new_event(type="se.est.alert.raised", source=SOURCE, subject=area_id, id=alert_id, data=data)
            if await db.queue_event(session, subjects.alert_raised(municipality_id, area_id), ev):
                queued += 1
                ctx.metrics.alerts.labels("raised").inc()
                log.info("persistent problem opened", extra={"area": area_id, "item": ch.item, "period": ch.period})
        else:
            assert st is not None
            await db.put_problem_state(session, {**st, "status": "resolved", "resolved_period": ch.period},
                                       exists=True)
            if not emit:
                continue
            data = AlertData(alert_id=st["alert_id"], municipality_id=municipality_id, area_id=area_id, item=ch.item,
                             kind="persistent", period=ch.period, severity="info",
                             message=_alert_message(sv, en, name, ch.rule, [], resolved=True))
            ev = new_event(type="se.est.alert.resolved", source=SOURCE, subject=area_id,
                           id=f"{st['alert_id']}:resolved", data=data)
            if await db.queue_event(session, subjects.alert_resolved(municipality_id, area_id), ev):
                queued += 1
                ctx.metrics.alerts.labels("resolved").inc()
                log.info("persistent problem resolved", extra={"area": area_id, "item": ch.item,
                                                               "period": ch.period})
    return queued


# --- strategic analyses ------------------------------------------------------------------------

def _trends(history: dict[str, dict[str, Any]], periods: Sequence[Period], persistent: set[str],
            lineage: Mapping[str, Sequence[str]] | None = None) -> list[dict[str, Any]]:
    """Each item with a value or a flag in ``periods``: its points, persistent ones first; with ``lineage``
    (item -> its codes, its own first) the earlier codes it continues and the periods its value held them."""
    trends: list[dict[str, Any]] = []
    for item in sorted({i for p in periods for i in history.get(p.id, {})}):
        pts = trend(history, item, periods)
        flagged = sum(1 for pt in pts if pt.flag)
        if flagged == 0 and not any(pt.value for pt in pts):
            continue
        sv, en = item_labels(history, item)
        trends.append({"item": item, "label_sv": sv, "label_en": en, "flagged": flagged,
                       "persistent": item in persistent,
                       "continues": list((lineage or {}).get(item, (item,))[1:]),
                       "continued_in": [p.id for p in periods if history.get(p.id, {}).get(item, {}).get("continued")],
                       "points": [asdict(pt) for pt in pts]})
    trends.sort(key=lambda t: (not t["persistent"], -t["flagged"], t["item"]))
    return trends


async def _lineage(s: AsyncSession, area_id: str, replaces: Sequence[str], kind: str, periods: Sequence[Period]
                   ) -> dict[str, Any]:
    """The areas an area replaces (a split or a merge), shown beside it: each old area's name (from its stored
    pictures), and its trends and completeness in the analysed periods before the new area began."""
    out: list[dict[str, Any]] = []
    for old in replaces:
        if old == area_id or not stored_id(old):
            continue
        rows = await db.area_pictures(s, old, kind=kind, since=periods[0].start, until=periods[-1].end) \
            if periods else []
        history = {r["period"]: r["items"] for r in rows}
        out.append({"area_id": old, "area_name": await db.last_area_name(s, old) or old,
                    "periods": [p.id for p in periods], "trends": _trends(history, periods, set()),
                    "completeness": completeness_summary({r["period"]: r["completeness"] for r in rows}, periods)})
    return {"replaces": out, "replaces_text": lineage_text([r["area_name"] for r in out])}


def _area_ids(snap: OrgSnapshot, municipality_id: str) -> list[str]:
    muni = snap.municipalities[municipality_id]
    ids = [a for a in muni.area_ids if a in snap.areas]
    ids += sorted(a.id for a in snap.areas.values() if a.municipality_id == municipality_id and a.id not in ids)
    return ids


def _measure_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "municipality_id": row["municipality_id"], "area_id": row["area_id"],
        "title": row["title"], "description": row["description"], "items": list(row["items"]),
        "responsible_actor": row["responsible_actor"], "decided_by": row["decided_by"],
        "start": row["start"].isoformat(), "end": row["end"].isoformat() if row["end"] else None,
        "resources": {"hours": row["hours"], "money_sek": row["money_sek"]}, "status": row["status"],
        "history": list(row["history"]), "created_by": row["created_by"],
        "created_at": _iso(row["created_at"]), "updated_at": _iso(row["updated_at"]), "revision": row["revision"],
    }


def _effects(m: Mapping[str, Any], around: Sequence[Mapping[str, Any]], vocab: Vocabulary, *, ctx: Context,
             as_of: date) -> tuple[list[Any], dict[str, list[tuple[Period, float]]]]:
    """A measure's effect per targeted item over the pictures ``around`` its start, and each item's series."""
    # a measure on an item since renamed reads the series of the item that continues it
    reads = {item: (heirs[0] if len(heirs := vocab.successors(item)) == 1 else item) for item in m["items"]}
    series = {item: [(Period.parse(r["period"]), v) for r in around
                     if (v := _value_or_zero(continued_points(r["items"], vocab).get(reads[item]))) is not None]
              for item in m["items"]}
    return [measure_effect(item, series[item], m["start"], max_periods=ctx.settings.effect_max_periods,
                           as_of=as_of) for item in m["items"]], series


def _decision_names(snap: OrgSnapshot, measure: dict[str, Any], item_names: dict[str, dict[str, str]]
                    ) -> dict[str, Any]:
    """What the report needs to tell a measure's decisions in words: each entry's decider by name, and the
    names of the actors and items its re-decisions changed from and to."""
    def people(pid: Any) -> str:
        person = snap.people.get(str(pid))
        return person.name if person else str(pid or "")

    changed = [c for h in measure["history"] for c in (h.get("changes") or {}).items()]
    actors = {measure["responsible_actor"], *(str(v) for k, c in changed if k == "responsible_actor"
                                              for v in (c.get("from"), c.get("to")) if v)}
    items = {*measure["items"], *(str(i) for k, c in changed if k == "items"
                                  for v in (c.get("from"), c.get("to")) if isinstance(v, list) for i in v)}
    return {"history": [{**h, "by_name": people(h.get("by"))} for h in measure["history"]],
            "actor_names": {a: snap.actors[a].name for a in sorted(actors) if a in snap.actors},
            "item_labels": {i: item_names[i] for i in sorted(items) if i in item_names}}


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


async def compile_analysis(*, ctx: Context, municipality_id: str, period: str, trigger: str = "manual",
                           compiled_by: str | None = None) -> dict[str, Any]:
    """Compile, store and publish (via the outbox) a strategic analysis of a quarter or tertial."""
    started = _time.perf_counter()
    snap = ctx.snapshot()
    muni = snap.municipalities.get(municipality_id)
    if muni is None:
        raise UnknownMunicipality(municipality_id)
    ap = parse_analysis_period(period)
    rule = ctx.rule
    vocab = vocabulary_of(snap, municipality_id)
    overrides = scoped_overrides(inherited_overrides(ctx.settings.persistent_overrides, vocab, municipality_id),
                                 municipality_id, [i.code for c in snap.checklists.values() for i in c.items])
    today = local_date(ctx.clock.now(), muni.timezone)
    item_names = {code: {"sv": sv, "en": en} for code, (sv, en) in vocab.labels.items()}
    seen_codes: dict[str, dict[str, Any]] = {}  # what the areas' pictures named, before continuing the series
    async with transaction(ctx.sessions) as s:
        needs: list[AreaNeed] = []
        areas_out: list[dict[str, Any]] = []
        all_problems: list[dict[str, Any]] = []
        measures_out: list[dict[str, Any]] = []
        problems_by_area = {}
        n_max = _n_max(ctx)
        measures_by_area: dict[str, list[dict[str, Any]]] = {}
        for m in await db.list_measures(s, area_ids=_area_ids(snap, municipality_id)):
            measures_by_area.setdefault(m["area_id"], []).append(m)
        for area_id in _area_ids(snap, municipality_id):
            area = snap.areas[area_id]
            kind = reporting_kind(area.cadence)
            rps = ap.reporting_periods(area.cadence)
            # only the periods k of n can see: n-1 before the first reporting period up to the last one
            rows = await db.area_pictures(s, area_id, kind=kind, since=rps[0].shift(-(n_max - 1)).start,
                                          until=rps[-1].end)
            raw = {r["period"]: r["items"] for r in rows}
            for pid, pts in raw.items():
                seen_codes.setdefault(pid, {}).update(dict.fromkeys(pts))
            history = continue_series(raw, vocab)
            problems = persistent_problems(history, rps, default=rule, overrides=overrides,
                                           resolve_after=ctx.settings.resolve_after, as_of=today)
            problems_by_area[area_id] = problems
            # what a reader sees of the period: the reporting periods that have begun (none of the future)
            begun = [p for p in rps if p.start <= today]
            high, other, top = flag_counts(history, shown_periods(history, begun))
            needs.append(AreaNeed(area_id, area.name, len(problems), high, other, top))
            trends = _trends(history, begun, {p.item for p in problems}, vocab.lineage)
            area_measures = []
            for m in measures_by_area.get(area_id, []):
                if not in_force(m["start"], m["end"], m["status"], ap):
                    continue
                around = await db.pictures_around(s, area_id, kind=kind, start=m["start"], as_of=ap.end,
                                                  limit=ctx.settings.effect_max_periods)
                out = _measure_out(m)
                actor = snap.actors.get(m["responsible_actor"])
                out["responsible_actor_name"] = actor.name if actor else m["responsible_actor"]
                out.update(_decision_names(snap, out, item_names))
                out["effect"] = [asdict(e) for e in _effects(m, around, vocab, ctx=ctx, as_of=ap.end)[0]]
                area_measures.append(out)
                measures_out.append(out)
            probs = [{"area_id": area_id, "area_name": area.name, **asdict(p)} for p in problems]
            all_problems.extend(probs)
            areas_out.append({
                "area_id": area_id, "area_name": area.name, "cadence": area.cadence,
                "reporting_periods": [p.id for p in rps], "persistent_problems": probs, "trends": trends,
                "periods_begun": [p.id for p in begun],
                # completeness begins at the area's first period (Area.since): none is expected before it
                "completeness": completeness_summary({r["period"]: r["completeness"] for r in rows},
                                                     held_from(begun, area.since, muni.timezone)),
                **await _lineage(s, area.id, area.replaces, kind, before(begun, area.since, muni.timezone)),
                "measures": area_measures,
            })
        ranked = rank_areas(needs)
        revision = await db.next_revision(s, municipality_id, ap.id)
        analysis_id = f"{municipality_id}:{ap.id}:r{revision}"
        now = ctx.clock.now()
        summary = summary_text(muni.name, ap.id, ranked, problems_by_area, len(measures_out))
        body = {
            "id": analysis_id, "municipality_id": municipality_id, "municipality_name": muni.name,
            "timezone": muni.timezone,
            "period": ap.id, "kind": ap.kind, "revision": revision, "trigger": trigger,
            "compiled_at": _iso(now), "compiled_by": compiled_by,
            "period_start": ap.start.isoformat(), "period_end": (ap.end - timedelta(days=1)).isoformat(),
            "rule": {"k": rule.k, "n": rule.n, "overrides": overrides, "resolve_after": ctx.settings.resolve_after,
                     "flagged_sv": "Flaggad = bilden har flaggan ökande, hög eller ny för punkten.",
                     "flagged_en": "Flagged = the picture marks the item rising, high or new.",
                     "need_score_sv": NEED_SCORE_SV, "need_score_en": NEED_SCORE_EN},
            "thursday_rule": {"sv": THURSDAY_RULE_SV, "en": THURSDAY_RULE_EN},
            "summary": summary,
            "continuations": continuations(seen_codes, vocab),
            "areas_ranked": [asdict(a) for a in ranked],
            "areas": sorted(areas_out, key=lambda a: next(n.rank for n in ranked if n.area_id == a["area_id"])),
            "persistent_problems": all_problems,
            "measures": measures_out,
            "report_path": f"/v1/analyses/{analysis_id}/report.html",
        }
        await s.execute(insert(db.analyses).values(
            id=analysis_id, municipality_id=municipality_id, period=ap.id, revision=revision, trigger=trigger,
            compiled_by=compiled_by, compiled_at=now, body=body))
        if trigger == "auto":
            await s.execute(insert(db.auto_compilations).values(
                municipality_id=municipality_id, period=ap.id, analysis_id=analysis_id, compiled_at=now))
        published = AnalysisPublished(
            analysis_id=analysis_id, municipality_id=municipality_id, period=ap.id, summary=summary,
            persistent_problems=[{"area_id": p["area_id"], "item": p["item"], "label_sv": p["label_sv"],
                                  "label_en": p["label_en"], "k": p["k"], "n": p["n"],
                                  "periods_flagged": p["periods_flagged"], "ongoing": p["ongoing"]}
                                 for p in all_problems],
            report_path=body["report_path"])
        await db.queue_event(s, subjects.analysis_published(municipality_id), new_event(
            type="se.est.analysis.published", source=SOURCE, subject=municipality_id,
            id=f"analysis:{analysis_id}", data=published))
    ctx.metrics.analyses.labels(trigger).inc()
    ctx.metrics.compile_seconds.observe(_time.perf_counter() - started)
    ctx.wake()
    log.info("analysis compiled", extra={"analysis": analysis_id, "trigger": trigger})
    return body


async def get_analysis(*, ctx: Context, analysis_id: str) -> dict[str, Any]:
    """A stored analysis body; ``{municipality}:{period}`` gives the latest revision."""
    if not stored_id(analysis_id, ANALYSIS_ID):  # no analysis has it (and PostgreSQL refuses a NUL in a query)
        raise AnalysisNotFound(analysis_id)
    async with ctx.sessions() as s:
        row = await db.get_analysis(s, analysis_id)
    if row is None:
        raise AnalysisNotFound(analysis_id)
    return dict(row["body"])


async def list_analyses(*, ctx: Context, municipality_id: str) -> list[dict[str, Any]]:
    """Short descriptions of a municipality's analyses, newest first."""
    if not stored_id(municipality_id):
        return []
    async with ctx.sessions() as s:
        rows = await db.list_analyses(s, municipality_id)
    return [{"id": r["id"], "municipality_id": r["municipality_id"], "period": r["period"],
             "revision": r["revision"], "trigger": r["trigger"], "compiled_at": _iso(r["compiled_at"]),
             "compiled_by": r["compiled_by"], "summary": r["body"].get("summary", {}),
             "persistent_problems": len(r["body"].get("persistent_problems", [])),
             "report_path": r["body"].get("report_path")} for r in rows]


class PdfFailed(Unavailable):
    """The printer did not produce the report's PDF; the same request may work later."""

    title = "PDF rendering failed"

    def __init__(self) -> None:
        super().__init__("Webbläsaren kunde inte skriva ut rapporten; försök igen senare eller använd report.html.",
                         "The browser could not print the report; try again later or use report.html.",
                         retry_after=30, reason="pdf")


async def report_pdf(body: dict[str, Any], *, ctx: Context, lang: str, analysis_id: str) -> bytes:
    """The analysis's readable report printed to PDF; ``PrintingOff`` when no printer is configured,
    ``PdfFailed`` when it did not print (only the error's class is logged: it may quote the document)."""
    if not ctx.printer.available():
        raise PrintingOff
    key = PdfCache.key(body, lang)
    if (pdf := ctx.pdfs.get(key)) is not None:
        return pdf
    try:
        pdf = await ctx.printer.pdf(render_report(body, lang=lang, for_print=True))
    except (PrintFailed, OSError) as exc:
        log.warning("pdf rendering failed", extra={"analysis": analysis_id, "error": error_name(exc)})
        raise PdfFailed from None
    ctx.pdfs.put(key, pdf)
    return pdf


def due_period(*, kind: AnalysisKind, tz: str, cadences: Sequence[Cadence], now: datetime,
               grace_hours: float) -> Period | None:
    """The just-ended quarter/tertial if its last reporting period (Thursday rule) ended ``grace`` ago."""
    today = local_date(now, tz)
    target = Period.containing(kind, today).prev()
    defaults: Sequence[Cadence] = ("weekly",)
    ends = [rps[-1].end for c in (cadences or defaults) if (rps := target.reporting_periods(c))]
    last_end = max(ends) if ends else target.end
    due_at = datetime.combine(last_end, time(0), ZoneInfo(tz)) + timedelta(hours=grace_hours)
    return target if now >= due_at else None


async def auto_compile_due(*, ctx: Context) -> list[str]:
    """Compile each municipality's just-ended quarter/tertial once (in its timezone); returns new ids."""
    snap = ctx.snapshot()
    now = ctx.clock.now()
    done: list[str] = []
    flt = ctx.settings.municipality_filter
    for muni in snap.municipalities.values():
        if flt not in ("*", "") and muni.id != flt:
            continue
        cadences = sorted({snap.areas[a].cadence for a in _area_ids(snap, muni.id)})
        target = due_period(kind=muni.analysis_period, tz=muni.timezone, cadences=cadences, now=now,
                            grace_hours=ctx.settings.compile_grace_hours)
        if target is None:
            continue
        async with ctx.sessions() as s:
            if await db.was_auto_compiled(s, muni.id, target.id):
                continue
        try:
            body = await compile_analysis(ctx=ctx, municipality_id=muni.id, period=target.id, trigger="auto")
        except IntegrityError:
            log.info("analysis compiled by another replica", extra={"municipality": muni.id, "period": target.id})
            continue
        done.append(body["id"])
    return done


# --- measures ------------------------------------------------------------------------------------

MEASURE_FIELDS = ("title", "description", "items", "responsible_actor", "decided_by", "start", "end", "hours",
                  "money_sek", "status")
# the free texts of a measure (read by the styrgrupp, the beredningsgrupp and in every report): may hold line breaks?
MEASURE_TEXTS = {"title": False, "description": True, "decided_by": False, "reason": True}


def _check_texts(values: dict[str, Any]) -> None:
    """Refuse free text that looks like personal data or holds control characters (``TextRefused``)."""
    texts = {f"body.{k}": v for k in MEASURE_TEXTS if isinstance(v := values.get(k), str)}
    errors = free_text_errors(texts, multiline={f"body.{k}" for k, lines in MEASURE_TEXTS.items() if lines})
    if errors:
        raise TextRefused(errors)


def _validate_measure(snap: OrgSnapshot, values: dict[str, Any]) -> None:
    check_measure_dates(values["start"], values.get("end"))
    if not stored_id(values["responsible_actor"]):
        raise InvalidMeasure("not an actor id", "inget aktörs-id", "responsible_actor")
    if snap.actors and values["responsible_actor"] not in snap.actors:
        raise InvalidMeasure(f"unknown actor {values['responsible_actor']!r}",
                             f"okänd aktör {values['responsible_actor']!r}", "responsible_actor")
    known = {i.code for c in snap.checklists.values() for i in c.items}
    unknown = [i for i in values["items"] if known and i not in known]
    if unknown:
        raise InvalidMeasure(f"unknown checklist items: {', '.join(unknown)}",
                             f"okända checklistpunkter: {', '.join(unknown)}", "items")
    if not values["items"]:
        raise InvalidMeasure("a measure targets at least one item", "en åtgärd riktar sig mot minst en punkt", "items")


async def create_measure(*, ctx: Context, principal: Principal, values: dict[str, Any]) -> dict[str, Any]:
    """Record a measure decided by the styrgrupp (its free texts checked first: nothing is stored if refused)."""
    _check_texts(values)
    snap = ctx.snapshot()
    area = snap.areas.get(values["area_id"])
    if area is None:
        raise InvalidMeasure(f"unknown area {values['area_id']!r}", f"okänt område {values['area_id']!r}", "area_id")
    _validate_measure(snap, values)
    now = utcnow()
    row = {
        "id": str(uuid.uuid4()), "municipality_id": area.municipality_id, "area_id": area.id,
        "title": values["title"], "description": values.get("description") or "", "items": list(values["items"]),
        "responsible_actor": values["responsible_actor"], "decided_by": values["decided_by"],
        "start": values["start"], "end": values.get("end"), "hours": values.get("hours"),
        "money_sek": values.get("money_sek"), "status": values["status"], "created_by": principal.person_id,
        "created_at": now, "updated_at": now, "revision": 1,
        "history": [{"at": now.isoformat(), "by": principal.person_id, "action": "decided", "changes": {},
                     "reason": values.get("reason") or ""}],
    }
    async with transaction(ctx.sessions) as s:
        await s.execute(insert(db.measures).values(**row))
    ctx.metrics.measures.labels("decided").inc()
    return _measure_out(row)


def _jsonable(v: Any) -> Any:
    return v.isoformat() if isinstance(v, date) else v


async def update_measure(*, ctx: Context, principal: Principal, measure_id: str, changes: dict[str, Any],
                         reason: str) -> dict[str, Any]:
    """Re-decide a measure: apply changed fields and record who, when, what and why in its history
    (its free texts and the reason checked first: nothing is stored if refused)."""
    _check_texts({**changes, "reason": reason})
    async with transaction(ctx.sessions) as s:
        row = await db.get_measure(s, measure_id)
        if row is None:
            raise MeasureNotFound(measure_id)
        diff = {k: {"from": _jsonable(row[k]), "to": _jsonable(v)} for k, v in changes.items()
                if k in MEASURE_FIELDS and row[k] != v}
        if not diff:
            return _measure_out(row)
        merged = {**row, **{k: changes[k] for k in diff}}
        _validate_measure(ctx.snapshot(), merged)
        now = utcnow()
        entry = {"at": now.isoformat(), "by": principal.person_id, "action": "re-decided", "changes": diff,
                 "reason": reason}
        merged["history"] = [*row["history"], entry]
        merged["updated_at"] = now
        merged["revision"] = row["revision"] + 1
        await s.execute(update(db.measures).where(db.measures.c.id == measure_id).values(
            **{k: merged[k] for k in diff}, history=merged["history"], updated_at=now, revision=merged["revision"]))
    ctx.metrics.measures.labels("re-decided").inc()
    return _measure_out(merged)


async def get_measure(*, ctx: Context, measure_id: str) -> dict[str, Any]:
    """A measure by id."""
    if not stored_id(measure_id):
        raise MeasureNotFound(measure_id)
    async with ctx.sessions() as s:
        row = await db.get_measure(s, measure_id)
    if row is None:
        raise MeasureNotFound(measure_id)
    return _measure_out(row)


def measure_names(snap: OrgSnapshot, measure: dict[str, Any]) -> dict[str, Any]:
    """A measure as people read it: besides the ids, its area's and responsible actor's names, its items'
    labels and each decision's decider by name (as the analysis body tells its measures)."""
    item_names = {code: {"sv": sv, "en": en}
                  for code, (sv, en) in vocabulary_of(snap, measure["municipality_id"]).labels.items()}
    area, actor = snap.areas.get(measure["area_id"]), snap.actors.get(measure["responsible_actor"])
    return {**measure, "area_name": area.name if area else measure["area_id"],
            "responsible_actor_name": actor.name if actor else measure["responsible_actor"],
            **_decision_names(snap, measure, item_names)}


def municipality_actors(snap: OrgSnapshot, municipality_id: str) -> list[dict[str, str]]:
    """The actors a measure of a municipality may name as responsible: those with people working there."""
    ids = {p.actor for p in snap.people.values()
           if municipality_id in p.municipalities
           or any((area := snap.areas.get(x)) is not None and area.municipality_id == municipality_id
                  for x in p.areas)}
    return sorted(({"id": actor.id, "name": actor.name, "kind": actor.kind}
                   for i in ids if (actor := snap.actors.get(i)) is not None), key=lambda a: a["name"].casefold())


async def measure_effect_now(*, ctx: Context, measure_id: str) -> dict[str, Any]:
    """A measure's effect so far: per targeted item, the values of the periods before its start and from it on
    (at most ``EST_ANALYSIS_EFFECT_MAX_PERIODS`` each side, periods begun by today) and their means."""
    if not stored_id(measure_id):
        raise MeasureNotFound(measure_id)
    snap = ctx.snapshot()
    async with ctx.sessions() as s:
        row = await db.get_measure(s, measure_id)
        if row is None:
            raise MeasureNotFound(measure_id)
        area = snap.areas.get(row["area_id"])
        muni = snap.municipalities.get(row["municipality_id"])
        kind = reporting_kind(area.cadence) if area else "week"
        as_of = local_date(ctx.clock.now(), muni.timezone if muni else DEFAULT_TIMEZONE) + timedelta(days=1)
        around = await db.pictures_around(s, row["area_id"], kind=kind, start=row["start"], as_of=as_of,
                                          limit=ctx.settings.effect_max_periods)
    vocab = vocabulary_of(snap, row["municipality_id"])
    effects, series = _effects(row, around, vocab, ctx=ctx, as_of=as_of)
    out = []
    for effect in effects:
        sv, en = vocab.labels.get(effect.item, (effect.item, effect.item))
        points = [{"period": p.id, "value": v, "after": p.end > row["start"]} for p, v in series[effect.item]]
        out.append({**asdict(effect), "label_sv": sv, "label_en": en, "points": points})
    return {"measure_id": row["id"], "area_id": row["area_id"], "start": row["start"].isoformat(),
            "as_of": as_of.isoformat(), "items": out}


async def list_measures(*, ctx: Context, area_id: str | None = None, municipality_id: str | None = None,
                        area_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Measures of an area or municipality."""
    if not all(stored_id(x) for x in (area_id or "", municipality_id or "", *(area_ids or ()))):
        return []
    async with ctx.sessions() as s:
        rows = await db.list_measures(s, area_id=area_id, municipality_id=municipality_id, area_ids=area_ids)
    return [_measure_out(r) for r in rows]


async def refresh_open_gauge(*, ctx: Context) -> None:
    """Set the open-problems gauge from the database (at start)."""
    async with ctx.sessions() as s:
        ctx.metrics.open_problems.set(await db.open_problem_count(s))
