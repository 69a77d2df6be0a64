"""E-mail rendering: subject, plain text and HTML of an event (or a digest) in Swedish or English."""

from __future__ import annotations

import email
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any

from est_shared.checklists import BUILTIN_CHECKLISTS, LEVELS
from est_shared.freetext import has_control_characters
from est_shared.periods import Period, PeriodError
from jinja2 import Environment, select_autoescape

T = {
    "sv": {"picture": "Lägesbild", "version": "version", "revision": "Revidering", "item": "Punkt",
           "value": "Värde", "trend": "Trend", "flag": "Flagga", "analysis": "Första analys",
           "completeness": "Inrapportering", "received": "inkomna", "expected": "förväntade",
           "alert_raised": "Larm", "alert_resolved": "Larm upphört", "strategic": "Strategisk analys",
           "report": "Rapport", "digest": "Sammanfattning", "more": "… och {n} händelser till",
           "changes": "Ändringar", "nothing": "Inga punkter rapporterade.", "severity": "Allvarlighet",
           "footer": "Skickat av EST Lägesbild. Leverans-id: {id}",
           "trend_up": "uppåt", "trend_down": "nedåt", "trend_flat": "oförändrad", "trend_new": "ny",
           "flag_rising": "ökande", "flag_high": "hög", "flag_new": "ny",
           "severity_info": "information", "severity_warning": "varning", "severity_critical": "kritisk",
           "kind_flag:high": "högt läge", "kind_flag:rising": "ökande", "kind_flag:new": "nytt problem",
           "kind_persistent": "bestående problem", "kind_other": "flaggat",
           "alert_lead": "{item} i {area}, {period}: {kind}.",
           "alert_over": "{item} i {area} är inte längre flaggat ({kind}) från {period}.",
           "ongoing": "pågår", "problems": "Bestående problem",
           "per_actor": "{actor}: {received} av {expected}", "hidden": "dolt (färre än {n} ingripanden)",
           "notes": "Anteckningar från rapportörerna", "note_one": "1 anteckning", "note_many": "{n} anteckningar",
           "notes_hidden": "Texten visas för nyckelfunktioner och polis i kommunen.",
           "chg_reports": "Rapporter", "chg_flag": "{item}, flagga", "chg_comments": "Kommentarer",
           "chg_received": "Inkomna", "chg_late": "Sena", "chg_nothing_to_report": "Inget att rapportera",
           "kronoberg": "Kronobergsmodellen", "interventions": "Ingripanden", "litres_total": "Liter totalt",
           "share_under_18": "Andel under 18", "guardian_contacted": "Vårdnadshavare kontaktad",
           "direct_forfeiture": "Direktförverkande", "coarsened": "Antal under 3 visas som <3.",
           "missing": "Har inte rapporterat", "reminder": "Påminnelse",
           "comment": "Kommentar från nyckelfunktionen", "comment_earlier": "tidigare version {v}"},
    "en": {"picture": "Situational picture", "version": "version", "revision": "Revision", "item": "Item",
           "value": "Value", "trend": "Trend", "flag": "Flag", "analysis": "First analysis",
           "completeness": "Reporting", "received": "received", "expected": "expected",
           "alert_raised": "Alert", "alert_resolved": "Alert resolved", "strategic": "Strategic analysis",
           "report": "Report", "digest": "Digest", "more": "… and {n} more events",
           "changes": "Changes", "nothing": "No items reported.", "severity": "Severity",
           "footer": "Sent by EST Lägesbild. Delivery id: {id}",
           "trend_up": "increasing", "trend_down": "decreasing", "trend_flat": "unchanged",
           "trend_new": "first time",
           "flag_rising": "growing", "flag_high": "above normal", "flag_new": "first reported",
           "severity_info": "low", "severity_warning": "moderate", "severity_critical": "severe",
           "kind_flag:high": "above-normal level", "kind_flag:rising": "growing", "kind_flag:new": "newly reported",
           "kind_persistent": "persistent problem", "kind_other": "flagged",
           "alert_lead": "{item} in {area}, {period}: {kind}.",
           "alert_over": "{item} in {area} is no longer flagged ({kind}) as of {period}.",
           "ongoing": "ongoing", "problems": "Persistent problems",
           "per_actor": "{actor}: {received} of {expected}", "hidden": "hidden (fewer than {n} interventions)",
           "notes": "Reporters' notes", "note_one": "1 note", "note_many": "{n} notes",
           "notes_hidden": "The text is shown to key functions and police of the municipality.",
           "chg_reports": "Reports", "chg_flag": "{item}, flag", "chg_comments": "Comments",
           "chg_received": "Received", "chg_late": "Late", "chg_nothing_to_report": "Nothing to report",
           "kronoberg": "Kronoberg model", "interventions": "Interventions", "litres_total": "Litres in total",
           "share_under_18": "Share under 18", "guardian_contacted": "Guardian contacted",
           "direct_forfeiture": "Direct forfeiture", "coarsened": "Counts below 3 are shown as <3.",
           "missing": "Not reported", "reminder": "Reminder",
           "comment": "Comment from the key function", "comment_earlier": "earlier version {v}"},
}

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_HTML = _env.from_string("""<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8"><title>{{ subject }}</title></head>
<body style="font-family: sans-serif">
<h1>{{ subject }}</h1>
{% for block in blocks %}
  {% if block.heading %}<h2>{{ block.heading }}</h2>{% endif %}
  {% for p in block.paragraphs or [] %}<p>{{ p }}</p>{% endfor %}
  {% if block.table %}
  <table border="1" cellpadding="4" cellspacing="0" style="border-collapse: collapse">
    <thead><tr>{% for h in block.table[0] %}<th align="left">{{ h }}</th>{% endfor %}</tr></thead>
    <tbody>{% for row in block.table[1:] %}<tr>{% for c in row %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}
    </tbody>
  </table>
  {% endif %}
  {% if block.bullets %}<ul>{% for b in block.bullets or [] %}<li>{{ b }}</li>{% endfor %}</ul>{% endif %}
  {% if block.link %}<p><a href="{{ block.link }}">{{ block.link }}</a></p>{% endif %}
{% endfor %}
<p style="color: #666; font-size: small">{{ footer }}</p>
</body></html>
""")


@dataclass
class Block:
    """A section of a message: heading, paragraphs, an optional table (header row first), bullets and a link."""

    heading: str = ""
    paragraphs: list[str] | None = None
    table: list[list[str]] | None = None
    bullets: list[str] | None = None
    link: str | None = None


@dataclass
class Rendered:
    """A rendered message before it becomes MIME."""

    subject: str
    blocks: list[Block]


MONTHS = {"sv": ("jan", "feb", "mar", "apr", "maj", "jun", "jul", "aug", "sep", "okt", "nov", "dec"),
          "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")}
_PERIOD_ID = re.compile(r"\b\d{4}-[WBQT]\d{1,2}\b(?! \()")


@dataclass(frozen=True)
class Names:
    """The names a recipient reads instead of the organisation's ids: areas, municipalities, actors, people and
    checklist items (Swedish and English labels). An id without a name stays as it is."""

    areas: Mapping[str, str] = field(default_factory=dict)
    municipalities: Mapping[str, str] = field(default_factory=dict)
    actors: Mapping[str, str] = field(default_factory=dict)
    people: Mapping[str, str] = field(default_factory=dict)
    items: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def area(self, area_id: str) -> str:
        return self.areas.get(area_id) or area_id

    def municipality(self, municipality_id: str) -> str:
        return self.municipalities.get(municipality_id) or municipality_id

    def actor(self, actor_id: str) -> str:
        return self.actors.get(actor_id) or actor_id

    def person(self, person_id: str) -> str:
        return self.people.get(person_id) or person_id

    def item(self, code: str, lang: str) -> str:
        labels = self.items.get(code)
        if labels is None:
            return code
        return (labels[1] if lang == "en" else labels[0]) or labels[0] or code


def _checklist_labels(checklists: Any) -> dict[str, tuple[str, str]]:
    """Item code -> (Swedish, English) label over the given checklists, built-in ones first (a later version's
    label wins)."""
    out: dict[str, tuple[str, str]] = {}
    for checklist in [*BUILTIN_CHECKLISTS.values(), *(checklists or {}).values()]:
        for item in checklist.items:
            out[item.code] = (item.label_sv, item.label_en)
    return out


NO_NAMES = Names(items=_checklist_labels({}))
_names_cache: list[tuple[Any, Names]] = []


def names_of(snapshot: Any) -> Names:
    """The names of an organisation snapshot (``est_shared.org.OrgSnapshot``; None: only the built-in checklist
    labels). The last snapshot's names are kept: every message of a fan-out or digest asks for the same one."""
    if snapshot is None:
        return NO_NAMES
    if _names_cache and _names_cache[0][0] is snapshot:
        return _names_cache[0][1]
    names = Names(areas={a.id: a.name for a in snapshot.areas.values()},
                  municipalities={m.id: m.name for m in snapshot.municipalities.values()},
                  actors={a.id: a.name for a in snapshot.actors.values()},
                  people={p.id: p.name for p in snapshot.people.values()},
                  items=_checklist_labels(snapshot.checklists))
    _names_cache[:] = [(snapshot, names)]
    return names


def _lang(language: str) -> str:
    return language if language in T else "sv"


def _day(d: date, lang: str, *, year: bool = False) -> str:
    return f"{d.day} {MONTHS[lang][d.month - 1]}" + (f" {d.year}" if year else "")


def period_text(period_id: str, language: str) -> str:
    """A period's id with the days or months it covers in the reader's language: ``2026-W49 (30 nov – 6 dec)``,
    ``2026-B47 (16–29 nov)``, ``2026-W01 (29 dec 2025 – 4 jan 2026)``, ``2026-T3 (sep–dec 2026)``; an id that is
    not a period stays as it is."""
    lang = _lang(language)
    try:
        p = Period.parse(period_id)
    except PeriodError:
        return period_id
    last = p.end - timedelta(days=1)
    if p.kind in ("quarter", "tertial"):
        return f"{p.id} ({MONTHS[lang][p.start.month - 1]}–{MONTHS[lang][last.month - 1]} {p.start.year})"
    if p.start.year != last.year:
        return f"{p.id} ({_day(p.start, lang, year=True)} – {_day(last, lang, year=True)})"
    if p.start.month == last.month:
        return f"{p.id} ({p.start.day}–{_day(last, lang)})"
    return f"{p.id} ({_day(p.start, lang)} – {_day(last, lang)})"


def dated(text: str, language: str) -> str:
    """``text`` with each period id in it followed by its dates (``period_text``), unless dates follow already."""
    return _PERIOD_ID.sub(lambda m: period_text(m.group(0), language), text)


def _num(v: float | None, lang: str = "en") -> str:
    if v is None:
        return "–"
    text = str(int(v)) if float(v).is_integer() else f"{v:.1f}"
    return text.replace(".", ",") if lang == "sv" else text


def _value(item: dict[str, Any], lang: str) -> str:
    if item.get("answer") == "level":
        level = int(item.get("value") or 0)
        word = LEVELS.get(level, {}).get(lang, "")
        return f"{level} ({word})" if word else str(level)
    return _num(item.get("value"), lang)


def _text(d: dict[str, str] | None, lang: str) -> str:
    d = d or {}
    return d.get(lang) or d.get("sv") or d.get("en") or next(iter(d.values()), "")


def render_event(event_type: str, data: dict[str, Any], language: str, names: Names = NO_NAMES) -> Rendered:
    """The message for one event, in the recipient's language, with the organisation's names for its ids."""
    lang = _lang(language)
    t = T[lang]
    if event_type == "se.est.picture.published":
        return _picture(data, lang, names)
    if event_type in ("se.est.alert.raised", "se.est.alert.resolved"):
        resolved = event_type.endswith("resolved")
        head = t["alert_resolved"] if resolved else t["alert_raised"]
        area = names.area(str(data.get("area_id", "")))
        item = names.item(str(data.get("item", "")), lang)
        period = period_text(str(data.get("period", "")), lang)
        kind = t.get(f"kind_{data.get('kind', '')}", t["kind_other"])
        lead = t["alert_over" if resolved else "alert_lead"].format(item=item, area=area, period=period, kind=kind)
        severity = data.get("severity")
        paragraphs = [lead, f"{t['severity']}: {t.get(f'severity_{severity}', t['severity_warning'])}"]
        return Rendered(f"{head}: {area} – {item} {period}", [Block(paragraphs=paragraphs)])
    if event_type == "se.est.analysis.published":
        subject = (f"{t['strategic']} {names.municipality(str(data.get('municipality_id', '')))} "
                   f"{period_text(str(data.get('period', '')), lang)}")
        bullets = [_problem(p, lang, names) for p in data.get("persistent_problems", [])[:20] if isinstance(p, dict)]
        blocks = [Block(paragraphs=[dated(_text(data.get("summary"), lang), lang)] if data.get("summary") else None)]
        if bullets:
            blocks.append(Block(heading=t["problems"], bullets=bullets))
        blocks.append(Block(heading=t["report"], link=str(data.get("report_path", "")) or None))
        return Rendered(subject, blocks)
    return Rendered(event_type, [Block(paragraphs=[str(data)[:2000]])])


def _problem(p: dict[str, Any], lang: str, names: Names) -> str:
    """One persistent problem of an analysis: area and item by name, whether it goes on."""
    area = str(p.get("area_name") or names.area(str(p.get("area_id", ""))))
    item = str(p.get(f"label_{lang}") or p.get("label_sv") or names.item(str(p.get("item", "")), lang))
    return f"{area}: {item}" + (f" ({T[lang]['ongoing']})" if p.get("ongoing") else "")


def _kronoberg_value(key: str, value: Any, lang: str) -> str:
    """A Kronoberg figure as read: decimal comma in Swedish, a share in per cent, a hidden figure in words."""
    if isinstance(value, str):
        hidden = re.fullmatch(r"<(\d+) interventions", value)
        return T[lang]["hidden"].format(n=hidden.group(1)) if hidden else value
    if key == "share_under_18" and isinstance(value, int | float):
        return f"{round(float(value) * 100)} %"
    return _num(value, lang) if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


_CHANGE = re.compile(r"^(?P<what>[a-z0-9_.]+)(?P<flag> flag)?: (?P<old>.*) → (?P<new>.*)$")


def _change(text: str, lang: str, items: dict[str, Any], names: Names) -> str:
    """One line of what a revision changed (the aggregator's ``klotter: 1 → 2``) with names and words."""
    t = T[lang]
    m = _CHANGE.match(text)
    if not m:
        return dated(text, lang)
    what, old, new = m["what"], m["old"], m["new"]
    if what in ("reports", "comments"):
        return f"{t[f'chg_{what}']}: {old} → {new}"
    if what.startswith("completeness."):
        key = f"chg_{what.removeprefix('completeness.')}"
        return f"{t.get(key, t['completeness'])}: {old} → {new}"
    found = items.get(what)
    summary: dict[str, Any] = found if isinstance(found, dict) else {}
    label = str(summary.get(f"label_{lang}") or summary.get("label_sv") or names.item(what, lang))
    if m["flag"]:
        def word(code: str) -> str:
            return t.get(f"flag_{code}", code) if code != "-" else "–"
        return f"{t['chg_flag'].format(item=label)}: {word(old)} → {word(new)}"
    if lang == "sv":
        old, new = old.replace(".", ","), new.replace(".", ",")
    return f"{label}: {old} → {new}"


def _notes(pic: dict[str, Any], lang: str, names: Names) -> Block | None:
    """The reporters' notes grouped by item, each with its place (``Klotter · Garagen: Ny tagg``), or only how
    many there are when the recipient does not read their text (``subscriptions.domain.render_for``)."""
    t = T[lang]
    notes = [n for n in pic.get("notes") or [] if isinstance(n, dict) and str(n.get("text") or "").strip()]
    if notes:
        order = {code: i for i, code in enumerate(sorted(pic.get("items") or {}))}
        bullets = []
        for n in sorted(notes, key=lambda n: (order.get(str(n.get("item")), len(order)), str(n.get("item")))):
            label = str(n.get(f"label_{lang}") or n.get("label_sv") or names.item(str(n.get("item", "")), lang))
            place = n.get("place_name") or n.get("place")
            bullets.append(f"{label} · {place}: {n['text']}" if place else f"{label}: {n['text']}")
        return Block(heading=t["notes"], bullets=bullets)
    count = int(pic.get("note_count") or 0)
    if count:
        return Block(heading=t["notes"], paragraphs=[
            t["note_one"] if count == 1 else t["note_many"].format(n=count), t["notes_hidden"]])
    return None


def _picture(data: dict[str, Any], lang: str, names: Names) -> Rendered:
    t = T[lang]
    pic = data.get("picture", {})
    name = pic.get("area_name") or names.area(str(pic.get("area_id", "")))
    period = period_text(str(pic.get("period", "")), lang)
    subject = f"{t['picture']} {name} {period}, {t['version']} {pic.get('version', '')}"
    if data.get("revision"):
        subject = f"{t['revision']}: {subject}"
    rows = [[t["item"], t["value"], t["trend"], t["flag"]]]
    items = pic.get("items", {})
    for code, item in sorted(items.items()):
        label = item.get(f"label_{lang}") or item.get("label_sv") or names.item(code, lang)
        trend = item.get("trend")
        flag = item.get("flag")
        rows.append([label, _value(item, lang), t.get(f"trend_{trend}", "") if trend else "",
                     t.get(f"flag_{flag}", "") if flag else ""])
    c = pic.get("completeness", {})
    reporting = [f"{c.get('received', 0)} {t['received']} / {c.get('expected', 0)} {t['expected']}"]
    missing = c.get("missing_reporters")
    if missing:  # only key functions of the municipality and admins get this field (domain.render_for)
        reporting.append(f"{t['missing']}: {', '.join(names.person(str(p)) for p in missing)}")
    per_actor = [t["per_actor"].format(actor=names.actor(str(a)), received=v.get("received", 0),
                                       expected=v.get("expected", 0))
                 for a, v in sorted((c.get("per_actor") or {}).items()) if isinstance(v, dict)]
    blocks = [
        Block(table=rows if len(rows) > 1 else None, paragraphs=None if len(rows) > 1 else [t["nothing"]]),
        Block(heading=t["completeness"], paragraphs=reporting, bullets=per_actor or None),
    ]
    notes = _notes(pic, lang, names)
    if notes is not None:
        blocks.append(notes)
    k = pic.get("kronoberg")
    if k:
        rows_k = [[t[key], _kronoberg_value(key, k[key], lang)]
                  for key in ("interventions", "litres_total", "share_under_18", "guardian_contacted",
                              "direct_forfeiture") if key in k]
        blocks.append(Block(heading=t["kronoberg"], table=[[t["item"], t["value"]], *rows_k],
                            paragraphs=[t["coarsened"]] if k.get("coarsened") else None))
    comments = _comments(pic, t)
    if comments:
        blocks.insert(0, Block(heading=t["comment"], paragraphs=comments))
    analysis = _text(pic.get("first_analysis"), lang)
    if analysis:
        blocks.append(Block(heading=t["analysis"], paragraphs=[dated(analysis, lang)]))
    if data.get("changes"):
        blocks.append(Block(heading=t["changes"], bullets=[_change(str(x), lang, items, names)
                                                           for x in data["changes"]]))
    return Rendered(subject, blocks)


def _comments(pic: dict[str, Any], t: dict[str, str]) -> list[str]:
    """The key function's publish comments, this version's first; an earlier version's says which."""
    version = pic.get("version")
    out: list[tuple[int, str]] = []
    for c in pic.get("comments") or []:
        text = str(c.get("text") or "").strip()
        if not text:
            continue
        v = c.get("version")
        if v == version:
            out.append((0, text))
        else:
            out.append((1, f"{text} ({t['comment_earlier'].format(v=v)})"))
    return [text for _rank, text in sorted(out, key=lambda r: r[0])]


def render_digest(window: str, entries: list[Rendered], more: int, language: str,
                  names: Names = NO_NAMES) -> Rendered:
    """One message listing several events, each once, with a 'more' line past the cap; ``window`` is the
    digest's ``municipality:period``."""
    lang = _lang(language)
    municipality, _, period = window.rpartition(":")
    title = " ".join(x for x in (names.municipality(municipality) if municipality else "",
                                 period_text(period, lang)) if x)
    blocks: list[Block] = []
    for e in entries:
        blocks.append(Block(heading=e.subject))
        blocks.extend(e.blocks)
    if more:
        blocks.append(Block(paragraphs=[T[lang]["more"].format(n=more)]))
    return Rendered(f"{T[lang]['digest']}: {title}", blocks)


def to_text(r: Rendered, footer: str) -> str:
    """Plain-text body with aligned tables."""
    lines = [r.subject, "=" * len(r.subject), ""]
    for b in r.blocks:
        if b.heading:
            lines += [b.heading, "-" * len(b.heading)]
        for p in b.paragraphs or []:
            lines += [p, ""]
        if b.table:
            widths = [max(len(row[i]) for row in b.table) for i in range(len(b.table[0]))]
            for n, row in enumerate(b.table):
                lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
                if n == 0:
                    lines.append("  ".join("-" * w for w in widths))
            lines.append("")
        for bullet in b.bullets or []:
            lines.append(f"- {bullet}")
        if b.bullets:
            lines.append("")
        if b.link:
            lines += [b.link, ""]
    lines.append(footer)
    return "\n".join(lines) + "\n"


def to_html(r: Rendered, footer: str, language: str) -> str:
    """HTML body (escaped)."""
    return _HTML.render(lang=_lang(language), subject=r.subject, blocks=r.blocks, footer=footer)


def one_line(text: str) -> str:
    """A header value without CR, LF or another control character (each becomes a space): names from an
    organisation snapshot of an older version may hold them, and the mail library refuses such a header."""
    if not has_control_characters(text):
        return text
    return " ".join("".join(" " if has_control_characters(c) else c for c in text).split())


def build_email(r: Rendered, *, sender: str, to: str, delivery_id: str, event_id: str, language: str,
                date: Any) -> bytes:
    """The exact bytes of a multipart (text + HTML) message; frozen when the delivery is created."""
    footer = T[_lang(language)]["footer"].format(id=delivery_id)
    msg = EmailMessage()
    msg["From"] = one_line(sender)
    msg["To"] = one_line(to)
    msg["Subject"] = one_line(r.subject)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = f"<{one_line(delivery_id)}@est-lagesbild>"
    msg["X-EST-Delivery"] = one_line(delivery_id)
    msg["X-EST-Event"] = one_line(event_id)
    msg.set_content(to_text(r, footer))
    msg.add_alternative(to_html(r, footer, language), subtype="html")
    msg["Content-Language"] = _lang(language)  # after the body: set_content drops Content-* headers
    return msg.as_bytes(policy=SMTP)


def readdressed(payload: bytes, to: str) -> bytes:
    """A frozen message (``build_email``) with another recipient in its To: header; everything else as it was."""
    msg = email.message_from_bytes(payload, policy=SMTP)
    msg.replace_header("To", one_line(to))
    return msg.as_bytes(policy=SMTP)


def render_reminder(*, kind: str, person_name: str, period: str, areas: list[str], deadline: Any,
                    language: str = "sv") -> Rendered:
    """A reminder to report for a period, before or after its deadline."""
    when = deadline.strftime("%Y-%m-%d %H:%M")
    places = ", ".join(areas)
    period = period_text(period, language)
    if _lang(language) == "en":
        if kind == "before":
            subject = f"Reminder: report {period} for {places} by {when}"
            lead = f"Hello {person_name}, your report for {period} ({places}) has not arrived yet. " \
                   f"The deadline is {when}."
        else:
            subject = f"Reminder: your report for {period} ({places}) is missing"
            lead = f"Hello {person_name}, the deadline for {period} ({places}) passed at {when} and your " \
                   "report has not arrived. Late reports are still counted and update the picture."
        tail = "A report with nothing to report also counts. You get this because you report for these areas."
        return Rendered(subject, [Block(paragraphs=[lead, tail])])
    if kind == "before":
        subject = f"Påminnelse: rapportera {period} för {places} senast {when}"
        lead = f"Hej {person_name}! Din rapport för {period} ({places}) har inte kommit in än. " \
               f"Sista dag är {when}."
    else:
        subject = f"Påminnelse: din rapport för {period} ({places}) saknas"
        lead = f"Hej {person_name}! Tiden för {period} ({places}) gick ut {when} och din rapport har inte " \
               "kommit in. Sena rapporter räknas fortfarande och uppdaterar lägesbilden."
    tail = "Även en rapport om att inget har hänt räknas. Du får detta för att du rapporterar för områdena."
    return Rendered(subject, [Block(paragraphs=[lead, tail])])


def render_paused_notice(*, person_name: str, subscription_name: str, target: str, dead: int,
                         language: str = "sv") -> Rendered:
    """Tells a subscription's owner that deliveries kept failing and the subscription is paused."""
    if _lang(language) == "en":
        subject = f"Paused: notifications to {target} keep failing"
        lead = (f"Hello {person_name}, the last {dead} deliveries of your subscription “{subscription_name}” to "
                f"{target} failed after every retry, so the subscription is paused and nothing more is sent.")
        tail = ("Check the endpoint (address, certificate, secret) and resume the subscription with PATCH "
                "/v1/subscriptions/{id} {\"paused\": false}. The delivery ledger (GET /v1/deliveries) shows each "
                "attempt with its response code.")
        return Rendered(subject, [Block(paragraphs=[lead, tail])])
    subject = f"Pausad: utskick till {target} misslyckas"
    lead = (f"Hej {person_name}! De senaste {dead} utskicken i din prenumeration ”{subscription_name}” till "
            f"{target} misslyckades trots alla nya försök, så prenumerationen är pausad och inget mer skickas.")
    tail = ("Kontrollera mottagaren (adress, certifikat, hemlighet) och återuppta prenumerationen med PATCH "
            "/v1/subscriptions/{id} {\"paused\": false}. Leveransloggen (GET /v1/deliveries) visar varje försök "
            "med svarskod.")
    return Rendered(subject, [Block(paragraphs=[lead, tail])])


# --- the notification to social services (personal data: rendered only when it is sent) -------

DUTY_SV = ("Påminnelse: socialtjänsten ska skyndsamt bedöma om barnet eller den unga personen kan behöva skydd "
           "eller stöd och dokumentera bedömningen, och erbjuda vårdnadshavare och den unga ett uppföljande "
           "samtal. Uppgifterna är sekretessbelagda personuppgifter: spara dem bara i socialtjänstens "
           "akt, vidarebefordra dem inte.")
DUTY_EN = ("Reminder: social services must promptly assess whether the child or young person may need protection "
           "or support, document the assessment, and offer the guardians and the young person a follow-up "
           "meeting. This is confidential personal data: keep it only in the social-services file, do not "
           "forward it.")


def notification_notice(reason: str, language: str) -> dict[str, str]:
    """Subject line and the reminder of the duty to act, for the webhook body as for the e-mail."""
    if _lang(language) == "en":
        title = ("Forfeiture of alcohol – young person under 18" if reason == "under_18"
                 else "Forfeiture of alcohol – young person aged 18–19 (the police ask that you are told)")
        return {"title": title, "duty": DUTY_EN}
    title = ("Förverkande av alkohol – ung person under 18 år" if reason == "under_18"
             else "Förverkande av alkohol – ung person 18–19 år (polisen begär underrättelse)")
    return {"title": title, "duty": DUTY_SV}


def render_forfeiture_notification(data: dict[str, Any], *, municipality: str, day: str, link: str,
                                   language: str) -> Rendered:
    """The e-mail to social services: that a protocol about a young person in their municipality needs action,
    and where it is read after sign-in (and the read logged). No personal data: an e-mail passes servers
    and mailboxes outside the system's control, so the name, personal identity number, age, guardian
    facts and even the place stay behind the sign-in."""
    lang = _lang(language)
    sv = lang == "sv"
    notice = notification_notice(str(data.get("reason", "under_18")), lang)
    rows = [["Uppgift" if sv else "Field", "Värde" if sv else "Value"],
            ["Protokoll-id" if sv else "Protocol id", str(data.get("protocol_id", ""))],
            ["Kommun" if sv else "Municipality", municipality],
            ["Datum" if sv else "Date", day]]
    lead = (f"Polisen har upprättat ett förverkandeprotokoll som gäller en ung person i {municipality}. Det behöver "
            "socialtjänstens åtgärd. Av sekretesskäl står inga personuppgifter i detta e-postmeddelande: läs "
            "protokollet efter inloggning i EST Lägesbild, med angivet syfte (läsningen loggas)." if sv else
            f"The police have written a forfeiture protocol concerning a young person in {municipality}. It needs "
            "action by social services. For confidentiality this e-mail holds no personal data: read the protocol "
            "after signing in to EST Lägesbild, stating a purpose (the read is logged).")
    return Rendered(notice["title"], [Block(paragraphs=[lead], table=rows),
                                      Block(heading="Läs protokollet" if sv else "Read the protocol", link=link),
                                      Block(heading="Skyldighet att agera" if sv else "Duty to act",
                                            paragraphs=[notice["duty"]])])


def render_credential_changed(*, person_name: str, when: str) -> Rendered:
    """Tells a person who can read protocols that their sign-in credential changed (never the credential)."""
    sv = (f"Hej {person_name}! Din inloggningsuppgift (personlig API-token) i EST Lägesbild ändrades {when}. "
          "Om du inte väntade dig det, kontakta din administratör genast: någon annan kan ha fått tillgång till "
          "uppgifter som bara polis och socialtjänst får läsa. Uppgiften står inte i detta meddelande.")
    en = (f"Hello {person_name}, your sign-in credential (personal API token) in EST Lägesbild was changed {when}. "
          "If you did not expect this, contact your administrator at once: someone else may have gained access to "
          "data only the police and social services may read. The credential is not in this message.")
    return Rendered("Din inloggningsuppgift i EST Lägesbild har ändrats / Your sign-in credential was changed",
                    [Block(paragraphs=[sv]), Block(paragraphs=[en])])
