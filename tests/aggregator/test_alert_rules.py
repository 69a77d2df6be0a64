"""The alert rules (``domain.alerts``) by the municipality's organisation: pure functions, no broker, no database.

Each test walks an item through published periods as ``publish._raise_and_resolve`` does: the open alerts
and the earlier periods' flags (newest first) kept between periods.
"""

from __future__ import annotations

from collections.abc import Iterable

from est_aggregator.pictures.domain.alerts import (
    DEFAULT_ALERT_RULES,
    Earlier,
    OpenAlert,
    alert_message,
    alert_transitions,
    history_needed,
    severity,
)
from est_shared.events import ItemSummary
from est_shared.org import AlertRule, AlertRuleOverride, AlertRules
from est_shared.periods import Period

from bench.alert_rate import OLD_RULES, replay

START = Period.parse("2026-W36")


def walk(flags_per_period: Iterable[str | None], rules: AlertRules = DEFAULT_ALERT_RULES, item: str = "klotter",
         ) -> list[str]:
    """Publish one period per flag, in order: what each period did ("raise flag:…", "resolve", "")."""
    open_alerts: dict[str, OpenAlert] = {}
    earlier: list[Earlier] = []
    out = []
    period = START
    for flag in flags_per_period:
        up, down = alert_transitions(open_alerts, {item: flag}, period=period.id,
                                     earlier=earlier[:history_needed(rules)], rules=rules)
        if up:
            open_alerts[item] = OpenAlert(up[item], period.id)
            out.append(f"raise {up[item]}")
        elif down:
            del open_alerts[item]
            out.append("resolve")
        else:
            out.append("")
        earlier.insert(0, Earlier(period.id, {item: flag}))
        period = period.next()
    return out


def test_a_flag_that_comes_and_goes_raises_once_and_resolves_after_three_quiet_periods() -> None:
    # before the rules this raised three times and resolved three times
    assert walk(["high", None, "high", None, None, "high", None, None, None, None]) == \
        ["raise flag:high", "", "", "", "", "", "", "", "resolve", ""]
    # two quiet periods between flags keep the alert open; a new flag after it resolved raises again
    assert walk(["high", None, None, None, "high"]) == ["raise flag:high", "", "", "resolve", "raise flag:high"]
    two = AlertRules(default=AlertRule(quiet_periods=2))
    assert walk(["high", None, None, "high"], two) == ["raise flag:high", "", "resolve", "raise flag:high"]


def test_quiet_periods_count_only_periods_after_the_alert() -> None:
    rules = AlertRules(default=AlertRule(quiet_periods=1))
    assert walk(["high", None], rules) == ["raise flag:high", "resolve"]
    # a revision of the raising period without the flag is not yet a quiet period
    open_alerts = {"klotter": OpenAlert("flag:high", "2026-W36")}
    earlier = [Earlier("2026-W35", {"klotter": None})]
    assert alert_transitions(open_alerts, {"klotter": None}, period="2026-W36", earlier=earlier,
                             rules=rules) == ({}, {})


def test_rising_raises_only_after_rising_periods_in_a_row() -> None:
    assert walk(["rising", "rising", "rising", "rising"]) == ["", "", "raise flag:rising", ""]
    # broken by a quiet period: the count starts again
    assert walk(["rising", "rising", None, "rising", "rising"]) == [""] * 5
    assert walk(["rising", "rising"], AlertRules(default=AlertRule(rising_periods=2))) == \
        ["", "raise flag:rising"]


def test_only_the_kinds_in_raise_on_raise_and_other_flags_do_not_keep_an_alert_open() -> None:
    assert walk(["new", "new"]) == ["", ""]  # new is not raised by default
    with_new = AlertRules(default=AlertRule(raise_on=["high", "new"]))
    assert walk(["new"], with_new) == ["raise flag:new"]
    only_high = AlertRules(default=AlertRule(raise_on=["high"]))
    assert walk(["rising"] * 4, only_high) == [""] * 4
    # an open high alert: periods flagged only rising (not raised on) are quiet periods
    assert walk(["high", "rising", "rising", "rising"], only_high) == ["raise flag:high", "", "", "resolve"]


def test_a_per_item_override_changes_only_that_item() -> None:
    rules = AlertRules(default=AlertRule(), items={
        "brand": AlertRuleOverride(raise_on=["high", "new", "rising"], rising_periods=1, critical_at=3),
        "nedskrapning": AlertRuleOverride(enabled=False)})
    assert walk(["new"], rules, item="brand") == ["raise flag:new"]
    assert walk(["rising"], rules, item="brand") == ["raise flag:rising"]
    assert walk(["new"], rules, item="klotter") == [""]
    assert walk(["rising"], rules, item="klotter") == [""]
    assert rules.for_item("brand").quiet_periods == 3  # unset fields follow the municipality's default
    assert walk(["high", "high", None, None], rules, item="nedskrapning") == [""] * 4  # disabled: never raises


def test_a_disabled_item_ends_its_open_alert_after_the_quiet_periods() -> None:
    rules = AlertRules(items={"klotter": AlertRuleOverride(enabled=False)})
    open_alerts = {"klotter": OpenAlert("flag:high", "2026-W36")}
    earlier = [Earlier("2026-W38", {"klotter": "high"}), Earlier("2026-W37", {"klotter": "high"})]
    assert alert_transitions(open_alerts, {"klotter": "high"}, period="2026-W39", earlier=earlier,
                             rules=rules) == ({}, {"klotter": "flag:high"})


def test_severity_is_critical_at_the_rules_value_else_warning_for_high_and_info_for_the_rest() -> None:
    rule = AlertRules(items={"brand": AlertRuleOverride(critical_at=3)}).for_item("brand")
    assert severity("flag:high", 3.0, rule) == "critical"
    assert severity("flag:rising", 4.0, rule) == "critical"
    assert severity("flag:high", 2.0, rule) == "warning"
    assert severity("flag:rising", 2.0, rule) == "info"
    assert severity("flag:new", 1.0, rule) == "info"
    assert severity("flag:high", 99.0, AlertRule()) == "warning"  # no critical_at: never critical


def test_history_needed_is_the_longest_streak_of_any_rule() -> None:
    assert history_needed(AlertRules()) == 2
    assert history_needed(AlertRules(items={"x": AlertRuleOverride(quiet_periods=6)})) == 5
    assert history_needed(AlertRules(default=AlertRule(rising_periods=1, quiet_periods=1))) == 0


def _summary(value: float, baseline: float | None, answer: str = "count") -> ItemSummary:
    return ItemSummary(item="klotter", answer=answer, label_sv="Klotter", label_en="Graffiti",  # type: ignore[arg-type]
                       value=value, reports=2, baseline=baseline)


def test_alert_texts_name_the_item_and_area_date_the_period_and_show_no_codes() -> None:
    raised = alert_message("flag:high", _summary(6, 2.5), "klotter", area_name="Dalbo", period="2026-W49",
                           resolved=False, severity_="critical")
    assert raised["sv"] == ("Klotter i Dalbo v. 49 (30 nov–6 dec 2026): högt läge, 6 (normalt 2,5). "
                            "Allvarlighet: kritisk.")
    assert raised["en"] == ("Graffiti in Dalbo week 49 (30 Nov–6 Dec 2026): high level, 6 (normally 2.5). "
                            "Severity: severe.")
    rising = alert_message("flag:rising", _summary(4, 1.5), "klotter", area_name="Dalbo", period="2026-W49",
                           resolved=False, streak=3)
    assert rising["sv"] == ("Klotter i Dalbo v. 49 (30 nov–6 dec 2026): ökande 3 perioder i rad, nu 4 "
                            "(normalt 1,5). Allvarlighet: information.")
    assert "rising 3 periods in a row, now 4 (normally 1.5)" in rising["en"]
    level = alert_message("flag:high", _summary(2, 1.25, "level"), "klotter", area_name="Dalbo",
                          period="2026-W49", resolved=False, severity_="warning")
    assert "högt läge, nivå 2, återkommande (normalt 1,3)" in level["sv"]
    assert "high level, level 2, recurring (normally 1.3)" in level["en"]
    yes = alert_message("flag:new", _summary(2, 0, "boolean"), "klotter", area_name="Dalbo", period="2026-W49",
                        resolved=False)
    assert "nytt problem, ja i 2 rapporter (inget tidigare)" in yes["sv"]
    assert "new problem, yes in 2 reports (none before)" in yes["en"]
    over = alert_message("flag:high", _summary(0, 2.0), "klotter", area_name="Dalbo", period="2026-W51",
                         resolved=True, raised_in="2026-W49")
    assert over["sv"] == ("Klotter i Dalbo: larmet om högt läge från v. 49 (30 nov–6 dec 2026) har upphört "
                          "v. 51 (14–20 dec 2026), nu 0.")
    assert over["en"] == ("Graffiti in Dalbo: the high level alert of week 49 (30 Nov–6 Dec 2026) ended in "
                          "week 51 (14–20 Dec 2026), now 0.")
    for text in [*raised.values(), *rising.values(), *level.values(), *yes.values(), *over.values()]:
        assert "flag:" not in text and "klotter" not in text and "2026-W" not in text


def test_the_demo_year_raises_a_handful_per_area_and_month() -> None:
    """The demo's year (``bench.alert_rate``): the old rules raised about three alerts a week per area; the
    defaults at most eight per area in any month but the first (no history yet); Araby's story (gatherings,
    drugs and mopeds at the school yard for 13 weeks) is one open alert per item from before it to its end."""
    before, now = replay(OLD_RULES), replay(AlertRules())
    assert len(before.raised) / 4 / before.weeks > 2.5
    assert len(now.raised) < len(before.raised) / 3
    per_month = now.per_area_month()
    first = min(m for c in per_month.values() for m in c)
    assert all(n <= 8 for c in per_month.values() for m, n in c.items() if m != first), per_month
    for item in ("samling", "narkotika", "buskorning"):  # Araby's story, weeks 30-42 of 2026 (``NOW``)
        raised = [r.period for r in now.raised if r.area_id == "araby" and r.item == item]
        ended = [p for a, i, p in now.resolved if a == "araby" and i == item]
        assert max(p for p in raised if p <= "2026-W30") > max(p for p in ended if p <= "2026-W30"), item
        assert not [p for p in raised + ended if "2026-W30" < p <= "2026-W42"], item  # one alert all along
        assert next(p for p in ended if p > "2026-W42") <= "2026-W46", item  # and it ends soon after
    assert now.open_at_end["dalbo"], "Dalbo's rising graffiti keeps an alert open (the dashboard shows it)"
