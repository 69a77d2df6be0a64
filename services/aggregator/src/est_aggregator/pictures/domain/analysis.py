"""The drafted first analysis of a picture, in Swedish and English."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from est_shared.events import Completeness, ItemSummary

from est_aggregator.pictures.domain.tally import EPS


def fmt(v: float | None, lang: str) -> str:
    if v is None:
        return "–"
    text = str(round(v)) if abs(v - round(v)) <= EPS else f"{v:.1f}"
    return text.replace(".", ",") if lang == "sv" else text


def _label(s: ItemSummary, lang: str) -> str:
    return (s.label_sv if lang == "sv" else s.label_en) or s.item


def _changes(xs: list[ItemSummary], lang: str) -> str:
    return ", ".join(f"{_label(s, lang)} ({fmt(s.previous if s.previous is not None else s.baseline, lang)}"
                     f" → {fmt(s.value, lang)})" for s in xs)


def _why(s: ItemSummary, lang: str) -> str:
    sv = lang == "sv"
    if s.baseline is None:
        base = "ingen historik" if sv else "no history"
    else:
        base = f"normalt {fmt(s.baseline, lang)}" if sv else f"normally {fmt(s.baseline, lang)}"
    where = ", ".join(list(s.places)[:3])
    loc = (f", vid {where}" if sv else f", at {where}") if where else ""
    return f"{_label(s, lang)} {fmt(s.value, lang)} ({base}{loc})"


def first_analysis(items: Mapping[str, ItemSummary], comp: Completeness, *, area_name: str, period: str,
                   reports: int) -> dict[str, str]:
    """A drafted first analysis in Swedish and English: what changed, what is above normal, where, measures.

    The key function reads it as a starting point: it names items that rose or fell against the
    previous period, items flagged above normal (with the baseline), the most named places, and
    suggests that measures be considered when anything is flagged high or rising.
    """
    # what the text says is the same in both languages: picked out once
    summaries = list(items.values())
    up = [s for s in summaries if s.trend == "up"]
    down = [s for s in summaries if s.trend == "down"]
    new = [s for s in summaries if s.trend == "new" and s.value > 0]
    flagged = [s for s in summaries if s.flag in ("high", "rising", "new")]
    serious = [s for s in flagged if s.flag in ("high", "rising")]
    hot: Counter[str] = Counter()
    for s in summaries:
        if s.places:
            hot.update(s.places)
    top_places = hot.most_common(3)
    out: dict[str, str] = {}
    for lang in ("sv", "en"):
        sv = lang == "sv"
        parts: list[str] = []
        pct = fmt(comp.rate * 100, lang)
        if sv:
            parts.append(f"Lägesbild för {area_name}, {period}: {reports} rapporter från {comp.received} "
                         f"rapportörer ({comp.received - comp.late} i tid) av {comp.expected} förväntade ({pct} %).")
        else:
            parts.append(f"Situational picture for {area_name}, {period}: {reports} reports from {comp.received} "
                         f"reporters ({comp.received - comp.late} on time) of {comp.expected} expected ({pct} %).")
        if reports == 0:
            parts.append("Inga rapporter har kommit in." if sv else "No reports have come in.")
            out[lang] = " ".join(parts)
            continue
        if up:
            parts.append(("Ökat jämfört med föregående period: " if sv else "Up on the previous period: ")
                         + _changes(up, lang) + ".")
        if down:
            parts.append(("Minskat: " if sv else "Down: ") + _changes(down, lang) + ".")
        if new:
            parts.append(("Nytt jämfört med tidigare perioder: " if sv else "New compared with earlier periods: ")
                         + ", ".join(f"{_label(s, lang)} ({fmt(s.value, lang)})" for s in new) + ".")
        if not (up or down or new):
            parts.append("Inga förändringar jämfört med föregående period." if sv
                         else "No change on the previous period.")
        if flagged:
            parts.append(("Över det normala: " if sv else "Above normal: ")
                         + "; ".join(_why(s, lang) for s in flagged) + ".")
        if top_places:
            top = ", ".join(f"{p} ({n})" for p, n in top_places)
            parts.append(("Mest nämnda platser: " if sv else "Places named most: ") + top + ".")
        if serious:
            names = ", ".join(_label(s, lang) for s in serious)
            parts.append(f"Åtgärder bör övervägas för: {names}." if sv
                         else f"Measures should be considered for: {names}.")
        else:
            parts.append("Inget tyder på att åtgärder behövs utöver de ordinarie." if sv
                         else "Nothing suggests that measures beyond the usual are needed.")
        if comp.expected and comp.rate < 0.5:
            parts.append("Obs: under hälften av de förväntade rapporterna har kommit in." if sv
                         else "Note: fewer than half of the expected reports have come in.")
        out[lang] = " ".join(parts)
    return out
