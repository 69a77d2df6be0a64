"""The analysis service's tables as downloads (CSV, XLSX): measures, and an analysis's persistent problems.

Names instead of ids (areas, actors, people, items), statuses and yes/no in the reader's language.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from est_shared.exports import Column, Table
from est_shared.org import OrgSnapshot

from est_analysis.documents.report import TEXT


def _words(key: str) -> dict[str, str]:
    return {"sv": TEXT["sv"][key], "en": TEXT["en"][key]}


def _item_names(snap: OrgSnapshot) -> dict[str, dict[str, str]]:
    names: dict[str, dict[str, str]] = {}
    for checklist in snap.checklists.values():
        for item in checklist.items:
            names[item.code] = {"sv": item.label_sv, "en": item.label_en}
    return names


MEASURE_COLUMNS = [
    Column("title", "Åtgärd", "Measure"), Column("area", "Område", "Area"),
    Column("items", "Problem som åtgärden riktar sig mot", "Problems addressed"),
    Column("responsible", "Ansvarig aktör", "Responsible actor"), Column("start", "Start", "Start"),
    Column("end", "Slut", "End"), Column("hours", "Timmar", "Hours"), Column("money_sek", "Kronor", "SEK"),
    Column("status", "Status", "Status"), Column("decided_by", "Beslutad av", "Decided by"),
    Column("revision", "Omprövningar", "Re-decisions"), Column("updated_at", "Senast ändrad", "Last changed"),
]


def measures_table(measures: Sequence[Mapping[str, Any]], snap: OrgSnapshot) -> Table:
    """Measures as the steering group lists them."""
    items = _item_names(snap)
    rows = []
    for m in measures:
        area = snap.areas.get(m["area_id"])
        actor = snap.actors.get(m["responsible_actor"])
        person = snap.people.get(str(m.get("decided_by") or ""))
        status = str(m["status"])
        resources = m.get("resources") or {}
        rows.append({
            "title": m["title"], "area": area.name if area else m["area_id"],
            "items": {lang: ", ".join(items.get(i, {}).get(lang, i) for i in m["items"]) for lang in ("sv", "en")},
            "responsible": actor.name if actor else m["responsible_actor"],
            "start": m["start"], "end": m.get("end"), "hours": resources.get("hours"),
            "money_sek": resources.get("money_sek"),
            "status": _words(status) if status in TEXT["sv"] else status,
            "decided_by": person.name if person else m.get("decided_by"),
            "revision": max(0, int(m.get("revision") or 1) - 1), "updated_at": m.get("updated_at"),
        })
    return Table("Åtgärder", "Measures", MEASURE_COLUMNS, rows)


PROBLEM_COLUMNS = [
    Column("area", "Område", "Area"), Column("item", "Punkt", "Item"), Column("kofn", "k av n", "k of n"),
    Column("flagged", "Flaggade perioder", "Periods flagged"), Column("held_at", "Bestående vid", "Persistent at"),
    Column("ongoing", "Pågår", "Ongoing"),
]


def problems_table(analysis: Mapping[str, Any]) -> Table:
    """An analysis's persistent problems, one row per area and item."""
    rows = [{"area": p.get("area_name") or p["area_id"], "item": {"sv": p["label_sv"], "en": p["label_en"]},
             "kofn": f"{p['k']}/{p['n']}", "flagged": p.get("periods_flagged") or [],
             "held_at": p.get("held_at") or [], "ongoing": bool(p.get("ongoing"))}
            for p in analysis.get("persistent_problems") or []]
    period = analysis.get("period", "")
    return Table(f"Bestående problem {period}", f"Persistent problems {period}", PROBLEM_COLUMNS, rows)
