"""Police and social services are told when their sign-in credential changes: a real organisation change
applied at the intake, carried by est.org.changed on real NATS, read by the notifier."""

from __future__ import annotations

import asyncio
import email
import uuid
from datetime import datetime
from email.policy import default
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from est_intake.app import create_app as create_intake
from est_notifier.app import Settings, create_app
from est_shared.natsserver import NatsServer
from est_shared.testing import serve

from tests.intake.support import settings_for
from tests.security.support import TOKENS, auth, forfeiture_org
from tests.support import eventually

EMAILS = {"petra": "petra.polis@example.org", "sara": "sara.social@example.org", "olle": "olle@example.org",
          "anna": "anna@example.org", "bo": "bo@example.org"}


def org_with(tokens: dict[str, str]) -> dict[str, Any]:
    """The forfeiture test organisation with e-mail addresses, and ``tokens`` instead of the usual ones."""
    org = forfeiture_org()
    for person in org["people"]:
        person["email"] = EMAILS.get(person["id"], person.get("email"))
        if person["id"] in tokens:
            person["token"] = tokens[person["id"]]
    return org


def _apps(tmp_path: Path, nats: NatsServer) -> tuple[Any, Any]:
    """An intake on the test organisation and a notifier of Växjö on durables of their own."""
    (tmp_path / "intake").mkdir()
    intake = create_intake(settings_for(tmp_path / "intake", nats.url, org_with({})))
    tag = uuid.uuid4().hex[:8]
    notifier = create_app(Settings(
        nats_url=nats.url, data_dir=tmp_path / "notifier", log_level="WARNING", reminders_enabled=False,
        municipality_filter="vaxjo", poll_interval=0.1, durable_pictures=f"p-{tag}", durable_alerts=f"al-{tag}",
        durable_analyses=f"an-{tag}", durable_updates=f"up-{tag}", durable_notifications=f"nf-{tag}"))
    return intake, notifier


async def told(outbox: Path) -> dict[str, str]:
    """Recipient -> plain text of every credential notice in the outbox."""
    def read() -> dict[str, str]:
        out = {}
        for path in sorted(outbox.glob("*.eml")) if outbox.exists() else []:
            msg = email.message_from_bytes(path.read_bytes(), policy=default)
            if str(msg["Subject"]).startswith("Din inloggningsuppgift"):
                out[str(msg["To"])] = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        return out
    return await asyncio.to_thread(read)


async def test_police_and_social_services_are_told_when_their_token_changes(tmp_path: Path,
                                                                            fresh_nats: NatsServer) -> None:
    intake, notifier = _apps(tmp_path, fresh_nats)
    outbox = tmp_path / "notifier" / "outbox"
    new = {"petra": "tok-petra-2", "sara": "tok-sara-2", "anna": "tok-anna-2", "bo": "tok-bo-2"}
    async with serve(intake) as ibase, serve(notifier) as nbase, \
            httpx.AsyncClient(base_url=ibase, timeout=10) as http, httpx.AsyncClient(base_url=nbase) as nhttp:
        runtime = notifier.state.runtime

        async def loaded() -> bool:
            return "petra" in runtime.directory.snapshot.people

        await eventually(loaded, timeout=15)
        before = runtime.directory.snapshot.version
        r = await http.put("/v1/admin/org", json=org_with(new), headers=auth("admin"))
        assert r.status_code == 200, r.text

        async def applied() -> bool:
            return runtime.directory.snapshot.version > before

        await eventually(applied, timeout=15)
        notices = await eventually(lambda: _at_least(outbox, 2), timeout=15)
        await asyncio.sleep(0.5)
        assert set(notices) == set(await told(outbox)) == {EMAILS["petra"], EMAILS["sara"]}
        today = datetime.now(ZoneInfo("Europe/Stockholm")).strftime("%Y-%m-%d")
        for text in notices.values():
            assert "ändrades" in text and "kontakta din administratör" in text and "contact your administrator" in text
            assert f"ändrades {today} " in text  # when, in the municipality's time
            assert not [t for t in (*TOKENS.values(), *new.values()) if t in text]
        # the same organisation again changes nothing and tells nobody again
        r = await http.put("/v1/admin/org", json=org_with(new), headers=auth("admin"))
        assert r.status_code == 200
        await asyncio.sleep(1.0)
        assert len(list(outbox.glob("*.eml"))) == 2
        metrics = (await nhttp.get("/metrics")).text
        assert "est_notifier_credential_notices_total 2.0" in metrics


async def _at_least(outbox: Path, n: int) -> dict[str, str] | None:
    found = await told(outbox)
    return found if len(found) >= n else None


async def test_a_personal_api_token_issued_to_a_police_officer_is_told_to_her(tmp_path: Path,
                                                                              fresh_nats: NatsServer) -> None:
    """An administrator who issues an API token for a police officer could read protocols as her: she is told,
    as when her token in the file changes; a token issued to a reporter tells nobody."""
    intake, notifier = _apps(tmp_path, fresh_nats)
    outbox = tmp_path / "notifier" / "outbox"
    async with serve(intake) as ibase, serve(notifier) as nbase, \
            httpx.AsyncClient(base_url=ibase, timeout=10) as http, httpx.AsyncClient(base_url=nbase) as nhttp:
        runtime = notifier.state.runtime

        async def loaded() -> bool:
            return "petra" in runtime.directory.snapshot.people

        await eventually(loaded, timeout=15)
        for person in ("anna", "petra"):
            r = await http.post(f"/v1/admin/people/{person}/tokens", json={"name": "ny telefon"},
                                headers=auth("admin"))
            assert r.status_code == 201, r.text
        issued = r.json()
        notices = await eventually(lambda: _at_least(outbox, 1), timeout=15)
        await asyncio.sleep(0.5)
        assert set(notices) == {EMAILS["petra"]}, "the police officer is told; the reporter's token tells nobody"
        assert issued["token"] not in notices[EMAILS["petra"]]
        assert len(list(outbox.glob("*.eml"))) == 1

        # revoking it is a change of her credentials too
        r = await http.delete(f"/v1/admin/people/petra/tokens/{issued['id']}", headers=auth("admin"))
        assert r.status_code in (200, 204), r.text
        await eventually(lambda: len(list(outbox.glob("*.eml"))) == 2, timeout=15)
        metrics = (await nhttp.get("/metrics")).text
        assert "est_notifier_credential_notices_total 2.0" in metrics
