"""The checklists a municipality's items and series are read from, and the codes an item continues."""

from __future__ import annotations

from est_shared.checklists import EST_STANDARD_1, Checklist, ChecklistItem, continued_codes, items_by_code
from est_shared.org import Municipality, OrgSnapshot


def _cl(version: int, *items: ChecklistItem) -> Checklist:
    return Checklist(id="ort", version=version, name_sv="Ort", name_en="Ort", items=list(items))


def _item(code: str, sv: str, continues: list[str] | None = None) -> ChecklistItem:
    return ChecklistItem(code=code, label_sv=sv, label_en=sv, answer="count", continues=continues or [])


V1 = _cl(1, _item("klotter", "Klotter"))
V2 = _cl(2, _item("klotter_tagg", "Klotter och tagg", ["klotter"]))
V3 = _cl(3, _item("klotter_alla", "Allt klotter", ["klotter_tagg"]), _item("klotter", "Klotter igen"))


def test_versions_of_a_municipality_newest_first_the_one_in_force_first() -> None:
    org = OrgSnapshot(municipalities={
        "m": Municipality(id="m", name="M", checklist=V2.ref, accepted_checklists=[EST_STANDARD_1.ref]),
        "n": Municipality(id="n", name="N")},
        checklists={V1.ref: V1, V2.ref: V2, V3.ref: V3})
    # in force, still accepted, then the other versions of their ids, highest first (a newer one too)
    assert [c.ref for c in org.checklist_versions_for("m")] == [V2.ref, EST_STANDARD_1.ref, V3.ref, V1.ref]
    assert [c.ref for c in org.checklist_versions_for("n")] == [EST_STANDARD_1.ref]
    assert [c.ref for c in org.checklist_versions_for("unknown")] == [EST_STANDARD_1.ref]


def test_continued_codes_are_transitive_newest_item_first_and_end_a_cycle() -> None:
    known = items_by_code([V3, V2, V1])
    assert known["klotter"].label_sv == "Klotter igen"  # the first checklist naming a code gives its item
    assert continued_codes("klotter_alla", known) == ("klotter_alla", "klotter_tagg", "klotter")
    assert continued_codes("gone", known) == ("gone",)
    loop = items_by_code([_cl(4, _item("a", "A", ["b"]), _item("b", "B", ["a"]))])
    assert continued_codes("a", loop) == ("a", "b")
