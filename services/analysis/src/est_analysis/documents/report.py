"""The readable report of a strategic analysis: a self-contained HTML page (jinja2 + inline SVG)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from est_shared.periods import Period, PeriodError
from jinja2 import Environment, FileSystemLoader, select_autoescape

from est_analysis.documents import charts

TEXT: dict[str, dict[str, str]] = {
    "sv": {
        "versions": "Ändrade checklistpunkter",
        "versions_rule": "En punkt som ersätter en tidigare visas som en serie: före bytet med den tidigare "
                         "punktens värden och flaggor.",
        "title": "Strategisk analys", "quarter": "kvartal", "tertial": "tertial", "summary": "Sammanfattning",
        "persistent": "Bestående problem", "areas": "Områden", "measures": "Åtgärder i kraft",
        "completeness": "Rapporteringsgrad", "ranking": "Områden efter behov", "rank": "Plats",
        "area": "Område", "score": "Behovspoäng", "high": "Flaggat högt", "other": "Övriga flaggor",
        "item": "Punkt", "kofn": "k av n", "flagged_periods": "Flaggade perioder", "held_at": "Bestående vid",
        "from": "från", "year": "år", "yearly_title": "Lägesbild och åtgärdsplan",
        "law": "Kommunens lägesbild och åtgärdsplan enligt lag (2023:196) om kommuners ansvar för "
               "brottsförebyggande arbete.",
        "plan": "Åtgärdsplan", "plan_intro": "Åtgärderna som beslutats för året: vad, var, vilka problem de riktar sig "
        "mot, vem som ansvarar, resurser, när, hur de följs upp och effekten hittills.",
        "plan_what": "Vad", "plan_where": "Var", "plan_problems": "Problem", "plan_when": "När",
        "plan_followup": "Uppföljning", "plan_effect": "Effekt hittills",
        "no_plan": "Inga åtgärder beslutade för året.",
        "ongoing": "Pågår", "yes": "ja", "no": "nej", "trends": "Utveckling per punkt",
        "heatmap": "Flaggor per punkt och period", "no_problems": "Inga bestående problem under perioden.",
        "no_trends": "Inga punkter med värden under perioden.", "no_measures": "Inga åtgärder i kraft.",
        "measure": "Åtgärd", "responsible": "Ansvarig", "period": "Period", "resources": "Resurser",
        "status": "Status", "effect": "Effekt", "before": "före", "after": "efter", "periods": "perioder",
        "fell": "minskade", "rose": "ökade", "unchanged": "oförändrat", "insufficient_data": "för lite underlag",
        "hours": "timmar", "sek": "kr", "rules": "Så är analysen gjord", "compiled": "Sammanställd",
        "revision": "revision", "reporting_periods": "Rapportperioder",
        "pictures": "lägesbilder", "received": "rapportörer som rapporterat, av förväntade",
        "legend_high": "hög", "legend_rising": "ökande", "legend_new": "ny", "legend_none": "ej flaggad",
        "legend_missing": "ingen lägesbild", "missing": "ingen lägesbild", "decided_by": "Beslutad av",
        "kofn_rule": "Ett problem är bestående när en punkt är flaggad i minst {k} av de senaste {n} "
                     "rapportperioderna. Det avslutas efter {r} perioder i följd utan att regeln uppfylls.",
        "planned": "planerad", "active": "pågående", "completed": "genomförd", "cancelled": "avbruten",
        "key_persistent": "bestående problem", "key_areas": "områden med bestående problem",
        "key_measures": "åtgärder i kraft", "key_completeness": "rapporteringsgrad",
        "weekly": "veckovis", "biweekly": "varannan vecka", "local_time": "svensk tid",
        "decisions": "Beslut", "act_decided": "Beslutad", "act_redecided": "Omprövad", "act_closed": "Avslutad",
        "by": "av", "reason": "Motivering",
        "earlier": "Före områdets första period: {name}",
        "field_title": "Titel", "field_description": "Beskrivning", "field_items": "Punkter",
        "field_responsible_actor": "Ansvarig", "field_decided_by": "Beslutad av", "field_start": "Start",
        "field_end": "Slut", "field_hours": "Timmar", "field_money_sek": "Kronor", "field_status": "Status",
    },
    "en": {
        "versions": "Changed checklist items",
        "versions_rule": "An item that replaces an earlier one is shown as one series: before the change with "
                         "the earlier item's values and flags.",
        "title": "Strategic analysis", "quarter": "quarter", "tertial": "tertial", "summary": "Summary",
        "persistent": "Persistent problems", "areas": "Areas", "measures": "Measures in force",
        "completeness": "Reporting completeness", "ranking": "Areas ranked by need", "rank": "Rank",
        "area": "Area", "score": "Need score", "high": "Flagged high", "other": "Other flags",
        "item": "Item", "kofn": "k of n", "flagged_periods": "Periods flagged", "held_at": "Persistent at",
        "from": "from", "year": "year", "yearly_title": "Situational picture and action plan",
        "law": "The municipality's yearly situational picture and action plan under the Swedish act (2023:196) on "
               "municipalities' responsibility for crime prevention.",
        "plan": "Action plan", "plan_intro": "The measures decided for the year: what, where, which problems they "
        "address, who is responsible, resources, when, how they are followed up and their effect so far.",
        "plan_what": "What", "plan_where": "Where", "plan_problems": "Problems", "plan_when": "When",
        "plan_followup": "Follow-up", "plan_effect": "Effect so far", "no_plan": "No measures decided for the year.",
        "ongoing": "Ongoing", "yes": "yes", "no": "no", "trends": "Trend by item",
        "heatmap": "Flags by item and period", "no_problems": "No persistent problems in the period.",
        "no_trends": "No items with values in the period.", "no_measures": "No measures in force.",
        "measure": "Measure", "responsible": "Responsible", "period": "Period", "resources": "Resources",
        "status": "Status", "effect": "Effect", "before": "before", "after": "after", "periods": "periods",
        "fell": "fell", "rose": "rose", "unchanged": "unchanged", "insufficient_data": "not enough data",
        "hours": "hours", "sek": "SEK", "rules": "How this analysis is made", "compiled": "Compiled",
        "revision": "revision", "reporting_periods": "Reporting periods",
        "pictures": "pictures", "received": "reporters who reported, of expected",
        "legend_high": "high", "legend_rising": "rising", "legend_new": "new", "legend_none": "not flagged",
        "legend_missing": "no picture", "missing": "no picture", "decided_by": "Decided by",
        "kofn_rule": "A problem is persistent when an item is flagged in at least {k} of the last {n} reporting "
                     "periods. It is resolved after {r} consecutive periods in which the rule no longer holds.",
        "planned": "planned", "active": "active", "completed": "completed", "cancelled": "cancelled",
        "key_persistent": "persistent problems", "key_areas": "areas with persistent problems",
        "key_measures": "measures in force", "key_completeness": "reporting completeness",
        "weekly": "weekly", "biweekly": "every second week", "local_time": "Swedish time",
        "decisions": "Decisions", "act_decided": "Decided", "act_redecided": "Re-decided", "act_closed": "Closed",
        "by": "by", "reason": "Reason",
        "earlier": "Before the area's first period: {name}",
        "field_title": "Title", "field_description": "Description", "field_items": "Items",
        "field_responsible_actor": "Responsible", "field_decided_by": "Decided by", "field_start": "Start",
        "field_end": "End", "field_hours": "Hours", "field_money_sek": "SEK", "field_status": "Status",
    },
}


def number(value: float | int | None, lang: str = "sv", digits: int = 1) -> str:
    """A number for people: no decimals when whole, else ``digits`` decimals (decimal comma in Swedish)."""
    if value is None:
        return "–"
    v = float(value)
    text = f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:.{digits}f}"
    return text.replace(".", ",").replace("-", "−") if lang == "sv" else text


MONTHS = {"sv": ("jan", "feb", "mars", "apr", "maj", "juni", "juli", "aug", "sep", "okt", "nov", "dec"),
          "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")}


def day_text(day: date, lang: str = "sv") -> str:
    """``30 nov`` (``30 Nov`` in English)."""
    return f"{day.day} {MONTHS.get(lang, MONTHS['sv'])[day.month - 1]}"


def _days(first: str, last: str, lang: str) -> str:
    try:
        start, end = Period.parse(first).start, Period.parse(last).end - timedelta(days=1)
    except PeriodError:
        return ""
    return f" ({day_text(start, lang)} – {day_text(end, lang)})"


def dated(pid: str, lang: str = "sv") -> str:
    """A reporting period with its days: ``2026-W49 (30 nov – 6 dec)``."""
    return pid + _days(pid, pid, lang)


def period_runs(ids: list[str], lang: str = "sv") -> list[str]:
    """Consecutive periods folded into dated ranges: ``[W40, W41, W42, W45]`` ->
    ``["2026-W40 – 2026-W42 (28 sep – 18 okt)", "2026-W45 (2 nov – 8 nov)"]``."""
    out: list[str] = []
    run: list[str] = []

    def close() -> None:
        out.append(dated(run[0], lang) if len(run) == 1 else f"{run[0]} – {run[-1]}{_days(run[0], run[-1], lang)}")

    for pid in ids:
        try:
            follows = bool(run) and Period.parse(run[-1]).next().id == pid
        except PeriodError:
            follows = False
        if run and not follows:
            close()
            run = []
        run.append(pid)
    if run:
        close()
    return out


def local_time(iso: str, tz: str = "Europe/Stockholm") -> str:
    """An ISO timestamp as ``YYYY-MM-DD HH:MM`` in the municipality's time zone."""
    from zoneinfo import ZoneInfo

    try:
        return datetime.fromisoformat(iso).astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")
    except (ValueError, TypeError):
        return iso[:16].replace("T", " ")


@lru_cache(maxsize=1)
def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
                      autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = number
    env.filters["runs"] = period_runs
    env.filters["local_time"] = local_time
    env.filters["dated"] = dated
    return env


def _label(entry: dict[str, Any], lang: str) -> str:
    return str(entry.get(f"label_{lang}") or entry.get("label_sv") or entry.get("item"))


CLOSING = ("completed", "cancelled")


def _decision_value(name: str, value: Any, t: dict[str, str], *, lang: str, items: dict[str, str],
                    actors: dict[str, str]) -> str:
    if value is None or value == "":
        return "–"
    if name == "status":
        return t.get(str(value), str(value))
    if name == "responsible_actor":
        return actors.get(str(value), str(value))
    if name == "items" and isinstance(value, list):
        return ", ".join(items.get(str(i), str(i)) for i in value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return number(value, lang)
    return str(value)


def decisions(measure: dict[str, Any], t: dict[str, str], *, lang: str, items: dict[str, str],
              tz: str = "Europe/Stockholm") -> list[dict[str, Any]]:
    """A measure's decision history for people: when, what (decided, re-decided, closed), by whom, each
    changed field as ``before → after`` in words, and why."""
    actors = dict(measure.get("actor_names") or {})
    out = []
    for entry in measure.get("history", []):
        changes = entry.get("changes") or {}
        status_to = (changes.get("status") or {}).get("to")
        action = ("act_closed" if status_to in CLOSING else
                  "act_decided" if entry.get("action") == "decided" else "act_redecided")
        out.append({
            "day": local_time(str(entry.get("at", "")), tz)[:10], "action": t[action],
            "by": entry.get("by_name") or entry.get("by") or "",
            "changes": [f"{t.get('field_' + name, name)}: "
                        f"{_decision_value(name, c.get('from'), t, lang=lang, items=items, actors=actors)} → "
                        f"{_decision_value(name, c.get('to'), t, lang=lang, items=items, actors=actors)}"
                        for name, c in changes.items()],
            "reason": entry.get("reason") or "",
        })
    return out


def money(value: float, lang: str = "sv") -> str:
    """Whole kronor with thousands apart: ``45 000`` (Swedish, a no-break space), ``45,000`` (English)."""
    text = f"{value:,.0f}"
    return text.replace(",", "\u00a0") if lang == "sv" else text


def document_title(body: dict[str, Any], t: dict[str, str]) -> str:
    """``Strategisk analys``, or for a year ``Lägesbild och åtgärdsplan``."""
    return t["yearly_title"] if body.get("kind") == "year" else t["title"]


def action_plan(body: dict[str, Any], t: dict[str, str], lang: str) -> list[dict[str, str]]:
    """The year's action plan, a row per measure decided: what, where, problems, who, resources, when, how it is
    followed up (its decisions) and its effect so far, in words (the same rows in HTML, PDF and DOCX)."""
    areas = {a["area_id"]: a for a in body.get("areas", [])}
    tz = body.get("timezone") or "Europe/Stockholm"
    rows = []
    for m in body.get("measures", []):
        area = areas.get(m["area_id"], {})
        names = {tr["item"]: _label(tr, lang) for tr in area.get("trends", [])}
        labels = {code: str(lab.get(lang) or code) for code, lab in (m.get("item_labels") or {}).items()}
        items = {**labels, **names}
        res = m.get("resources") or {}
        resources = ", ".join(x for x in (
            f"{number(res['hours'], lang)} {t['hours']}" if res.get("hours") else "",
            f"{money(res['money_sek'], lang)} {t['sek']}" if res.get("money_sek") else "") if x) or "–"
        said = decisions(m, t, lang=lang, items=items, tz=tz)
        followup = "; ".join(f"{d['day']} {d['action']}" + (f" {t['by']} {d['by']}" if d["by"] else "")
                             + (f" ({t['reason']}: {d['reason']})" if d["reason"] else "") for d in said)
        effect = "; ".join(
            f"{items.get(e['item'], e['item'])}: {number(e['before_mean'], lang, 2)} → "
            f"{number(e['after_mean'], lang, 2)} {t[e['direction']]}" if e.get("periods_compared")
            else f"{items.get(e['item'], e['item'])}: {t['insufficient_data']}" for e in m.get("effect", []))
        rows.append({
            "what": f"{m['title']} ({t.get(str(m['status']), m['status'])})"
                    + (f". {m['description']}" if m.get("description") else ""),
            "where": str(area.get("area_name") or m["area_id"]),
            "problems": ", ".join(items.get(i, i) for i in m.get("items", [])),
            "who": str(m.get("responsible_actor_name") or m["responsible_actor"]), "resources": resources,
            "when": f"{m['start']} – {m['end']}" if m.get("end") else f"{t['from']} {m['start']}",
            "followup": followup or "–",
            "effect": effect or "–"})
    return rows


def render_report(body: dict[str, Any], *, lang: str = "sv", for_print: bool = False) -> str:
    """The analysis as one HTML document in Swedish (default) or English."""
    lang = lang if lang in TEXT else "sv"
    t = TEXT[lang]
    tips = not for_print  # a printed page has no pointer: its charts carry no tooltips and fewer shapes
    ranked = body.get("areas_ranked", [])
    top_score = max([a["score"] for a in ranked] + [1])
    need_chart = charts.bars([(a["area_name"], float(a["score"]),
                               "#c0392b" if a["persistent_problems"] else ("#e9a23b" if a["score"] else "#9fb3c8"))
                              for a in ranked], vmax=top_score)
    areas = []
    tz = body.get("timezone") or "Europe/Stockholm"
    flags = {flag: t[f"legend_{flag}"] for flag in charts.FLAG_COLOURS}
    for area in body.get("areas", []):
        periods = area.get("periods_begun", area["reporting_periods"])
        names = {tr["item"]: _label(tr, lang) for tr in area["trends"]}
        # one small chart per item with data, all on the area's shared axes (no legend to cut off)
        series = [{"label": _label(tr, lang), "points": tr["points"]} for tr in area["trends"]]
        vmax = charts.shared_max(series)
        words = {**flags, **{pid: dated(pid, lang) for pid in periods}}
        multiples = [{"label": sr["label"], "svg": charts.small_multiple(periods, sr, vmax=vmax, words=words,
                                                                         tips=tips)}
                     for sr in series]
        rows = [{"label": _label(tr, lang), "cells": tr["points"]} for tr in area["trends"]]
        effects = []
        for m in area["measures"]:
            labels = {code: str(lab.get(lang) or code) for code, lab in (m.get("item_labels") or {}).items()}
            effects.append({**m, "effect_rows": [{**e, "label": names.get(e["item"], e["item"])}
                                                 for e in m.get("effect", [])],
                            "decisions": decisions(m, t, lang=lang, tz=tz, items={**labels, **names})})
        replaced = []
        for old in area.get("replaces", []):
            old_words = {**flags, **{pid: dated(pid, lang) for pid in old["periods"]}}
            old_rows = [{"label": _label(tr, lang), "cells": tr["points"]} for tr in old["trends"]]
            replaced.append({**old, "heading": t["earlier"].format(name=old["area_name"]),
                             "heat_svg": charts.heat_map(old["periods"], old_rows, missing_label=t["missing"],
                                                         words=old_words, tips=tips) if old_rows else None,
                             "completeness_svg": charts.completeness_columns(old["completeness"]["per_period"],
                                                                             tips=tips)})
        areas.append({
            **area,
            "replaced_view": replaced,
            "multiples": multiples,
            "heat_svg": charts.heat_map(periods, rows, missing_label=t["missing"], words=words,
                                        tips=tips) if rows else None,
            "completeness_svg": charts.completeness_columns(area["completeness"]["per_period"], tips=tips),
            "measures_view": effects,
            "problems_view": [{**p, "label": _label(p, lang)} for p in area["persistent_problems"]],
        })
    rates = [a["completeness"]["rate"] for a in body.get("areas", []) if a["completeness"]["rate"] is not None]
    exp = sum(a["completeness"]["expected"] for a in body.get("areas", []))
    rec = sum(a["completeness"]["received"] for a in body.get("areas", []))
    key = {
        "persistent": len(body.get("persistent_problems", [])),
        "areas": sum(1 for a in ranked if a["persistent_problems"]),
        "areas_total": len(ranked),
        "measures": len(body.get("measures", [])),
        "completeness": f"{round(100 * rec / exp)} %" if exp else ("–" if not rates else f"{round(100 * rates[0])} %"),
    }
    rule = body.get("rule", {})
    return _env().get_template("report.html.j2").render(
        a=body, t=t, lang=lang, areas=areas, for_print=for_print, need_chart=need_chart, key=key,
        kofn_rule=t["kofn_rule"].format(k=rule.get("k"), n=rule.get("n"), r=rule.get("resolve_after")),
        need_rule=rule.get(f"need_score_{lang}", ""), flagged_rule=rule.get(f"flagged_{lang}", ""),
        thursday_rule=body.get("thursday_rule", {}).get(lang, ""), colours=charts.FLAG_COLOURS,
        no_flag=charts.NO_FLAG, period_kind=t.get(body.get("kind", ""), ""),
        summary=body.get("summary", {}).get(lang, ""), title=document_title(body, t),
        plan=action_plan(body, t, lang) if body.get("kind") == "year" else None,
        versions=[str((c.get("text") or {}).get(lang) or c.get("item")) for c in body.get("continuations") or []])
