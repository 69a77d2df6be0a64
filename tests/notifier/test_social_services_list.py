"""The notifications due to social services, as their page lists them: intake and notifier on real NATS.

Every protocol about someone under 18 is listed for social services of its municipality only (not for the police,
key functions, admins or reporters, nor for another municipality's social services), without the person's name
or personal identity number; opening one reads the protocol through the intake with a stated purpose, and the
administrator's access log shows that read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from est_intake.app import create_app as create_intake
from est_intake.forfeitures.pii import generate_key
from est_notifier.app import create_app
from est_shared.natsserver import NatsServer
from est_shared.testing import serve

from tests.intake.support import settings_for
from tests.notifier.test_social_services_notification import notifier_settings
from tests.security.support import auth, born_years_ago, forfeiture_org, pnr, protocol
from tests.support import eventually

NAME = "Tindra Listadotter"


async def _ready(runtime: Any) -> bool:
    return "sara" in runtime.directory.snapshot.people


async def test_social_services_list_their_municipalitys_notifications_without_personal_data_and_read_one(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    key = generate_key()
    minor = pnr(born_years_ago(15), serial="431")
    (tmp_path / "intake").mkdir()
    intake_app = create_intake(settings_for(tmp_path / "intake", fresh_nats.url, forfeiture_org(), pii_key=key))
    notifier_app = create_app(notifier_settings(fresh_nats.url, tmp_path / "notifier", key))
    async with serve(intake_app) as ibase, serve(notifier_app) as nbase, \
            httpx.AsyncClient(base_url=ibase, timeout=10) as intake, \
            httpx.AsyncClient(base_url=nbase, timeout=10) as notifier:
        await eventually(lambda: _ready(notifier_app.state.runtime))
        assert (await notifier.get("/v1/social-services/notifications", headers=auth("sara"))).json() == []
        body = protocol(name=NAME, number=minor)
        assert (await intake.post("/v1/forfeitures", json=body, headers=auth("petra"))).status_code == 202
        adult = protocol(name="Vuxen Person", number=pnr(born_years_ago(19), serial="532"))
        assert (await intake.post("/v1/forfeitures", json=adult, headers=auth("petra"))).status_code == 202

        async def listed() -> list[dict[str, Any]] | None:
            r = await notifier.get("/v1/social-services/notifications", headers=auth("sara"))
            assert r.status_code == 200, r.text
            return r.json() or None

        found = await eventually(listed)
        assert [n["protocol_id"] for n in found] == [body["protocol_id"]]  # a 19-year-old is not notified
        [n] = found
        assert n["municipality_name"] and n["municipality_name"] != "vaxjo"
        assert n["area_id"] == "araby" and n["area_name"] and n["place"] == "centrum"
        assert n["age_band"] == "15_17" and n["reason"] == "under_18"
        text = json.dumps(found, ensure_ascii=False)
        for secret in (NAME, minor, minor.replace("-", ""), "inspektör", "Maxi"):
            assert secret not in text
        for who in ("petra", "bo", "admin", "anna"):  # police, key function, admin, reporter
            r = await notifier.get("/v1/social-services/notifications", headers=auth(who))
            assert r.status_code == 403, (who, r.text)
        assert (await notifier.get("/v1/social-services/notifications")).status_code == 401

        # opening one reads the protocol through the intake with a purpose; the read is logged
        r = await intake.get(f"/v1/forfeitures/{n['protocol_id']}", headers=auth("sara"))
        assert r.status_code == 422
        r = await intake.get(f"/v1/forfeitures/{n['protocol_id']}", params={"purpose": "uppföljningssamtal"},
                             headers=auth("sara"))
        assert r.status_code == 200 and r.json()["person"]["name"] == NAME
        log = (await intake.get("/v1/admin/forfeiture-access-log", params={"protocol_id": n["protocol_id"]},
                                headers=auth("admin"))).json()["entries"]
        assert [(e["person_id"], e["purpose"], e["outcome"]) for e in log][:1] == [
            ("sara", "uppföljningssamtal", "granted")]
