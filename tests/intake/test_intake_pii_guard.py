"""Unit tests of the personal-data guard on free text."""

from __future__ import annotations

import pytest
from est_shared.freetext import find_personal_data, personal_data_errors


@pytest.mark.parametrize("text, reason", [
    ("pojken 850101-1234 var där", "personal_identity_number"),
    ("19850101-1234", "personal_identity_number"),
    ("198501011234", "personal_identity_number"),
    ("8501011234", "personal_identity_number"),
    ("samordningsnr 850161-1234", "personal_identity_number"),
    ("pnr 20050101+1234", "personal_identity_number"),
    ("ring 070-123 45 67", "phone_number"),
    ("0701234567", "phone_number"),
    ("+46 70 123 45 67", "phone_number"),
    ("+46701234567", "phone_number"),
    ("0046 8 123 456 78", "phone_number"),
    ("08-123 456 78", "phone_number"),
    ("0470-123 45", "phone_number"),
    ("tel 031/12 34 56", "phone_number"),
    ("maila kalle.k@example.se", "email_address"),
    ("KALLE@EXAMPLE.COM", "email_address"),
])
def test_personal_data_is_flagged(text: str, reason: str) -> None:
    assert reason in find_personal_data(text)


@pytest.mark.parametrize("text", [
    "", "nytt klotter på garaget", "3 bilar, 12 personer vid 22-tiden", "vecka 2026-W48",
    "kl 21.30 den 2026-03-02", "10 000 kr i skador", "container nr 12", "0,5 liter sprit",
    "@hemmaplan på instagram", "buss 14 hållplats 3", "år 2025 och 2026", "rum 101-105",
])
def test_ordinary_text_passes(text: str) -> None:
    assert find_personal_data(text) == []


def test_errors_name_field_and_reason_in_both_languages() -> None:
    errors = personal_data_errors({"note": "ok", "answers.klotter.note": "ring 070-123 45 67"})
    assert len(errors) == 1
    e = errors[0]
    assert e["field"] == "answers.klotter.note" and e["reason"] == "phone_number"
    assert "telefonnummer" in e["message_sv"] and "phone number" in e["message_en"]
