"""A reporter's note reaches the key function: written in the reporter form (headless Chromium, the whole
system started with ``est up``), it shows in the dashboard's area view under its item, with its place;
the reporter's own actor, a property company, sees only that there is a note. Published from the
dashboard with a comment, the picture's e-mail to the key function carries both, in its text and HTML."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.notifier.support import read_email
from tests.support import System, wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.e2e

NOTE = "Ny tagg på garagelängan"
COMMENT = "Vi tar bort taggen och pratar med fastighetsägaren."


def _picture(system: System, token: str, area: str, period: str) -> dict[str, Any]:
    r = httpx.get(f"{system.urls['aggregator']}/v1/areas/{area}/pictures/{period}",
                  headers={"Authorization": f"Bearer {token}"}, timeout=10)
    body: dict[str, Any] = r.json()
    return body


def test_a_note_written_in_the_form_is_read_by_the_key_function_in_the_area_view(
        system: System, sign_in: Callable[..., Page]) -> None:
    me = httpx.get(f"{system.urls['intake']}/v1/me", headers={"Authorization": "Bearer t-anna"}, timeout=10).json()
    period = next(a["current_period"] for a in me["areas"] if a["id"] == "araby")

    # the key function follows Araby's pictures by e-mail
    r = httpx.post(f"{system.urls['notifier']}/v1/subscriptions", headers={"Authorization": "Bearer t-lena"},
                   json={"name": "Lägesbilder Araby", "scope": {"municipality_id": "vaxjo", "area_ids": ["araby"]},
                         "events": ["picture.published"], "channel": {"type": "email", "to": "lena@example.org"},
                         "digest": "immediate", "language": "sv"}, timeout=10)
    assert r.status_code == 201, r.text

    page = sign_in("t-anna", "#form-title", viewport={"width": 420, "height": 900})
    klotter = "fieldset.item:has(legend:text('Klotter'))"
    page.check(f"{klotter} input[value='2']")
    page.check(f"{klotter} .chips input >> nth=0")  # centrum
    page.fill("#i-klotter-note", NOTE)
    page.click("#submit")
    page.wait_for_selector("#outbox li[data-state=accepted]", timeout=20000)

    pic = wait_for(lambda: (lambda p: p if p.get("note_count") == 1 else None)(
        _picture(system, "t-lena", "araby", period)))
    assert [(n["item"], n["place"], n["text"]) for n in pic["notes"]] == [("klotter", "centrum", NOTE)]
    seen = _picture(system, "t-anna", "araby", period)  # a property company's reporter: how many, no text
    assert seen["notes"] == [] and seen["note_count"] == 1

    kf = sign_in("t-lena", "#heatmap", viewport={"width": 1280, "height": 1000})
    kf.click("text=Nästa →")
    kf.wait_for_selector(f"#dash-title:has-text('{period}')")
    kf.click("tr[data-area=araby] th button")
    notes = kf.wait_for_selector("#notes li[data-item=klotter]")
    assert notes is not None
    assert notes.inner_text().strip() == f"Klotter · centrum: {NOTE}"
    # the area view counts reports and reporters the way the picture does (several reports of one reporter add up)
    comp = pic["completeness"]
    counts = kf.inner_text("#area-counts").strip()
    want = (f"{pic['reports']} {'rapport' if pic['reports'] == 1 else 'rapporter'} från {comp['received']} av "
            f"{comp['expected']} förväntade {'rapportör' if comp['expected'] == 1 else 'rapportörer'}")
    assert counts == want, counts

    # published from the area view with a comment (before the deadline: confirmed in the dialog)
    kf.fill("#comment", COMMENT)
    kf.click("#publish")
    kf.wait_for_selector("dialog#publish-confirm[open]")
    kf.click("#confirm-publish")
    kf.wait_for_selector("text=Lägesbilden är publicerad.")
    outbox = system.data_dir / "outbox"

    def picture_mail() -> dict[str, str] | None:
        for path in sorted(outbox.glob("*.eml")) if outbox.exists() else []:
            mail = read_email(path.read_bytes())
            if "Araby" in mail["subject"] and COMMENT in mail["text"]:
                return mail
        return None

    mail = wait_for(picture_mail, timeout=30)
    for part in ("text", "html"):
        assert NOTE in mail[part] and COMMENT in mail[part], (part, mail[part])
        assert "centrum" in mail[part]
