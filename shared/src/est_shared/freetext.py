"""The guard on free text that leaves its author: personal data and characters no channel can carry.

EST is about places and situations, not individuals (forms say "Skriv inte namn eller
personnummer"). Every free text a person writes that other people read (report notes, publish
comments, measures and their reasons, subscription names, names in the organisation) passes
through the same checks, in whichever service receives it:

- text that looks like a Swedish personal identity number (personnummer, samordningsnummer), a
  phone number or an e-mail address is refused, with the field named and the reason given in
  Swedish and English, never quoting the text;
- a NUL byte or another control character is refused in every text (PostgreSQL cannot store NUL,
  and CR/LF in a one-line text breaks mail headers and logs); a multi-line text may hold line
  breaks and tabs.

Names alone cannot be told from place names reliably; the forms ask people not to write them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_PNR = re.compile(r"(?<![\d+])(?:19|20)?\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]|6[1-9]|[78]\d|9[01])"
                  r"[-+ ]?\d{4}(?!\d)")
_PHONE_INTL = re.compile(r"(?<![\w+])(?:\+|00)\s?46[\s-]*(?:\(0\)[\s-]*)?\d(?:[\s-]?\d){6,9}(?!\d)")
_PHONE_NATIONAL = re.compile(r"(?<![\w+])0\d{1,3}(?:[\s/-]?\d){5,8}(?!\d)")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_CONTROL_ONE_LINE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
_CONTROL_MULTI_LINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

PII_REASONS: dict[str, dict[str, str]] = {
    "personal_identity_number": {
        "sv": "texten ser ut att innehålla ett personnummer; skriv inte namn eller personnummer",
        "en": "the text looks like it contains a personal identity number; do not write names or ID numbers",
    },
    "phone_number": {
        "sv": "texten ser ut att innehålla ett telefonnummer; skriv inte uppgifter som identifierar personer",
        "en": "the text looks like it contains a phone number; do not write details that identify people",
    },
    "email_address": {
        "sv": "texten ser ut att innehålla en e-postadress; skriv inte uppgifter som identifierar personer",
        "en": "the text looks like it contains an e-mail address; do not write details that identify people",
    },
    "control_character": {
        "sv": "texten innehåller ett kontrolltecken (t.ex. NUL eller radbrytning) som inte får förekomma här",
        "en": "the text contains a control character (such as NUL or a line break) that is not allowed here",
    },
}


def find_personal_data(text: str) -> list[str]:
    """Reasons why a free text looks like it identifies a person (empty list: looks fine)."""
    if not text:
        return []
    reasons = []
    if _PNR.search(text):
        reasons.append("personal_identity_number")
    if _EMAIL.search(text):
        reasons.append("email_address")
    for m in (*_PHONE_INTL.finditer(text), *_PHONE_NATIONAL.finditer(text)):
        digits = sum(c.isdigit() for c in m.group())
        national = not m.group().lstrip().startswith(("+", "00"))
        if (8 <= digits <= 10) if national else (9 <= digits <= 13):
            reasons.append("phone_number")
            break
    return reasons


def has_control_characters(text: str, *, multiline: bool = False) -> bool:
    """Whether a text holds a character no channel can carry (NUL always; CR/LF unless ``multiline``)."""
    if not text:
        return False
    return bool((_CONTROL_MULTI_LINE if multiline else _CONTROL_ONE_LINE).search(text))


def _error(name: str, reason: str) -> dict[str, str]:
    msg = PII_REASONS[reason]
    return {"field": name, "reason": reason, "message": f"{msg['sv']} / {msg['en']}",
            "message_sv": msg["sv"], "message_en": msg["en"]}


def personal_data_errors(fields: Mapping[str, str]) -> list[dict[str, str]]:
    """Validation errors for free-text fields that look like personal data (the text is never quoted)."""
    return [_error(name, reason) for name, text in fields.items() for reason in find_personal_data(text)]


def free_text_errors(fields: Mapping[str, str | None], *, multiline: frozenset[str] | set[str] = frozenset()
                     ) -> list[dict[str, str]]:
    """Every error of a set of free texts: control characters, then personal data.

    ``multiline`` names the fields that may hold line breaks (notes, comments); the rest are one line.
    """
    out: list[dict[str, str]] = []
    for name, text in fields.items():
        if not text:
            continue
        if has_control_characters(text, multiline=name in multiline):
            out.append(_error(name, "control_character"))
        out.extend(_error(name, reason) for reason in find_personal_data(text))
    return out
