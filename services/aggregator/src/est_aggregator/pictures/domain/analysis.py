"""The drafted first analysis of a picture, in Swedish and English.

Every sentence states a comparison that holds for the numbers it shows: both languages pick their
items once, compare the numbers as shown (``shown``: one decimal, half up) and print the same numbers,
only with the language's decimal mark (2,5 against 2.5).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from decimal import ROUND_HALF_UP, Decimal

from est_shared.events import Completeness, ItemSummary
from est_shared.periods import period_label

_TENTH = Decimal("0.1")


def shown(v: float) -> Decimal:
    """A value as the text shows it: one decimal, half up (2.45 → 2.5), the same in every language."""
    return Decimal(repr(float(v))).quantize(_TENTH, rounding=ROUND_HALF_UP)


def fmt(v: float | None, lang: str) -> str:
    """A value as shown (``shown``), whole numbers without decimals, with a decimal comma in Swedish."""
    if v is None:
        return "–"
    d = shown(v)
    text = f"{d:.0f}" if d == d.to_integral_value() else f"{d:.1f}"
    return text.replace(".", ",") if lang == "sv" else text


def counted(n: int, one: str, many: str) -> str:
    """``n`` with its noun in the singular for 1 and the plural otherwise ("1 rapport", "2 rapporter")."""
    return f"{n} {one if n == 1 else many}"


def _label(s: ItemSummary, lang: str) -> str:
    return (s.label_sv if lang == "sv" else s.label_en) or s.item


def _reference(s: ItemSummary) -> float | None:
    """What the trend compares with: the previous period, else the baseline."""
    return s.previous if s.previous is not None else s.baseline


def _changes(xs: list[ItemSummary], lang: str) -> str:
    return ", ".join(f"{_label(s, lang)} ({fmt(_reference(s), lang)} → {fmt(s.value, lang)})" for s in xs)


def _where(s: ItemSummary, lang: str) -> str:
    """The item's most named places ("vid torget, centrum"), or nothing."""
    where = ", ".join(list(s.places)[:3])
    return ((f"vid {where}" if lang == "sv" else f"at {where}") if where else "")


def _against_normal(s: ItemSummary, lang: str) -> str:
    base = f"normalt {fmt(s.baseline, lang)}" if lang == "sv" else f"normally {fmt(s.baseline, lang)}"
    where = _where(s, lang)
    return f"{_label(s, lang)} {fmt(s.value, lang)} ({base}{', ' + where if where else ''})"


def _without_history(s: ItemSummary, lang: str) -> str:
    where = _where(s, lang)
    return f"{_label(s, lang)} {fmt(s.value, lang)}" + (f" ({where})" if where else "")


def _sentence(head: str, body: str) -> str:
    return f"{head}: {body}."


PHRASES = {  # (Swedish, English) of each sentence or heading
    "up_previous": ("Ökat jämfört med föregående period", "Up on the previous period"),
    "down_previous": ("Minskat jämfört med föregående period", "Down on the previous period"),
    "up_normal": ("Ökat jämfört med det normala (ingen rapport föregående period)",
                  "Up on normal (no report the previous period)"),
    "down_normal": ("Minskat jämfört med det normala (ingen rapport föregående period)",
                    "Down on normal (no report the previous period)"),
    "new": ("Nytt jämfört med tidigare perioder", "New compared with earlier periods"),
    "no_change": ("Inga förändringar jämfört med föregående period.", "No change on the previous period."),
    "above": ("Över det normala", "Above normal"),
    "high_not_above": ("Högt men inte över det normala", "High but not above normal"),
    "high_no_history": ("Högt, utan historik att jämföra med", "High, with no history to compare with"),
    "places": ("Mest nämnda platser", "Places named most"),
    "measures": ("Åtgärder bör övervägas för", "Measures should be considered for"),
    "no_measures": ("Inget tyder på att åtgärder behövs utöver de ordinarie.",
                    "Nothing suggests that measures beyond the usual are needed."),
    "few": ("Obs: under hälften av de förväntade rapportörerna har rapporterat.",
            "Note: fewer than half of the expected reporters have reported."),
    "none": ("Inga rapporter har kommit in.", "No reports have come in."),
}


def _text(key: str, lang: str) -> str:
    sv, en = PHRASES[key]
    return sv if lang == "sv" else en


def _opening(comp: Completeness, *, area_name: str, period: str, reports: int, lang: str) -> str:
    pct = fmt(comp.rate * 100, lang)
    period = period_label(period, lang)
    if lang == "sv":
        return (f"Lägesbild för {area_name}, {period}: {counted(reports, 'rapport', 'rapporter')} från "
                f"{counted(comp.received, 'rapportör', 'rapportörer')} ({comp.on_time} i tid) av "
                f"{counted(comp.expected, 'förväntad', 'förväntade')} ({pct} %).")
    return (f"Situational picture for {area_name}, {period}: {counted(reports, 'report', 'reports')} from "
            f"{counted(comp.received, 'reporter', 'reporters')} ({comp.on_time} on time) of "
            f"{comp.expected} expected ({pct} %).")


def first_analysis(items: Mapping[str, ItemSummary], comp: Completeness, *, area_name: str, period: str,
                   reports: int, answered: Collection[str]) -> dict[str, str]:
    """A drafted first analysis in Swedish and English: what changed, what is above normal, where, measures.

    The key function reads it as a starting point. ``answered``: the item codes a counting report of
    the period answered. It names:

    * items up or down against the previous period (or, with no report then, the baseline) by the
      numbers shown; a decrease only for an item answered this period (an item nobody answered is
      no observation of a fall);
    * items new against earlier periods (non-zero after zero or no history);
    * flagged items, each where its comparison holds: above normal (value shown > baseline shown),
      high but not above normal (a level flagged high at or below its baseline), high with no history;
    * the most named places, and measures to consider when anything is flagged high or rising;
    * a note when under half of the expected reporters have reported.
    """
    # what the text says is the same in both languages: picked out once
    summaries = list(items.values())
    groups: dict[str, list[ItemSummary]] = {k: [] for k in ("up_previous", "down_previous", "up_normal",
                                                             "down_normal", "new", "above", "high_not_above",
                                                             "high_no_history")}
    for s in summaries:
        ref = _reference(s)
        if s.trend == "new" and s.value > 0:
            groups["new"].append(s)
        elif s.trend in ("up", "down") and ref is not None:
            value, before = shown(s.value), shown(ref)
            where = "previous" if s.previous is not None else "normal"
            if s.trend == "up" and value > before:
                groups[f"up_{where}"].append(s)
            elif s.trend == "down" and value < before and s.item in answered:
                groups[f"down_{where}"].append(s)
        if s.flag in ("high", "rising", "new"):
            if s.baseline is None:
                groups["high_no_history"].append(s)
            elif shown(s.value) > shown(s.baseline):
                groups["above"].append(s)
            else:
                groups["high_not_above"].append(s)
    changed = any(groups[k] for k in ("up_previous", "down_previous", "up_normal", "down_normal", "new"))
    serious = [s for s in summaries if s.flag in ("high", "rising")]
    hot: Counter[str] = Counter()
    for s in summaries:
        if s.places:
            hot.update(s.places)
    top_places = hot.most_common(3)
    out: dict[str, str] = {}
    for lang in ("sv", "en"):
        parts = [_opening(comp, area_name=area_name, period=period, reports=reports, lang=lang)]
        if reports == 0:
            parts.append(_text("none", lang))
            out[lang] = " ".join(parts)
            continue
        for key in ("up_previous", "up_normal", "down_previous", "down_normal"):
            if groups[key]:
                parts.append(_sentence(_text(key, lang), _changes(groups[key], lang)))
        if groups["new"]:
            parts.append(_sentence(_text("new", lang), ", ".join(
                f"{_label(s, lang)} ({fmt(s.value, lang)})" for s in groups["new"])))
        if not changed:
            parts.append(_text("no_change", lang))
        for key, say in (("above", _against_normal), ("high_not_above", _against_normal),
                         ("high_no_history", _without_history)):
            if groups[key]:
                parts.append(_sentence(_text(key, lang), "; ".join(say(s, lang) for s in groups[key])))
        if top_places:
            parts.append(_sentence(_text("places", lang), ", ".join(f"{p} ({n})" for p, n in top_places)))
        if serious:
            parts.append(_sentence(_text("measures", lang), ", ".join(_label(s, lang) for s in serious)))
        else:
            parts.append(_text("no_measures", lang))
        if comp.expected and comp.rate < 0.5:
            parts.append(_text("few", lang))
        out[lang] = " ".join(parts)
    return out
