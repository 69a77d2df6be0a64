"""Reporters' notes: what of a report's ``answers.<item>.note`` is kept, the notes a picture holds, and who
may read their text.

A note is kept as the reporter wrote it (the intake's personal-data guard has passed it). A picture
holds the notes of its period's reports that no stored report supersedes (a correction's notes
replace the corrected report's), in the checklist's item order, then in the order the reports came.
Key functions, admins and police read the notes' text; every other actor sees only how many there
are (``note_count``), because a note is free text about a place and can say more than a count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from est_shared.checklists import ChecklistItem
from est_shared.events import NoteSummary
from est_shared.freetext import has_control_characters

from est_aggregator.pictures.domain.reports import as_utc

MAX_NOTE = 2000  # characters kept of one note (the intake bounds it far below this)

NOTE_READERS = frozenset({"key_function", "admin", "police"})  # roles that read the notes' text
MISSING_READERS = frozenset({"key_function", "admin"})  # roles that read who has not reported


@dataclass(frozen=True)
class StoredNote:
    """One kept note of a stored report, as the picture rules need it."""

    report_id: str
    period: str  # the report's stored period id
    item: str
    places: tuple[str, ...]
    text: str
    received_at: datetime


def kept_note(text: str) -> str:
    """The part of a note that is kept: trimmed and bounded; empty for a blank note or one no channel can
    carry (a NUL, which PostgreSQL refuses to store)."""
    text = text.strip()
    if not text or has_control_characters(text, multiline=True):
        return ""
    return text[:MAX_NOTE]


def split_notes(answers: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """A report's answers as stored (value and places) and its notes (item, places, text), from answers that
    may carry a ``note`` each."""
    stored: dict[str, dict[str, Any]] = {}
    notes: list[dict[str, Any]] = []
    for code, answer in answers.items():
        stored[code] = {k: v for k, v in answer.items() if k != "note"}
        text = answer.get("note")
        if text:
            notes.append({"item": code, "places": list(answer.get("places") or ()), "text": text})
    return stored, notes


def stored_notes(report_id: str, period: str, received_at: datetime,
                 notes: Iterable[Mapping[str, Any]]) -> list[StoredNote]:
    """The notes column of a stored report as ``StoredNote``s."""
    at = as_utc(received_at)
    return [StoredNote(report_id=report_id, period=period, item=str(n.get("item", "")),
                       places=tuple(n.get("places") or ()), text=str(n["text"]), received_at=at)
            for n in notes if n.get("text")]


def picture_notes(notes: Iterable[StoredNote], superseded: Iterable[str],
                  items: Sequence[ChecklistItem]) -> list[NoteSummary]:
    """The notes a picture holds: those of reports no stored report supersedes, with the item's labels and
    the place (one place named: that place; several: ``place`` is None and ``place_name`` names them all)."""
    gone = set(superseded)
    by_code = {it.code: it for it in items}
    order = {it.code: i for i, it in enumerate(items)}
    kept = sorted((n for n in notes if n.report_id not in gone),
                  key=lambda n: (order.get(n.item, len(order)), n.item, n.received_at, n.report_id))
    out = []
    for n in kept:
        item = by_code.get(n.item)
        place = n.places[0] if len(n.places) == 1 else None
        out.append(NoteSummary(item=n.item, label_sv=item.label_sv if item else "",
                               label_en=item.label_en if item else "", place=place,
                               place_name=", ".join(n.places) or None, text=n.text, report_id=n.report_id))
    return out


def reads_notes(roles: Iterable[str]) -> bool:
    """Whether a person reads the notes' text: key functions, admins and police (by role, as the notifier
    decides it for every channel).

    Callers give only people who may see the picture's area (a key function or police officer of
    another municipality never gets that far)."""
    return bool(NOTE_READERS & set(roles))


def reads_missing_reporters(roles: Iterable[str]) -> bool:
    """Whether a person reads the names of who has not reported: key functions and admins."""
    return bool(MISSING_READERS & set(roles))


def notes_view(picture: dict[str, Any], *, reads: bool, reads_missing: bool = True) -> dict[str, Any]:
    """A picture (its JSON form) as a caller sees it: the notes for a reader, only ``note_count`` for others;
    the names of who has not reported for key functions and admins, the counts for everyone."""
    if not reads and picture.get("notes"):
        picture = {**picture, "notes": []}
    completeness = picture.get("completeness")
    if not reads_missing and isinstance(completeness, dict) and completeness.get("missing_reporters"):
        picture = {**picture, "completeness": {**completeness, "missing_reporters": []}}
    return picture
