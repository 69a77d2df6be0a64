"""Checklist versions in a picture: which items it holds, and whose answers each item's series reads.

An item keeps its code across checklist versions, so its series, flags and alerts continue by
themselves. A renamed, split or merged item names the codes it replaces (``ChecklistItem.continues``).
The rule (``picture_items``, ``history_codes``):

* The answers given to the codes an item continues (transitively: ``c`` continues ``b``, which
  continued ``a``) count as answers to it, in every period: in its value and in the history its
  previous value, baseline, trend and flag are assessed against. They are read as the item's own
  answer type: counts add, a level is the highest, a yes/no counts the yes answers.
* A rename (``klotter_tagg`` continues ``klotter``): one series ``klotter_tagg``, whose earlier
  values are ``klotter``'s (and, in the week of the change, both codes' answers together).
* A split (``b`` and ``c`` both continue ``a``): each successor's history is ``a``'s whole value (an
  old answer cannot be divided between them); the picture marks it (``continued``: the codes
  whose answers a period's value holds besides the item's own).
* A merge (``c`` continues ``a`` and ``b``): both codes' answers count for ``c``.
* A code an item of the picture continues is no item of its own: its answers live on in its
  successor, so a picture has one series (and one alert) per item; a note written for the old
  code keeps its own code and labels.

A picture holds the items of its municipality's checklist in force (``OrgSnapshot.checklist_ref_for``),
then any other item its period's reports answered against another version, in that order; a code's
labels are those of the first of these checklists that names it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from est_shared.checklists import DEFAULT_CHECKLIST, Checklist, ChecklistItem, continued_codes, items_by_code


@dataclass(frozen=True)
class PictureItems:
    """The items of a picture and the codes each one's series reads."""

    items: list[ChecklistItem]
    lineage: dict[str, tuple[str, ...]]
    """item code -> its own code and those it continues (only items that continue some)"""
    folded: list[ChecklistItem]
    """items of the codes a picture item continues (they are no items of their own)"""

    @property
    def continues(self) -> dict[str, list[str]]:
        """item code -> the earlier codes its series continues (the mapping a reader is shown)."""
        return {code: list(codes[1:]) for code, codes in self.lineage.items()}


def history_codes(code: str, known: Mapping[str, ChecklistItem]) -> tuple[str, ...]:
    """The codes whose history an item continues: its own first, then the ones it names in ``continues``,
    then theirs (``known``: the items by code, newest version first, as ``items_by_code`` gives them)."""
    return continued_codes(code, known)


def picture_items(checklists: Sequence[Checklist], used: Sequence[Checklist] = ()) -> PictureItems:
    """The items of a picture (see the module docstring).

    ``checklists``: the municipality's, newest first, the one in force first
    (``OrgSnapshot.checklist_versions_for``); ``used``: those the period's reports were made against. With
    neither, the default checklist.
    """
    shown = [*checklists[:1], *used] or [DEFAULT_CHECKLIST]
    known = items_by_code([*shown, *checklists[1:]])
    candidates = items_by_code(shown)
    lineage: dict[str, tuple[str, ...]] = {}
    gone: dict[str, None] = {}
    for code in candidates:
        codes = history_codes(code, known)
        if len(codes) > 1:
            lineage[code] = codes
            for older in codes[1:]:  # a cycle (a continues b continues a) folds neither
                if code not in history_codes(older, known):
                    gone.setdefault(older)
    return PictureItems(items=[it for code, it in candidates.items() if code not in gone],
                        lineage={c: codes for c, codes in lineage.items() if c not in gone},
                        folded=[known[c] for c in gone if c in known])
