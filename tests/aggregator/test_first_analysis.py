"""The drafted first analysis states true comparisons in both languages, and repeated reports of one
reporter are counted one agreed way (domain rules, no broker, no database)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from est_aggregator.pictures.domain.analysis import PHRASES, first_analysis
from est_aggregator.pictures.domain.periods import history_periods
from est_aggregator.pictures.domain.picture import build_picture
from est_aggregator.pictures.domain.reports import ExpectedReporter, ReportRecord, effective_reports
from est_shared.checklists import EST_STANDARD_1, ChecklistItem
from est_shared.events import Completeness, ItemSummary, PictureData
from est_shared.periods import Period
from hypothesis import given, settings
from hypothesis import strategies as st

P = Period.parse("2026-W48")
T0 = datetime(2026, 11, 25, 10, tzinfo=UTC)
DEADLINE = datetime(2026, 11, 30, 8, tzinfo=UTC)
EXPECTED = [ExpectedReporter("anna", "hem"), ExpectedReporter("bo", "hem"), ExpectedReporter("cy", "polis")]


def rep(rid: str, answers: dict[str, Any], *, reporter: str = "anna", period: str = "2026-W48",
        supersedes: str | None = None, received: datetime = T0) -> ReportRecord:
    return ReportRecord(report_id=rid, municipality_id="m", area_id="a", period=period, checklist="est-standard@1",
                        answers={k: (v if isinstance(v, dict) else {"value": v}) for k, v in answers.items()},
                        reporter_id=reporter, actor_id="hem", received_at=received, supersedes=supersedes)


def picture(current: list[ReportRecord], history: dict[str, list[ReportRecord]] | None = None,
            items: Any = EST_STANDARD_1.items, expected: list[ExpectedReporter] = EXPECTED) -> PictureData:
    by_period = {Period.parse(p): rs for p, rs in (history or {}).items()}
    by_period[P] = current
    return build_picture(municipality_id="m", area_id="a", area_name="Område", period=P, superseded=(),
                         items=items, expected=expected, deadline=DEADLINE, reports_by_period=by_period).picture


def weeks_before(n: int) -> list[str]:
    return [p.id for p in history_periods(P, 8)][-n:]


def summary(code: str, answer: str, value: float, *, previous: float | None = None, baseline: float | None = None,
            trend: str | None = None, flag: str | None = None, places: dict[str, int] | None = None) -> ItemSummary:
    return ItemSummary.model_validate({
        "item": code, "answer": answer, "label_sv": f"Sv{code}", "label_en": f"En{code}", "value": value,
        "reports": 1 if value else 0, "places": places or {}, "previous": previous, "baseline": baseline,
        "trend": trend, "flag": flag})


def analyse(*items: ItemSummary, answered: set[str] | None = None, reports: int = 1,
            comp: Completeness | None = None) -> dict[str, str]:
    return first_analysis({s.item: s for s in items}, comp or Completeness(expected=1, received=1, on_time=1, rate=1.0),
                          area_name="Område", period="2026-W48", reports=reports,
                          answered={s.item for s in items} if answered is None else answered)


# --- repeated reports of one reporter (finding 6) ---

def test_three_reports_of_one_reporter_are_three_observations_of_one_reporter() -> None:
    pic = picture([rep("1", {"skadegorelse": 1, "klotter": 1, "tillhall": True}),
                   rep("2", {"skadegorelse": 2, "klotter": 2, "tillhall": True}, received=T0 + timedelta(hours=1)),
                   rep("3", {"skadegorelse": 0, "klotter": 1, "tillhall": False}, received=T0 + timedelta(hours=2))])
    items = pic.items
    assert items["skadegorelse"].value == 3  # counts add up
    assert items["klotter"].value == 2  # levels take the highest
    assert items["tillhall"].value == 2  # yes/no: reports that said yes
    assert pic.reports == 3
    comp = pic.completeness
    assert (comp.expected, comp.received, comp.on_time, comp.missing_reporters) == (3, 1, 1, ["bo", "cy"])
    assert comp.per_actor["hem"]["received"] == 1
    assert pic.first_analysis["sv"].startswith(
        "Lägesbild för Område, v. 48 (23–29 nov 2026): 3 rapporter från 1 rapportör (1 i tid) av 3 förväntade "
        "(33,3 %).")
    assert pic.first_analysis["en"].startswith(
        "Situational picture for Område, week 48 (23–29 Nov 2026): 3 reports from 1 reporter (1 on time) of 3 "
        "expected (33.3 %).")
    assert "under hälften av de förväntade rapportörerna" in pic.first_analysis["sv"]
    assert "fewer than half of the expected reporters" in pic.first_analysis["en"]


def test_a_correction_replaces_the_report_it_supersedes() -> None:
    pic = picture([rep("1", {"skadegorelse": 4}), rep("2", {"skadegorelse": 2}),
                   rep("3", {"skadegorelse": 1}, supersedes="1")])
    assert pic.items["skadegorelse"].value == 3 and pic.reports == 2 and pic.completeness.received == 1


def test_singular_and_plural_of_reports_reporters_and_expected() -> None:
    one = picture([rep("1", {"skadegorelse": 1})], expected=[ExpectedReporter("anna", "hem")])
    assert "1 rapport från 1 rapportör (1 i tid) av 1 förväntad (100 %)." in one.first_analysis["sv"]
    assert "1 report from 1 reporter (1 on time) of 1 expected (100 %)." in one.first_analysis["en"]
    two = picture([rep("1", {"skadegorelse": 1}), rep("2", {"skadegorelse": 1}, reporter="bo")])
    assert "2 rapporter från 2 rapportörer (2 i tid) av 3 förväntade (66,7 %)." in two.first_analysis["sv"]
    assert "2 reports from 2 reporters (2 on time) of 3 expected (66.7 %)." in two.first_analysis["en"]
    none = picture([])
    assert "0 rapporter från 0 rapportörer (0 i tid) av 3 förväntade (0 %). Inga rapporter har kommit in." \
        in none.first_analysis["sv"]


# --- every sentence states a true comparison (finding 5) ---

def test_a_level_flagged_high_below_its_baseline_is_not_said_to_be_above_normal() -> None:
    history = {p: [rep(f"h{p}", {"samlad_bedomning": v}, period=p)]
               for p, v in zip(weeks_before(4), [3, 2, 3, 2], strict=True)}
    pic = picture([rep("1", {"samlad_bedomning": 2})], history)
    s = pic.items["samlad_bedomning"]
    assert (s.value, s.baseline, s.flag) == (2, 2.5, "high")
    sv, en = pic.first_analysis["sv"], pic.first_analysis["en"]
    assert "Över det normala" not in sv and "Above normal" not in en
    assert "Högt men inte över det normala: Samlad bedömning av läget 2 (normalt 2,5)." in sv
    assert "High but not above normal: " in en and "2 (normally 2.5)." in en


def test_above_normal_names_the_value_and_baseline_in_both_languages_rounded_alike() -> None:
    text = analyse(summary("c", "count", 5, previous=1, baseline=2.45, trend="up", flag="high",
                           places={"torget": 2, "centrum": 1}))
    assert "Över det normala: Svc 5 (normalt 2,5, vid torget, centrum)." in text["sv"]
    assert "Above normal: Enc 5 (normally 2.5, at torget, centrum)." in text["en"]
    assert "Ökat jämfört med föregående period: Svc (1 → 5)." in text["sv"]
    assert "Up on the previous period: Enc (1 → 5)." in text["en"]


def test_a_value_equal_to_its_baseline_as_shown_is_no_change() -> None:
    text = analyse(summary("c", "count", 2, baseline=2.04, trend="down"))
    assert "Minskat" not in text["sv"] and "Down" not in text["en"]
    assert "Inga förändringar jämfört med föregående period." in text["sv"]


def test_an_item_nobody_answered_is_not_a_decrease() -> None:
    history = {weeks_before(1)[0]: [rep("h", {"tillhall": True, "klotter": 2}, period=weeks_before(1)[0])]}
    pic = picture([rep("1", {"klotter": 0})], history)
    assert pic.items["tillhall"].trend == "down"  # the body keeps the trend rule
    sv, en = pic.first_analysis["sv"], pic.first_analysis["en"]
    assert "Tillhåll" not in sv and "Hang-out" not in en
    assert "Minskat jämfört med föregående period: Klotter (2 → 0)." in sv
    assert "Down on the previous period: Graffiti (2 → 0)." in en


def test_a_change_without_a_previous_period_is_against_normal() -> None:
    text = analyse(summary("c", "count", 4, baseline=1.5, trend="up"))
    assert "Ökat jämfört med det normala (ingen rapport föregående period): Svc (1,5 → 4)." in text["sv"]
    assert "Up on normal (no report the previous period): Enc (1.5 → 4)." in text["en"]


def test_high_without_history_says_so() -> None:
    text = analyse(summary("c", "count", 3, trend="new", flag="high", places={"torget": 1}))
    assert "Högt, utan historik att jämföra med: Svc 3 (vid torget)." in text["sv"]
    assert "High, with no history to compare with: Enc 3 (at torget)." in text["en"]
    assert "Över det normala" not in text["sv"]
    assert "Nytt jämfört med tidigare perioder: Svc (3)." in text["sv"]


# --- the property: over random pictures ---

KINDS = ["count", "count", "level", "level", "boolean", "boolean"]
ITEMS = [ChecklistItem.model_validate({"code": f"c{i}", "label_sv": f"Sak{i}", "label_en": f"Thing{i}", "answer": kind})
         for i, kind in enumerate(KINDS)]
PLACES = ["norr", "syd", "torg"]
REPORTERS = ["anna", "bo", "cy", "dag"]


def _answer(kind: str) -> st.SearchStrategy[Any]:
    value: st.SearchStrategy[Any] = (st.integers(0, 6) if kind == "count" else st.integers(0, 3) if kind == "level"
                                     else st.booleans())
    return st.one_of(st.none(), st.fixed_dictionaries(
        {"value": value}, optional={"places": st.lists(st.sampled_from(PLACES), max_size=2, unique=True)}))


_answers = st.fixed_dictionaries({it.code: _answer(it.answer) for it in ITEMS}).map(
    lambda a: {k: v for k, v in a.items() if v is not None})
_report = st.tuples(st.sampled_from(REPORTERS), _answers, st.booleans())  # reporter, answers, corrects an earlier
_period = st.lists(_report, max_size=5)


def _records(period: str, drawn: list[tuple[str, dict[str, Any], bool]]) -> list[ReportRecord]:
    out: list[ReportRecord] = []
    for i, (who, answers, corrects) in enumerate(drawn):
        earlier = [r.report_id for r in out if r.reporter_id == who]
        out.append(rep(f"{period}-{i}", answers, reporter=who, period=period, received=T0 + timedelta(minutes=i),
                       supersedes=earlier[-1] if corrects and earlier else None))
    return out


def _shown(v: float) -> Decimal:
    return Decimal(repr(float(v))).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def _num(text: str) -> Decimal:
    return Decimal(text.replace(",", "."))


def _sentences(text: str) -> dict[str, str]:
    """head → body of each sentence after the opening one ("Head: body." or a whole sentence)."""
    out = {}
    for s in re.split(r"(?<=\.) (?=[A-ZÅÄÖ])", text)[1:]:
        head, _, body = s.partition(": ")
        out[head] = body
    return out


HEADS = {kind: PHRASES[kind] for kind in ("up_previous", "down_previous", "up_normal", "down_normal", "new",
                                          "above", "high_not_above", "high_no_history")}  # the sentences naming items


_N = r"\d+(?:[.,]\d)?"
ITEM_PATTERNS = {
    **{kind: rf"(?:Sak|Thing)(?P<n>\d) \((?P<a>{_N}) → (?P<b>{_N})\)"
       for kind in ("up_previous", "down_previous", "up_normal", "down_normal")},
    "new": rf"(?:Sak|Thing)(?P<n>\d) \((?P<a>{_N})\)",
    "above": rf"(?:Sak|Thing)(?P<n>\d) (?P<a>{_N}) \((?:normalt|normally) (?P<b>{_N})",
    "high_not_above": rf"(?:Sak|Thing)(?P<n>\d) (?P<a>{_N}) \((?:normalt|normally) (?P<b>{_N})",
    "high_no_history": rf"(?:Sak|Thing)(?P<n>\d) (?P<a>{_N})",
}


@settings(max_examples=300, deadline=None)
@given(current=_period, history=st.lists(st.one_of(st.none(), _period), min_size=8, max_size=8),
       expected=st.lists(st.sampled_from(REPORTERS), unique=True, max_size=4))
def test_every_sentence_states_a_true_comparison_alike_in_both_languages(
        current: list[Any], history: list[Any], expected: list[str]) -> None:
    past = {p: _records(p, drawn) for p, drawn in zip(weeks_before(8), history, strict=True) if drawn is not None}
    reports = _records(P.id, current)
    pic = picture(reports, past, items=ITEMS, expected=[ExpectedReporter(who, "hem") for who in expected])
    counting = effective_reports(reports)
    answered = {code for r in counting for code in r.answers}
    texts = pic.first_analysis
    comp = pic.completeness

    # the opening sentence: the picture's numbers, singular for one
    assert pic.reports == len(counting)
    assert comp.received == len({r.reporter_id for r in counting})
    assert comp.expected == len(expected)
    sv = re.match(r"Lägesbild för Område, v\. 48 \(23–29 nov 2026\): (\d+) (rapport(?:er)?) från (\d+) "
                  r"(rapportör(?:er)?) "
                  r"\((\d+) i tid\) av (\d+) (förväntade?) \(([\d,]+) %\)\.", texts["sv"])
    en = re.match(r"Situational picture for Område, week 48 \(23–29 Nov 2026\): (\d+) (reports?) from (\d+) "
                  r"(reporters?) "
                  r"\((\d+) on time\) of (\d+) expected \(([\d.]+) %\)\.", texts["en"])
    assert sv and en, texts
    assert [int(sv[1]), int(sv[3]), int(sv[5]), int(sv[6])] == [pic.reports, comp.received, comp.on_time, comp.expected]
    assert [int(en[1]), int(en[3]), int(en[5]), int(en[6])] == [pic.reports, comp.received, comp.on_time, comp.expected]
    assert (sv[2] == "rapport") == (pic.reports == 1) and (en[2] == "report") == (pic.reports == 1)
    assert (sv[4] == "rapportör") == (comp.received == 1) and (en[4] == "reporter") == (comp.received == 1)
    assert (sv[7] == "förväntad") == (comp.expected == 1)
    assert _num(sv[8]) == _num(en[7]) == _shown(comp.rate * 100)

    # numbers per language, and the same numbers in the same order in both
    assert not re.search(r"\d\.\d", texts["sv"]) and not re.search(r"\d,\d", texts["en"]), texts
    numbers = [re.findall(r"\d+(?:[.,]\d+)?", texts[lang]) for lang in ("sv", "en")]
    assert [_num(n) for n in numbers[0]] == [_num(n) for n in numbers[1]], texts

    by_lang = {lang: _sentences(texts[lang]) for lang in ("sv", "en")}
    named: dict[str, list[str]] = {}
    for kind, (head_sv, head_en) in HEADS.items():
        bodies = by_lang["sv"].get(head_sv), by_lang["en"].get(head_en)
        assert (bodies[0] is None) == (bodies[1] is None), (kind, texts)
        if bodies[0] is None:
            continue
        codes = [[f"c{n}" for n in re.findall(word + r"(\d)", body)]
                 for word, body in zip(("Sak", "Thing"), bodies, strict=True)]
        assert codes[0] == codes[1], (kind, texts)  # the same items in both languages
        named[kind] = codes[0]
        for body in bodies:
            assert body is not None
            for found in re.finditer(ITEM_PATTERNS[kind], body):
                s = pic.items[f"c{found['n']}"]
                first = _num(found["a"])
                second = _num(found["b"]) if "b" in found.groupdict() else None
                if kind.startswith(("up", "down")):  # "item (before → now)"
                    before = s.previous if kind.endswith("previous") else s.baseline
                    assert before is not None and (s.previous is None) == kind.endswith("normal")
                    assert second is not None and (first, second) == (_shown(before), _shown(s.value)), (kind, texts)
                    assert second > first if kind.startswith("up") else second < first
                    if kind.startswith("down"):
                        assert s.item in answered, (kind, texts)  # a fall only of an item answered now
                elif kind == "new":
                    assert first == _shown(s.value) > 0 and s.trend == "new"
                elif kind in ("above", "high_not_above"):  # "item value (normally baseline …)"
                    assert s.baseline is not None and s.flag is not None
                    assert second is not None and (first, second) == (_shown(s.value), _shown(s.baseline)), texts
                    assert first > second if kind == "above" else first <= second
                else:
                    assert s.baseline is None and s.flag is not None and first == _shown(s.value)
            assert len(re.findall(ITEM_PATTERNS[kind], body)) == len(codes[0]), (kind, texts)

    # what the text leaves out is what it cannot truly state
    for code, s in pic.items.items():
        if not counting:
            break
        ref = s.previous if s.previous is not None else s.baseline
        said = [kind for kind, codes in named.items() if code in codes]
        if s.flag is not None:
            assert sum(k in ("above", "high_not_above", "high_no_history") for k in said) == 1, (code, texts)
        moved = ref is not None and _shown(s.value) != _shown(ref) and s.trend in ("up", "down")
        fell = moved and s.trend == "down" and code in answered
        assert any(k.startswith("up") for k in said) == (moved and s.trend == "up"), (code, texts)
        assert any(k.startswith("down") for k in said) == fell, (code, texts)
