"""E-mail rendering: subject, plain text and HTML of an event (or a digest) in Swedish or English."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any

from est_shared.checklists import LEVELS
from est_shared.freetext import has_control_characters
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
           "trend_up": "up", "trend_down": "down", "trend_flat": "flat", "trend_new": "new",
           "flag_rising": "rising", "flag_high": "high", "flag_new": "new",
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


def _lang(language: str) -> str:
    return language if language in T else "sv"


def _num(v: float | None) -> str:
    if v is None:
        return "–"
    return str(int(v)) if float(v).is_integer() else f"{v:.1f}"


def _value(item: dict[str, Any], lang: str) -> str:
    if item.get("answer") == "level":
        level = int(item.get("value") or 0)
        word = LEVELS.get(level, {}).get(lang, "")
        return f"{level} ({word})" if word else str(level)
    return _num(item.get("value"))


def _text(d: dict[str, str] | None, lang: str) -> str:
    d = d or {}
    return d.get(lang) or d.get("sv") or d.get("en") or next(iter(d.values()), "")


def render_event(event_type: str, data: dict[str, Any], language: str) -> Rendered:
    """The message for one event, in the recipient's language."""
    lang = _lang(language)
    t = T[lang]
    if event_type == "se.est.picture.published":
        return _picture(data, lang)
    if event_type in ("se.est.alert.raised", "se.est.alert.resolved"):
        resolved = event_type.endswith("resolved")
        head = t["alert_resolved"] if resolved else t["alert_raised"]
        subject = f"{head}: {data.get('area_id', '')} {data.get('item', '')} {data.get('period', '')}"
        paragraphs = [_text(data.get("message"), lang) or f"{data.get('kind', '')}",
                      f"{t['severity']}: {data.get('severity', '')}"]
        return Rendered(subject.strip(), [Block(paragraphs=paragraphs)])
    if event_type == "se.est.analysis.published":
        subject = f"{t['strategic']} {data.get('municipality_id', '')} {data.get('period', '')}"
        bullets = [", ".join(f"{k}: {v}" for k, v in p.items() if isinstance(v, str | int | float))
                   for p in data.get("persistent_problems", [])[:20]]
        return Rendered(subject, [Block(paragraphs=[_text(data.get("summary"), lang),
                                                    f"{t['report']}: {data.get('report_path', '')}"],
                                        bullets=bullets or None)])
    return Rendered(event_type, [Block(paragraphs=[str(data)[:2000]])])


def _picture(data: dict[str, Any], lang: str) -> Rendered:
    t = T[lang]
    pic = data.get("picture", {})
    name = pic.get("area_name") or pic.get("area_id", "")
    subject = f"{t['picture']} {name} {pic.get('period', '')} ({t['version']} {pic.get('version', '')})"
    if data.get("revision"):
        subject = f"{t['revision']}: {subject}"
    rows = [[t["item"], t["value"], t["trend"], t["flag"]]]
    for code, item in sorted(pic.get("items", {}).items()):
        label = item.get(f"label_{lang}") or item.get("label_sv") or code
        trend = item.get("trend")
        flag = item.get("flag")
        rows.append([label, _value(item, lang), t.get(f"trend_{trend}", "") if trend else "",
                     t.get(f"flag_{flag}", "") if flag else ""])
    c = pic.get("completeness", {})
    blocks = [
        Block(table=rows if len(rows) > 1 else None, paragraphs=None if len(rows) > 1 else [t["nothing"]]),
        Block(heading=t["completeness"], paragraphs=[
            f"{c.get('received', 0)} {t['received']} / {c.get('expected', 0)} {t['expected']}"]),
    ]
    missing = c.get("missing_reporters")
    if missing:  # only key functions and admins get this field (domain.render_for)
        blocks[-1].paragraphs = [*(blocks[-1].paragraphs or []), f"{t['missing']}: {len(missing)}"]
    k = pic.get("kronoberg")
    if k:
        rows_k = [[t[key], (str(k[key]).replace(".", ",") if lang == "sv" else str(k[key]))
                   if key != "share_under_18" or isinstance(k[key], str) else f"{round(float(k[key]) * 100)} %"]
                  for key in ("interventions", "litres_total", "share_under_18", "guardian_contacted",
                              "direct_forfeiture") if key in k]
        blocks.append(Block(heading=t["kronoberg"], table=[[t["item"], t["value"]], *rows_k],
                            paragraphs=[t["coarsened"]] if k.get("coarsened") else None))
    comments = _comments(pic, t)
    if comments:
        blocks.insert(0, Block(heading=t["comment"], paragraphs=comments))
    analysis = _text(pic.get("first_analysis"), lang)
    if analysis:
        blocks.append(Block(heading=t["analysis"], paragraphs=[analysis]))
    if data.get("changes"):
        blocks.append(Block(heading=t["changes"], bullets=list(data["changes"])))
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


def render_digest(title: str, entries: list[Rendered], more: int, language: str) -> Rendered:
    """One message listing several events, each once, with a 'more' line past the cap."""
    lang = _lang(language)
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


def render_reminder(*, kind: str, person_name: str, period: str, areas: list[str], deadline: Any,
                    language: str = "sv") -> Rendered:
    """A reminder to report for a period, before or after its deadline."""
    when = deadline.strftime("%Y-%m-%d %H:%M")
    places = ", ".join(areas)
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
            f"The police drew up a forfeiture protocol concerning a young person in {municipality}. It needs action by "
            "social services. For confidentiality this e-mail holds no personal data: read the protocol after "
            "signing in to EST Lägesbild, stating a purpose (the read is logged).")
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
