"""A printable picture: an area's picture of a period as one self-contained HTML page (A4, one to two pages
printed), to attach to the weekly meeting's minutes; the printer makes the PDF of it.

It holds what the caller may see of the picture (the same view the API gives: notes' text and who has not
reported only for those who may read them, Kronoberg figures coarsened outside police and social services),
with names instead of ids, the period dated, the key function's comments, completeness, the first
analysis, the items, the trend of the last periods as a coloured table, and the Kronoberg aggregates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from est_shared.checklists import LEVELS
from est_shared.org import OrgSnapshot
from est_shared.periods import period_label
from jinja2 import Environment

from est_aggregator.pictures.tables import FLAG_WORDS, STATUS_WORDS

TEXT = {
    "sv": {"title": "Lägesbild", "status": "Status", "version": "version", "published": "publicerad",
           "completeness": "Rapportering", "received": "{r} av {e} förväntade rapportörer har rapporterat ({p} %)",
           "reports": "{n} rapporter", "report": "1 rapport", "missing": "Har inte rapporterat",
           "comments": "Nyckelfunktionens kommentar", "analysis": "Första analys", "items_heading": "Punkter",
           "item": "Punkt", "value": "Värde", "trend": "Jämfört med förra perioden", "flag": "Flagga",
           "places": "Platser", "history": "Utveckling de senaste perioderna",
           "notes": "Anteckningar från rapportörerna",
           "note_count": "{n} anteckningar (texten visas för nyckelfunktioner och polis i kommunen)",
           "kronoberg": "Kronobergsmodellen: ingripanden mot ungas alkohol",
           "printed": "Utskriven {at} ur EST Lägesbild",
           "nothing": "Inga punkter med värden.", "municipality": "Kommun", "deadline": "Deadline",
           "up": "ökat", "down": "minskat", "flat": "oförändrat", "new": "nytt",
           "yes": "ja", "no": "nej", "fewer": "färre än {n}", "coarsened": "Antal under 3 visas som ”färre än 3”.",
           "k_interventions": "Ingripanden", "k_containers": "Behållare", "k_under_18": "Under 18 år",
           "k_guardian_contacted": "Vårdnadshavare kontaktad", "k_guardian_came": "Vårdnadshavare kom",
           "k_direct_forfeiture": "Hälldes ut på plats", "k_social_services_notified": "Socialtjänsten underrättad",
           "k_litres": "Liter", "k_litres_total": "Liter totalt", "k_share_under_18": "Andel under 18 år",
           "hidden_few": "visas inte vid färre än {n} ingripanden"},
    "en": {"title": "Situational picture", "status": "Status", "version": "version", "published": "published",
           "completeness": "Reporting", "received": "{r} of {e} expected reporters have reported ({p} %)",
           "reports": "{n} reports", "report": "1 report", "missing": "Not reported",
           "comments": "The key function's comment", "analysis": "First analysis", "items_heading": "Items",
           "item": "Item", "value": "Value", "trend": "Against the previous period", "flag": "Flag",
           "places": "Places", "history": "The last periods", "notes": "Reporters' notes",
           "note_count": "{n} notes (their text is shown to key functions and police of the municipality)",
           "kronoberg": "Kronoberg model: interventions against youth drinking", "printed": "Printed {at} from "
           "EST Lägesbild", "nothing": "No items with values.", "municipality": "Municipality", "deadline": "Deadline",
           "up": "up", "down": "down", "flat": "unchanged", "new": "new",
           "yes": "yes", "no": "no", "fewer": "fewer than {n}", "coarsened": "Counts below 3 are shown as "
           "“fewer than 3”.",
           "k_interventions": "Interventions", "k_containers": "Containers", "k_under_18": "Under 18",
           "k_guardian_contacted": "Guardian contacted", "k_guardian_came": "Guardian came",
           "k_direct_forfeiture": "Poured out on the spot", "k_social_services_notified": "Social services notified",
           "k_litres": "Litres", "k_litres_total": "Litres in total", "k_share_under_18": "Share under 18",
           "hidden_few": "not shown with fewer than {n} interventions"},
}
FLAG_COLOURS = {"high": "#c0392b", "rising": "#e9a23b", "new": "#2e86c1"}
KRONOBERG_KEYS = ("interventions", "litres_total", "containers", "under_18", "share_under_18",
                  "guardian_contacted", "guardian_came", "direct_forfeiture", "social_services_notified")
BEVERAGES = {"starköl": {"sv": "starköl", "en": "strong beer"}, "folköl": {"sv": "folköl", "en": "light beer"},
             "cider_alkolask": {"sv": "cider och alkoläsk", "en": "cider and alcopops"},
             "vin": {"sv": "vin", "en": "wine"}, "sprit": {"sv": "sprit", "en": "spirits"},
             "hembrant": {"sv": "hembränt", "en": "moonshine"}, "other": {"sv": "annat", "en": "other"}}

_TEMPLATE = """<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
@page { size: A4; margin: 16mm 14mm; }
body { font: 10.5pt/1.4 system-ui, "DejaVu Sans", sans-serif; color: #1b1b1b; margin: 0; }
h1 { font-size: 17pt; margin: 0 0 2mm; } h2 { font-size: 12pt; margin: 5mm 0 1.5mm; border-bottom: 1px solid #999; }
.meta { color: #444; margin: 0 0 3mm; } table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #bbb; padding: 1mm 1.5mm; text-align: left; vertical-align: top; }
th { background: #eef1f4; } td.num { text-align: right; } .flag { font-weight: 600; }
.cell { text-align: center; min-width: 9mm; } .small { font-size: 8.5pt; color: #444; }
section { break-inside: avoid; } footer { margin-top: 6mm; font-size: 8pt; color: #555; }
</style></head><body>
<h1>{{ title }}</h1>
<p class="meta">{{ t.municipality }}: {{ municipality }} · {{ t.status }}: {{ status }}{% if version %} ({{ t.version }}
{{ version }}{% if published_at %}, {{ t.published }} {{ published_at }}{% endif %}){% endif %}{% if deadline %}
· {{ t.deadline }}: {{ deadline }}{% endif %}</p>
{% if comments %}<section><h2>{{ t.comments }}</h2>{% for c in comments %}<p>{{ c }}</p>{% endfor %}</section>
{% endif %}
<section><h2>{{ t.completeness }}</h2><p>{{ received }} · {{ reports }}</p>
{% if missing %}<p>{{ t.missing }}: {{ missing | join(", ") }}</p>{% endif %}</section>
{% if analysis %}<section><h2>{{ t.analysis }}</h2><p>{{ analysis }}</p></section>{% endif %}
<section><h2>{{ t.items_heading }}</h2>
{% if items %}<table><tr><th>{{ t.item }}</th><th>{{ t.value }}</th><th>{{ t.trend }}</th><th>{{ t.flag }}</th>
<th>{{ t.places }}</th></tr>
{% for i in items %}<tr><td>{{ i.label }}</td><td class="num">{{ i.value }}</td><td>{{ i.trend }}</td>
<td class="flag" style="color: {{ i.colour }}">{{ i.flag }}</td><td>{{ i.places }}</td></tr>{% endfor %}</table>
{% else %}<p>{{ t.nothing }}</p>{% endif %}</section>
{% if history %}<section><h2>{{ t.history }}</h2><table><tr><th>{{ t.item }}</th>
{% for p in history_periods %}<th class="cell">{{ p }}</th>{% endfor %}</tr>
{% for row in history %}<tr><td>{{ row.label }}</td>{% for c in row.cells %}<td class="cell"
{% if c.colour %} style="background: {{ c.colour }}; color: #fff"{% endif %}>{{ c.value }}</td>{% endfor %}</tr>
{% endfor %}</table></section>{% endif %}
{% if notes %}<section><h2>{{ t.notes }}</h2><ul>{% for n in notes %}<li>{{ n }}</li>{% endfor %}</ul></section>
{% elif note_count %}<section><h2>{{ t.notes }}</h2><p>{{ note_count }}</p></section>{% endif %}
{% if kronoberg %}<section><h2>{{ t.kronoberg }}</h2><table>
{% for label, value in kronoberg %}<tr><th>{{ label }}</th><td class="num">{{ value }}</td></tr>{% endfor %}</table>
{% if coarsened %}<p class="small">{{ t.coarsened }}</p>{% endif %}</section>{% endif %}
<footer>{{ printed }}</footer>
</body></html>"""

_ENV = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
_PAGE = _ENV.from_string(_TEMPLATE)


def _num(value: Any, lang: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return TEXT[lang]["yes" if value else "no"]
    if isinstance(value, int | float):
        text = str(int(value)) if float(value).is_integer() else f"{value:.1f}"
        return text.replace(".", ",") if lang == "sv" else text
    hidden = str(value)
    if hidden.startswith("<"):
        digits = "".join(ch for ch in hidden[1:] if ch.isdigit()) or "3"
        return TEXT[lang]["hidden_few" if "interventions" in hidden else "fewer"].format(n=digits)
    return hidden


def _value(item: Mapping[str, Any], lang: str) -> str:
    if item.get("answer") == "level":
        level = int(item.get("value") or 0)
        return f"{level} ({LEVELS.get(level, {}).get(lang, '')})".replace(" ()", "")
    return _num(item.get("value"), lang)


def _label(item: Mapping[str, Any], code: str, lang: str) -> str:
    return str(item.get(f"label_{lang}") or item.get("label_sv") or code)


def _local(moment: Any, tz: str) -> str:
    try:
        from zoneinfo import ZoneInfo

        return datetime.fromisoformat(str(moment)).astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")
    except (ValueError, TypeError):
        return ""


def render_picture(body: Mapping[str, Any], series: Sequence[Mapping[str, Any]], org: OrgSnapshot, *,
                   lang: str = "sv", now: datetime) -> str:
    """The printable page of a picture view (``read_picture``'s answer for the caller) and its series."""
    lang = lang if lang in TEXT else "sv"
    t = TEXT[lang]
    muni = org.municipalities.get(str(body.get("municipality_id")))
    tz = muni.timezone if muni else "Europe/Stockholm"
    area = body.get("area_name") or body.get("area_id")
    comp = body.get("completeness") or {}
    reports = int(body.get("reports") or 0)
    items_in = body.get("items") or {}
    items = []
    for code, it in items_in.items():
        if not it.get("value") and not it.get("flag"):
            continue
        places = ", ".join(f"{p} ({n})" for p, n in (it.get("places") or {}).items())
        flag = it.get("flag")
        items.append({"label": _label(it, code, lang), "value": _value(it, lang),
                      "trend": t.get(str(it.get("trend")), "") if it.get("trend") else "",
                      "flag": FLAG_WORDS[flag][lang] if flag in FLAG_WORDS else "",
                      "colour": FLAG_COLOURS.get(str(flag), "inherit"), "places": places})
    shown = [p for p in series if p.get("reports")] or list(series)
    codes = [c for c in items_in if any((p.get("items") or {}).get(c, {}).get("value") for p in shown)]
    history = [{"label": _label(items_in[c], c, lang),
                "cells": [{"value": _num(((p.get("items") or {}).get(c) or {}).get("value"), lang)
                           if p.get("reports") else "–",
                           "colour": FLAG_COLOURS.get(str(((p.get("items") or {}).get(c) or {}).get("flag")))}
                          for p in series]} for c in codes]
    missing = [org.people[m].name if m in org.people else m for m in comp.get("missing_reporters") or []]
    k = body.get("kronoberg") or None
    kronoberg = []
    if k:
        kronoberg = [(t[f"k_{key}"], f"{round(100 * k[key])} %" if key == "share_under_18" and isinstance(
            k[key], int | float) else _num(k[key], lang)) for key in KRONOBERG_KEYS if key in k]
        litres = k.get("litres_by_beverage") or {}
        if isinstance(litres, Mapping):
            kronoberg += [(f"{t['k_litres']}: {BEVERAGES.get(bev, {}).get(lang, bev)}", _num(v, lang))
                          for bev, v in litres.items()]
    notes = [f"{n.get(f'label_{lang}') or n.get('label_sv') or n.get('item')}"
             f"{' · ' + str(n.get('place_name') or n.get('place')) if n.get('place') else ''}: {n.get('text')}"
             for n in body.get("notes") or []]
    note_count = int(body.get("note_count") or 0)
    pct = round(100 * float(comp.get("rate") or 0))
    return _PAGE.render(
        lang=lang, t=t, title=f"{t['title']} {area}, {period_label(str(body.get('period')), lang)}",
        municipality=muni.name if muni else body.get("municipality_id"),
        status=STATUS_WORDS.get(str(body.get("status")), {}).get(lang, body.get("status")),
        version=body.get("version") or 0, published_at=_local(body.get("published_at"), tz),
        deadline=_local(body.get("deadline"), tz),
        comments=[str(c.get("text")) for c in body.get("comments") or [] if c.get("text")][-1:],
        received=t["received"].format(r=comp.get("received", 0), e=comp.get("expected", 0), p=pct),
        reports=t["report"] if reports == 1 else t["reports"].format(n=reports), missing=missing,
        analysis=(body.get("first_analysis") or {}).get(lang, ""), items=items,
        history=history, history_periods=[period_label(str(p.get("period")), lang).split(" (")[0] for p in series],
        notes=notes, note_count=t["note_count"].format(n=note_count) if note_count else "",
        kronoberg=kronoberg, coarsened=bool(k and k.get("coarsened")),
        printed=t["printed"].format(at=_local(now.isoformat(), tz)))
