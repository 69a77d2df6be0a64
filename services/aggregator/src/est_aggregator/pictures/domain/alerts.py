"""Edge-triggered alerts by the municipality's alert rules: which a picture raises or resolves, and their words.

A picture's item flags (``tally.assess``: high, rising, new) become alerts by the item's rule
(``est_shared.org.AlertRules.for_item``):

- only a flag the rule raises on (``raise_on``, default high and rising) counts, and none of an item
  whose rule is ``enabled: false``;
- ``rising`` raises only when the item has been rising ``rising_periods`` published periods in a row
  (this one included; default 3): one rising week is noise;
- an item with an open alert raises nothing while it is flagged, whatever the flag (edge triggering);
- an open alert resolves only after ``quiet_periods`` published periods in a row without a counting
  flag (this one included, none of them the alert's own period; default 3), so a flag that comes and
  goes does not raise, resolve and raise again;
- severity: a value at or above ``critical_at`` is ``critical``, otherwise a high level is a
  ``warning`` and the rest ``info``.

Earlier periods come as their published flags, newest first (``Earlier``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from est_shared.checklists import LEVELS
from est_shared.events import ItemSummary
from est_shared.org import AlertRule, AlertRules
from est_shared.periods import period_label

from est_aggregator.pictures.domain.analysis import fmt

DEFAULT_ALERT_RULES = AlertRules()
Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True)
class OpenAlert:
    """An item's open alert: its kind (``flag:high``) and the period that raised it."""

    kind: str
    period: str


@dataclass(frozen=True)
class Earlier:
    """An earlier published period of the area: its id and each item's flag (None: not flagged)."""

    period: str
    flags: Mapping[str, str | None]


def counting_flag(flag: str | None, rule: AlertRule) -> str | None:
    """The flag as the rule counts it: None for an item not enabled or a flag it does not raise on."""
    return flag if flag and rule.enabled and flag in rule.raise_on else None


def history_needed(rules: AlertRules) -> int:
    """How many earlier published periods the rules look back at (the longest streak, less this period)."""
    all_rules = [rules.default, *(rules.for_item(code) for code in rules.items)]
    return max(max(r.rising_periods, r.quiet_periods) for r in all_rules) - 1


def rising_streak(item: str, earlier: Sequence[Earlier]) -> int:
    """Earlier published periods in a row (newest first) in which the item was flagged rising."""
    n = 0
    for e in earlier:
        if e.flags.get(item) != "rising":
            break
        n += 1
    return n


def _quiet_streak(item: str, since: str, earlier: Sequence[Earlier], rule: AlertRule) -> int:
    """Earlier published periods in a row after ``since`` (newest first) without a counting flag."""
    n = 0
    for e in earlier:
        if e.period <= since or counting_flag(e.flags.get(item), rule):
            break
        n += 1
    return n


def alert_transitions(open_alerts: Mapping[str, OpenAlert], flags: Mapping[str, str | None], *,
                      period: str, earlier: Sequence[Earlier] = (),
                      rules: AlertRules = DEFAULT_ALERT_RULES) -> tuple[dict[str, str], dict[str, str]]:
    """(item → kind to raise, item → open kind to resolve) of a published period's flags.

    ``open_alerts``: the area's open alerts by item; ``earlier``: the area's earlier published periods,
    newest first (at least ``history_needed(rules)`` of them when there are so many).
    """
    raise_: dict[str, str] = {}
    resolve: dict[str, str] = {}
    for item in sorted(set(flags) | set(open_alerts)):
        rule = rules.for_item(item)
        flag = counting_flag(flags.get(item), rule)
        alert = open_alerts.get(item)
        if alert is not None:
            if flag is None and period > alert.period and \
                    1 + _quiet_streak(item, alert.period, earlier, rule) >= rule.quiet_periods:
                resolve[item] = alert.kind
        elif flag == "rising":
            if 1 + rising_streak(item, earlier) >= rule.rising_periods:
                raise_[item] = "flag:rising"
        elif flag is not None:
            raise_[item] = f"flag:{flag}"
    return raise_, resolve


def severity(kind: str, value: float | None = None, rule: AlertRule | None = None) -> Severity:
    """An alert's severity: ``critical`` at or above the rule's ``critical_at``, else a high level is a
    ``warning`` and rising or new ``info``."""
    if rule is not None and rule.critical_at is not None and value is not None and value >= rule.critical_at:
        return "critical"
    return "warning" if kind == "flag:high" else "info"


KIND_WORDS = {  # kind → (Swedish, English) as a reader names it
    "flag:high": ("högt läge", "high level"),
    "flag:rising": ("ökande", "rising"),
    "flag:new": ("nytt problem", "new problem"),
}
# the notifier's words for a severity (its e-mails say them beside the message)
SEVERITY_WORDS = {"info": ("information", "low"), "warning": ("varning", "moderate"), "critical": ("kritisk", "severe")}


def _value(summary: ItemSummary | None, lang: str) -> str:
    """The item's value as read: a count, a level with its word, or how many reports said yes."""
    if summary is None:
        return "–"
    if summary.answer == "level":
        word = LEVELS.get(int(summary.value), {}).get(lang, "")
        return (f"nivå {fmt(summary.value, lang)}" if lang == "sv" else f"level {fmt(summary.value, lang)}") + \
            (f", {word}" if word else "")
    if summary.answer == "boolean":
        n = fmt(summary.value, lang)
        return f"ja i {n} rapporter" if lang == "sv" else f"yes in {n} reports"
    return fmt(summary.value, lang)


def _what(kind: str, summary: ItemSummary | None, streak: int, lang: str) -> str:
    """The kind and what makes it, in numbers: the value against normal, or how long it has been rising."""
    sv = lang == "sv"
    word = KIND_WORDS.get(kind, ("flaggat", "flagged"))[0 if sv else 1]
    value = _value(summary, lang)
    if kind == "flag:new":
        return f"{word}, {value} (inget tidigare)" if sv else f"{word}, {value} (none before)"
    if summary is None or summary.baseline is None:
        normal = "inga tidigare perioder" if sv else "no earlier periods"
    else:
        normal = f"normalt {fmt(summary.baseline, lang)}" if sv else f"normally {fmt(summary.baseline, lang)}"
    if kind == "flag:rising" and streak > 1:
        return (f"{word} {streak} perioder i rad, nu {value} ({normal})" if sv
                else f"{word} {streak} periods in a row, now {value} ({normal})")
    return f"{word}, {value} ({normal})"


def carried_alerts(open_alerts: Collection[str], continues: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    """Open alerts of earlier codes that an item of the picture continues (``domain.lineage``), as
    (earlier code, item): the alert goes on as the item's, so a rename neither resolves it nor raises a new
    one. A split's alert goes to its first successor without an open alert of its own."""
    taken = set(open_alerts)
    out: list[tuple[str, str]] = []
    for old in sorted(open_alerts):
        if old in continues:  # an item of the picture itself
            continue
        heir = next((code for code, olds in continues.items() if old in olds and code not in taken), None)
        if heir is not None:
            taken.add(heir)
            out.append((old, heir))
    return out


def alert_message(kind: str, summary: ItemSummary | None, item: str, *, area_name: str, period: str,
                  resolved: bool, severity_: str = "info", streak: int = 1, raised_in: str | None = None,
                  ) -> dict[str, str]:
    """Swedish and English text of an alert: item and area by name, the period dated, what makes it.

    ``streak``: the periods in a row it has been rising (this one included); ``raised_in``: of a
    resolved alert, the period that raised it.
    """
    label_sv = summary.label_sv if summary and summary.label_sv else item
    label_en = summary.label_en if summary and summary.label_en else item
    when_sv, when_en = period_label(period, "sv"), period_label(period, "en")
    if resolved:
        sv_kind, en_kind = KIND_WORDS.get(kind, ("flaggat", "flagged"))
        since_sv = f" från {period_label(raised_in, 'sv')}" if raised_in else ""
        since_en = f" of {period_label(raised_in, 'en')}" if raised_in else ""
        return {"sv": f"{label_sv} i {area_name}: larmet om {sv_kind}{since_sv} har upphört {when_sv}, "
                      f"nu {_value(summary, 'sv')}.",
                "en": f"{label_en} in {area_name}: the {en_kind} alert{since_en} ended in {when_en}, "
                      f"now {_value(summary, 'en')}."}
    sev_sv, sev_en = SEVERITY_WORDS.get(severity_, SEVERITY_WORDS["info"])
    return {"sv": f"{label_sv} i {area_name} {when_sv}: {_what(kind, summary, streak, 'sv')}. "
                  f"Allvarlighet: {sev_sv}.",
            "en": f"{label_en} in {area_name} {when_en}: {_what(kind, summary, streak, 'en')}. "
                  f"Severity: {sev_en}."}
