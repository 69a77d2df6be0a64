"""The aggregator's tables as downloads (CSV, XLSX): a municipality's picture, its completeness per actor, an
area's series, its alerts and the reports of its period.

Built from the same answers the API gives the caller (so a download never shows more than the JSON), with
names instead of ids and words in the reader's language; periods with the dates they cover.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from est_shared.exports import Column, Table
from est_shared.org import OrgSnapshot
from est_shared.periods import Period, PeriodError

FLAG_WORDS = {"high": {"sv": "hög", "en": "high"}, "rising": {"sv": "ökande", "en": "rising"},
              "new": {"sv": "ny", "en": "new"}}
KIND_WORDS = {"flag:high": {"sv": "högt läge", "en": "high level"}, "flag:rising": {"sv": "ökande", "en": "rising"},
              "flag:new": {"sv": "nytt problem", "en": "new problem"}}
SEVERITY_WORDS = {"critical": {"sv": "kritisk", "en": "critical"}, "warning": {"sv": "varning", "en": "warning"},
                  "info": {"sv": "information", "en": "information"}}
STATUS_WORDS = {"open": {"sv": "öppen", "en": "open"}, "published": {"sv": "publicerad", "en": "published"},
                "resolved": {"sv": "avslutat", "en": "resolved"}}


def _dates(period_id: str) -> tuple[str, str]:
    try:
        p = Period.parse(period_id)
    except PeriodError:
        return "", ""
    return p.start.isoformat(), (p.end - timedelta(days=1)).isoformat()


def _item_columns(codes: Sequence[str], labels: Mapping[str, Mapping[str, str]]) -> list[Column]:
    return [Column(f"item:{c}", labels.get(c, {}).get("sv") or c, labels.get(c, {}).get("en") or c) for c in codes]


def _labels_of(pictures: Sequence[Mapping[str, Any]], org: OrgSnapshot) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The item codes in the pictures, in checklist order, with their labels."""
    labels: dict[str, dict[str, str]] = {}
    order: dict[str, int] = {}
    for checklist in org.checklists.values():
        for i, item in enumerate(checklist.items):
            labels.setdefault(item.code, {"sv": item.label_sv, "en": item.label_en})
            order.setdefault(item.code, i)
    codes: dict[str, None] = {}
    for pic in pictures:
        for code, it in (pic.get("items") or {}).items():
            codes[code] = None
            if it.get("label_sv"):
                labels[code] = {"sv": it["label_sv"], "en": it.get("label_en") or it["label_sv"]}
    return sorted(codes, key=lambda c: (order.get(c, 10_000), c)), labels


def _flagged(items: Mapping[str, Any], labels: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    out = {}
    for lang in ("sv", "en"):
        out[lang] = ", ".join(f"{labels.get(code, {}).get(lang, code)} ({FLAG_WORDS[it['flag']][lang]})"
                              for code, it in items.items() if it.get("flag") in FLAG_WORDS)
    return out


def municipality_table(body: Mapping[str, Any], org: OrgSnapshot) -> Table:
    """One row per area: reports, reporters against expected, completeness and each item's value."""
    areas = body.get("areas") or []
    codes, labels = _labels_of(areas, org)
    muni = org.municipalities.get(str(body.get("municipality_id")))
    name = muni.name if muni else str(body.get("municipality_id"))
    start, end = _dates(str(body.get("period")))
    columns = [Column("area", "Område", "Area"), Column("period", "Period", "Period"),
               Column("from", "Från", "From"), Column("to", "Till", "To"),
               Column("status", "Status", "Status"), Column("reports", "Rapporter", "Reports"),
               Column("received", "Rapportörer som rapporterat", "Reporters who reported"),
               Column("expected", "Förväntade rapportörer", "Expected reporters"),
               Column("rate", "Rapporteringsgrad", "Completeness"), *_item_columns(codes, labels),
               Column("flagged", "Flaggade punkter", "Flagged items")]
    rows = []
    for pic in areas:
        comp = pic.get("completeness") or {}
        items = pic.get("items") or {}
        rows.append({"area": pic.get("area_name") or pic.get("area_id"), "period": pic.get("period"),
                     "from": start, "to": end, "status": STATUS_WORDS.get(str(pic.get("status")), pic.get("status")),
                     "reports": pic.get("reports"), "received": comp.get("received"), "expected": comp.get("expected"),
                     "rate": comp.get("rate"), **{f"item:{c}": (items.get(c) or {}).get("value") for c in codes},
                     "flagged": _flagged(items, labels)})
    period = body.get("period", "")
    return Table(f"{name} {period}", f"{name} {period}", columns, rows)


WHOLE_MUNICIPALITY = {"sv": "Hela kommunen", "en": "Whole municipality"}


def completeness_rows(body: Mapping[str, Any], org: OrgSnapshot) -> list[dict[str, Any]]:
    """Who reported in a municipality's period, per area and actor (by name), then each actor's total over the
    areas (``area`` None): expected reporters, those who reported, on time, late, with nothing to report, and
    the rate."""
    rows: list[dict[str, Any]] = []
    totals: dict[str, dict[str, int]] = {}
    fields = ("expected", "received", "on_time", "late", "nothing_to_report")

    def row(area: Any, actor_id: str, counts: Mapping[str, int]) -> dict[str, Any]:
        actor = org.actors.get(actor_id)
        expected = counts.get("expected", 0)
        rate = min(1.0, counts.get("received", 0) / expected) if expected else None
        return {"area": area, "actor_id": actor_id, "actor": actor.name if actor else actor_id,
                **{f: counts.get(f, 0) for f in fields}, "rate": None if rate is None else round(rate, 4)}

    for pic in body.get("areas") or []:
        per_actor = (pic.get("completeness") or {}).get("per_actor") or {}
        for actor_id, counts in per_actor.items():
            rows.append({"area_id": pic.get("area_id"), **row(pic.get("area_name") or pic.get("area_id"),
                                                              actor_id, counts)})
            total = totals.setdefault(actor_id, dict.fromkeys(fields, 0))
            for f in fields:
                total[f] += int(counts.get(f, 0))
    rows.sort(key=lambda r: (str(r["area"]), str(r["actor"])))
    def actor_name(actor_id: str) -> str:
        return org.actors[actor_id].name if actor_id in org.actors else actor_id

    rows += [{"area_id": None, **row(None, a, c)} for a, c in sorted(totals.items(), key=lambda kv: actor_name(kv[0]))]
    return rows


def completeness_table(municipality_id: str, period: str, rows: Sequence[Mapping[str, Any]],
                       org: OrgSnapshot) -> Table:
    """``completeness_rows`` as a table."""
    muni = org.municipalities.get(municipality_id)
    name = muni.name if muni else municipality_id
    columns = [Column("area", "Område", "Area"), Column("actor", "Aktör", "Actor"),
               Column("expected", "Förväntade rapportörer", "Expected reporters"),
               Column("received", "Har rapporterat", "Reported"), Column("on_time", "I tid", "On time"),
               Column("late", "Sent", "Late"), Column("nothing_to_report", "Inget att rapportera", "Nothing to report"),
               Column("rate", "Rapporteringsgrad", "Completeness")]
    shown = [{**r, "area": WHOLE_MUNICIPALITY if r.get("area") is None else r["area"]} for r in rows]
    return Table(f"Inrapportering {name} {period}", f"Reporting {name} {period}", columns, shown)


def series_table(body: Mapping[str, Any], org: OrgSnapshot) -> Table:
    """One row per period of an area's series: status, reports, completeness and each item's value."""
    pictures = body.get("pictures") or []
    codes, labels = _labels_of(pictures, org)
    area = org.areas.get(str(body.get("area_id")))
    name = area.name if area else str(body.get("area_id"))
    columns = [Column("period", "Period", "Period"), Column("from", "Från", "From"), Column("to", "Till", "To"),
               Column("status", "Status", "Status"), Column("version", "Version", "Version"),
               Column("reports", "Rapporter", "Reports"), Column("rate", "Rapporteringsgrad", "Completeness"),
               *_item_columns(codes, labels), Column("flagged", "Flaggade punkter", "Flagged items")]
    rows = []
    for pic in pictures:
        start, end = _dates(str(pic.get("period")))
        items = pic.get("items") or {}
        rows.append({"period": pic.get("period"), "from": start, "to": end,
                     "status": STATUS_WORDS.get(str(pic.get("status")), pic.get("status")),
                     "version": pic.get("version"), "reports": pic.get("reports"), "rate": pic.get("completeness_rate"),
                     **{f"item:{c}": (items.get(c) or {}).get("value") for c in codes},
                     "flagged": _flagged(items, labels)})
    return Table(f"{name} {body.get('from')}–{body.get('to')}", f"{name} {body.get('from')}–{body.get('to')}",
                 columns, rows)


def alerts_table(area_id: str, alerts: Sequence[Mapping[str, Any]], org: OrgSnapshot) -> Table:
    """An area's alerts, open and resolved."""
    _, labels = _labels_of([], org)
    area = org.areas.get(area_id)
    name = area.name if area else area_id
    columns = [Column("raised_at", "Larmat", "Raised"), Column("period", "Period", "Period"),
               Column("item", "Punkt", "Item"), Column("kind", "Slag", "Kind"),
               Column("severity", "Allvarlighet", "Severity"), Column("status", "Status", "Status"),
               Column("resolved_period", "Avslutat period", "Resolved in period")]
    rows = [{"raised_at": a.get("raised_at"), "period": a.get("period"),
             "item": labels.get(str(a.get("item")), str(a.get("item"))),
             "kind": KIND_WORDS.get(str(a.get("kind")), a.get("kind")),
             "severity": SEVERITY_WORDS.get(str(a.get("severity")), a.get("severity")),
             "status": STATUS_WORDS.get(str(a.get("status")), a.get("status")),
             "resolved_period": a.get("resolved_period")} for a in alerts]
    return Table(f"Larm {name}", f"Alerts {name}", columns, rows)


BEVERAGE_WORDS = {"starköl": {"sv": "starköl", "en": "strong beer"}, "folköl": {"sv": "folköl", "en": "light beer"},
                  "cider_alkolask": {"sv": "cider/alkoläsk", "en": "cider/alcopop"}, "vin": {"sv": "vin", "en": "wine"},
                  "sprit": {"sv": "sprit", "en": "spirits"}, "hembrant": {"sv": "hembränt", "en": "home-distilled"},
                  "other": {"sv": "annat", "en": "other"}}
_KRONOBERG_COUNTS = (("interventions", "Ingripanden", "Interventions"),
                     ("under_18", "Under 18 år", "Under 18"),
                     ("guardian_contacted", "Vårdnadshavare kontaktad", "Guardian contacted"),
                     ("guardian_came", "Vårdnadshavare kom", "Guardian came"),
                     ("direct_forfeiture", "Hällt ut på plats", "Poured out on the spot"),
                     ("social_services_notified", "Socialtjänsten underrättad", "Social services notified"),
                     ("containers", "Förpackningar", "Containers"),
                     ("litres_total", "Liter totalt", "Litres in all"))


def kronoberg_view_of(body: Mapping[str, Any], org: OrgSnapshot) -> dict[str, Any]:
    """A municipality's Kronoberg figures of a period, in all and per area, from its common picture."""
    muni = org.municipalities.get(str(body.get("municipality_id")))
    return {"municipality_id": body.get("municipality_id"),
            "municipality_name": muni.name if muni else body.get("municipality_id"),
            "period": body.get("period"),
            "totals": (body.get("totals") or {}).get("kronoberg"),
            "areas": [{"area_id": p.get("area_id"), "area_name": p.get("area_name") or p.get("area_id"),
                       "kronoberg": p.get("kronoberg")} for p in body.get("areas") or []]}


def kronoberg_table(view: Mapping[str, Any]) -> Table:
    """One row per area and one for the whole municipality: interventions, guardians, litres per beverage."""
    blocks = [view.get("totals") or {}, *((a.get("kronoberg") or {}) for a in view.get("areas") or [])]
    beverages = sorted({b for k in blocks if isinstance(k.get("litres_by_beverage"), Mapping)
                        for b in k["litres_by_beverage"]} | {b for k in blocks for b in k.get("containers_by_beverage")
                                                             or {}})
    start, end = (view["start"], view["end"]) if view.get("start") else _dates(str(view.get("period")))
    columns = [Column("area", "Område", "Area"), Column("period", "Period", "Period"),
               Column("from", "Från", "From"), Column("to", "Till", "To"),
               *(Column(key, sv, en) for key, sv, en in _KRONOBERG_COUNTS)]
    for b in beverages:
        words = BEVERAGE_WORDS.get(b, {"sv": b, "en": b})
        columns += [Column(f"litres:{b}", f"Liter {words['sv']}", f"Litres {words['en']}"),
                    Column(f"containers:{b}", f"Förpackningar {words['sv']}", f"Containers {words['en']}")]

    def row(area: Any, block: Mapping[str, Any]) -> dict[str, Any]:
        litres = block.get("litres_by_beverage")
        return {"area": area, "period": view.get("period"), "from": start, "to": end,
                **{key: block.get(key, 0) for key, _, _ in _KRONOBERG_COUNTS},
                **{f"litres:{b}": (litres.get(b, 0) if isinstance(litres, Mapping) else litres) for b in beverages},
                **{f"containers:{b}": (block.get("containers_by_beverage") or {}).get(b, 0) for b in beverages}}

    name = str(view.get("municipality_name"))
    rows = [row({"sv": f"Hela {name}", "en": f"All of {name}"}, view.get("totals") or {}),
            *(row(a.get("area_name"), a.get("kronoberg") or {}) for a in view.get("areas") or [])]
    period = view.get("period", "")
    return Table(f"Kronoberg {name} {period}", f"Kronoberg {name} {period}", columns, rows)


REPORT_STATE_WORDS = {"counts": {"sv": "gäller", "en": "counts"},
                      "correction": {"sv": "rättelse (gäller)", "en": "correction (counts)"},
                      "corrected": {"sv": "ersatt av rättelse", "en": "replaced by a correction"},
                      "withdrawn": {"sv": "tillbakatagen", "en": "withdrawn"}}


def _report_items(reports: Sequence[Mapping[str, Any]], org: OrgSnapshot
                  ) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The items of the checklists the reports used (in checklist order), then any other answered code."""
    labels: dict[str, dict[str, str]] = {}
    codes: dict[str, None] = {}
    for ref in dict.fromkeys(str(r.get("checklist")) for r in reports):
        checklist = org.checklist(ref)
        for item in checklist.items if checklist else ():
            codes.setdefault(item.code, None)
            labels.setdefault(item.code, {"sv": item.label_sv, "en": item.label_en})
    for r in reports:
        for code in r.get("answers") or {}:
            codes.setdefault(code, None)
    return list(codes), labels


def reports_table(body: Mapping[str, Any], org: OrgSnapshot) -> Table:
    """One row per stored report of an area's period: when it came, who sent it (the reporter's name for those
    who read names, always the actor), what became of it, each item's answer, the places and the notes."""
    reports = body.get("reports") or []
    codes, labels = _report_items(reports, org)
    names = any(r.get("reporter_name") for r in reports)
    columns = [Column("received_at", "Mottagen", "Received"), Column("period", "Period", "Period"),
               *([Column("reporter", "Rapportör", "Reporter")] if names else []),
               Column("actor", "Aktör", "Actor"), Column("state", "Status", "State"),
               Column("late", "Sen", "Late"), Column("nothing", "Inget att rapportera", "Nothing to report"),
               *_item_columns(codes, labels), Column("places", "Platser", "Places"),
               Column("notes", "Anteckningar", "Notes")]

    def label(code: str, lang: str) -> str:
        return labels.get(code, {}).get(lang) or code

    rows = []
    for r in reports:
        answers = r.get("answers") or {}
        places = {lang: "; ".join(f"{label(c, lang)}: {', '.join(a['places'])}" for c, a in answers.items()
                                  if a.get("places")) for lang in ("sv", "en")}
        notes = {lang: "; ".join(f"{label(n['item'], lang)}"
                                 f"{' (' + ', '.join(n['places']) + ')' if n.get('places') else ''}: {n['text']}"
                                 for n in r.get("notes") or []) for lang in ("sv", "en")}
        rows.append({"received_at": r.get("received_at"), "period": r.get("period"), "reporter": r.get("reporter_name"),
                     "actor": r.get("actor_name"), "state": REPORT_STATE_WORDS.get(str(r.get("state")), r.get("state")),
                     "late": bool(r.get("late")), "nothing": bool(r.get("nothing_to_report")),
                     **{f"item:{c}": (answers.get(c) or {}).get("value") for c in codes},
                     "places": places, "notes": notes})
    name = str(body.get("area_name") or body.get("area_id"))
    period = body.get("period", "")
    return Table(f"Rapporter {name} {period}", f"Reports {name} {period}", columns, rows)
