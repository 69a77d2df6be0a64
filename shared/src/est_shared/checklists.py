"""Checklists as versioned data: the vocabulary every service uses to read, sum and label answers.

No national checklist exists, so each municipality may define its own; ``id@version`` is never
reused. The default ``est-standard@1`` is built from items named in municipal EST descriptions
(DOMAIN.md). Level scale: 0 inget, 1 enstaka, 2 återkommande, 3 omfattande.

A count is bounded per item and report (``max_count``, default ``DEFAULT_MAX_COUNT``): no one
observes ten thousand acts of vandalism in one area in a week, and a count without bound lets one
report swamp (or break) every sum it enters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

AnswerType = Literal["count", "level", "boolean"]

LEVELS = {
    0: {"sv": "inget", "en": "none"},
    1: {"sv": "enstaka", "en": "occasional"},
    2: {"sv": "återkommande", "en": "recurring"},
    3: {"sv": "omfattande", "en": "extensive"},
}

DEFAULT_MAX_COUNT = 10_000
"""The largest count one report may give for a count item, unless the item says otherwise."""
MAX_COUNT_CEILING = 1_000_000
"""The largest ``max_count`` a checklist may set; any answer value beyond it is refused unread."""


class ScaleStep(BaseModel):
    """What one step of a level scale is called."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sv: str = Field(min_length=1, max_length=100)
    en: str = Field(min_length=1, max_length=100)


class ChecklistGroup(BaseModel):
    """A heading that items are grouped under in the form (e.g. "Fysisk miljö")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    label_sv: str = Field(min_length=1, max_length=200)
    label_en: str = Field(min_length=1, max_length=200)


class ChecklistItem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    label_sv: str
    label_en: str
    answer: AnswerType
    max_count: int | None = Field(default=None, ge=1, le=MAX_COUNT_CEILING,
                                  description=f"count items: the largest count one report may give "
                                              f"(default {DEFAULT_MAX_COUNT}); none for levels and yes/no")
    help_sv: str | None = Field(default=None, max_length=1000, description="help text shown under the question")
    help_en: str | None = Field(default=None, max_length=1000)
    group: str | None = Field(default=None, description="code of the group (``groups``) the item is shown under")
    places: bool = Field(default=True, description="whether a reporter may name places for this item")
    scale: dict[int, ScaleStep] | None = Field(
        default=None, description="level items: the name of each step (default: 0 inget … 3 omfattande)")
    continues: list[str] = Field(
        default_factory=list, max_length=20,
        description="codes of earlier versions' items whose series this item continues (a rename or a split); "
                    "an item that keeps its code continues its own series without saying so")

    @model_validator(mode="before")
    @classmethod
    def _count_bound(cls, data: Any) -> Any:
        """A count item without ``max_count`` gets the default; other items take none."""
        if isinstance(data, dict):
            if data.get("answer") == "count" and data.get("max_count") is None:
                return {**data, "max_count": DEFAULT_MAX_COUNT}
            if data.get("answer") != "count" and data.get("max_count") is not None:
                raise ValueError("max_count applies to count items only")
        return data


class Checklist(BaseModel):
    """One immutable checklist version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    version: int = Field(ge=1)
    name_sv: str
    name_en: str
    items: list[ChecklistItem]
    groups: list[ChecklistGroup] = Field(default_factory=list, description="headings of the form, in order")

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    def item(self, code: str) -> ChecklistItem | None:
        cached = _BY_CODE.get(id(self))
        if cached is None or cached[0] is not self:  # built once per checklist object (the model is frozen)
            by_code: dict[str, ChecklistItem] = {}
            for i in self.items:
                by_code.setdefault(i.code, i)  # the first of a code, as a scan finds it
            if len(_BY_CODE) >= 256:
                _BY_CODE.clear()
            cached = _BY_CODE[id(self)] = (self, by_code)
        return cached[1].get(code)


_BY_CODE: dict[int, tuple[Checklist, dict[str, ChecklistItem]]] = {}


def items_by_code(checklists: Iterable[Checklist]) -> dict[str, ChecklistItem]:
    """Each code's item from the first checklist that names it (give the newest version first)."""
    out: dict[str, ChecklistItem] = {}
    for cl in checklists:
        for item in cl.items:
            out.setdefault(item.code, item)
    return out


def continued_codes(code: str, known: Mapping[str, ChecklistItem]) -> tuple[str, ...]:
    """The codes whose series the item ``code`` continues: its own first, then those it names in
    ``continues``, then theirs (breadth first, each once, so a cycle ends). ``known``: items by code
    (``items_by_code``); a continued code no checklist knows any more still counts, it only names no more."""
    out = [code]
    i = 0
    while i < len(out):
        item = known.get(out[i])
        i += 1
        for older in item.continues if item is not None else ():
            if older not in out:
                out.append(older)
    return tuple(out)


def _i(code: str, sv: str, en: str, answer: AnswerType) -> ChecklistItem:
    return ChecklistItem(code=code, label_sv=sv, label_en=en, answer=answer)


EST_STANDARD_1 = Checklist(
    id="est-standard", version=1, name_sv="EST standardchecklista", name_en="EST standard checklist",
    items=[
        _i("skadegorelse", "Skadegörelse", "Vandalism / criminal damage", "count"),
        _i("klotter", "Klotter", "Graffiti", "level"),
        _i("nedskrapning", "Nedskräpning", "Littering", "level"),
        _i("brand", "Anlagd brand (bil, container, papperskorg)", "Deliberately set fire", "count"),
        _i("samling", "Samling av personer som skapar otrygghet", "Gatherings causing insecurity", "level"),
        _i("tillhall", "Tillhåll", "Hang-out / den", "boolean"),
        _i("narkotika", "Misstänkt narkotikahandel eller -bruk", "Suspected drug dealing or use", "level"),
        _i("hot_vald", "Hot och våld i offentlig miljö", "Threats and violence in public space", "count"),
        _i("incident_personal", "Incident mot anställd", "Incident against staff", "count"),
        _i("inbrott", "Inbrott (källare, förråd, lokal, bil)", "Break-ins", "count"),
        _i("buskorning", "Buskörning (moped, mc, A-traktor, bil)", "Reckless / nuisance driving", "level"),
        _i("otrygg_plats", "Otrygg plats (mörk, ödslig, skymd)", "Place perceived as unsafe", "boolean"),
        _i("belysning", "Trasig eller bristande belysning", "Broken or missing lighting", "boolean"),
        _i("berusning", "Berusade personer, alkohol bland unga", "Public intoxication, youth drinking", "level"),
        _i("halvoffentligt", "Otrygghet i trapphus, källare, butiker", "Insecurity in semi-public spaces", "level"),
        _i("rykten", "Rykten och oro i sociala medier", "Rumours and unrest on social media", "boolean"),
        _i("arrangemang", "Kommande arrangemang (Valborg, skolavslutning)", "Upcoming events", "boolean"),
        _i("samlad_bedomning", "Samlad bedömning av läget", "Overall assessment", "level"),
    ],
)

DEFAULT_CHECKLIST = EST_STANDARD_1
BUILTIN_CHECKLISTS: dict[str, Checklist] = {EST_STANDARD_1.ref: EST_STANDARD_1}
