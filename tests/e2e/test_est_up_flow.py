"""End to end on the embedded default: a field app's report reaches an actor's webhook in a published picture."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import uuid
from typing import Any

import httpx
import pytest
from est_shared.periods import Period

from tests.support import System, WebhookReceiver, service_pid, start_system, wait_for

pytestmark = pytest.mark.e2e

SECRET = "s3cret-webhook"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_report_reaches_signed_webhook_in_published_picture_and_survives_restart(system: System) -> None:
    week = Period.week_containing(__import__("datetime").date.today()).id
    with WebhookReceiver() as receiver, httpx.Client(timeout=15) as http:
        # every service is up and documents itself
        for name, url in system.urls.items():
            assert http.get(f"{url}/healthz").json() == {"status": "ok"}, name
            assert http.get(f"{url}/readyz").status_code == 200, name
            assert http.get(f"{url}/openapi.json").status_code == 200, name
            assert "est_" in http.get(f"{url}/metrics").text, name

        # an actor subscribes to pictures of Araby with a signed webhook
        r = http.post(f"{system.urls['notifier']}/v1/subscriptions", headers=_auth("t-lena"), json={
            "name": "Växjöhem driftcentral", "scope": {"municipality_id": "vaxjo", "area_ids": ["araby"]},
            "events": ["picture.published"], "channel": {"type": "webhook", "url": receiver.url, "secret": SECRET},
            "digest": "immediate", "language": "sv"})
        assert r.status_code == 201, r.text

        # a field app posts two reports; a replay is answered the same
        report = {"report_id": str(uuid.uuid4()), "area_id": "araby", "period": week, "checklist": "est-standard@1",
                  "answers": {"klotter": {"value": 2, "places": ["centrum"], "note": "nytt på garaget"},
                              "skadegorelse": {"value": 3}},
                  "nothing_to_report": False, "note": "", "supersedes": None}
        first = http.post(f"{system.urls['intake']}/v1/reports", headers=_auth("t-anna"), json=report)
        assert first.status_code == 202, first.text
        assert first.json()["status"] == "accepted"
        again = http.post(f"{system.urls['intake']}/v1/reports", headers=_auth("t-anna"), json=report)
        assert (again.status_code, again.json()) == (202, first.json())
        conflict = http.post(f"{system.urls['intake']}/v1/reports", headers=_auth("t-anna"),
                             json={**report, "answers": {"klotter": {"value": 3}}})
        assert conflict.status_code == 409
        assert conflict.headers["content-type"].startswith("application/problem+json")
        second = {**report, "report_id": str(uuid.uuid4()), "answers": {"skadegorelse": {"value": 1}}}
        assert http.post(f"{system.urls['intake']}/v1/reports", headers=_auth("t-anna"),
                         json=second).status_code == 202

        picture_url = f"{system.urls['aggregator']}/v1/areas/araby/pictures/{week}"

        def two_reports() -> dict[str, Any] | None:
            p = http.get(picture_url, headers=_auth("t-lena")).json()
            return p if p.get("reports") == 2 else None

        picture = wait_for(two_reports)
        assert picture["status"] == "open"
        assert picture["items"]["skadegorelse"]["value"] == 4

        # the key function publishes the week
        pub = http.post(f"{picture_url}/publish", headers=_auth("t-lena"),
                        json={"comment": "Vi följer upp klottret.", "confirm_incomplete": True})
        assert pub.status_code in (200, 201, 202), pub.text

        got = wait_for(lambda: receiver.received, timeout=30)
        delivery = got[0]
        body: bytes = delivery["body"]
        expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert delivery["headers"]["x-est-signature"] == f"sha256={expected}"
        assert delivery["headers"]["content-type"].startswith("application/cloudevents+json")
        assert delivery["headers"]["idempotency-key"] == delivery["headers"]["x-est-delivery"]
        event = json.loads(body)
        assert event["specversion"] == "1.0"
        assert event["type"] == "se.est.picture.published"
        sent = event["data"]["picture"]
        assert (sent["area_id"], sent["period"], sent["version"]) == ("araby", week, 1)
        assert sent["items"]["skadegorelse"]["value"] == 4
        assert sent["items"]["klotter"]["value"] == 2
        assert sent["reports"] == 2

        # the delivery ledger shows the attempt
        ledger = http.get(f"{system.urls['notifier']}/v1/deliveries", headers=_auth("t-lena"),
                          params={"event_id": event["id"]})
        assert ledger.status_code == 200, ledger.text

        # the report can be followed through the services by ids in their structured logs:
        # intake (accepted) → aggregator (stored, then the picture version that holds it) → notifier (delivered)
        def log_of(name: str) -> str:
            return (system.data_dir / "logs" / f"{name}.log").read_text(errors="replace")

        rid, did = report["report_id"], delivery["headers"]["x-est-delivery"]
        assert any('accepted"' in line and rid in line for line in log_of("intake").splitlines())
        assert any('"reports stored"' in line and rid in line for line in log_of("aggregator").splitlines())
        assert any('"picture published"' in line and event["id"] in line for line in log_of("aggregator").splitlines())
        wait_for(lambda: any('"delivered"' in line and did in line and event["id"] in line
                             for line in log_of("notifier").splitlines()), timeout=15)
        for name in ("intake", "aggregator", "notifier"):  # ids only: no report content in the logs
            assert "nytt på garaget" not in log_of(name)

    # stop cleanly, start again with the same data dir: nothing lost
    assert system.stop() == 0
    assert "Stopped cleanly" in system.output()
    ports = {s: int(u.rsplit(":", 1)[1]) for s, u in system.urls.items()}
    again_sys = start_system(system.data_dir, None, ports=ports)
    try:
        with httpx.Client(timeout=15) as http:
            p = wait_for(lambda: http.get(picture_url, headers=_auth("t-lena")).json().get("version") == 1 and
                         http.get(picture_url, headers=_auth("t-lena")).json())
            assert p["status"] == "published"
            assert p["reports"] == 2
            assert http.post(f"{again_sys.urls['intake']}/v1/reports", headers=_auth("t-anna"),
                             json=report).json() == first.json()
    finally:
        assert again_sys.stop() == 0


def test_a_killed_service_is_restarted_loudly(system: System) -> None:
    import os

    with httpx.Client(timeout=5) as http:
        os.kill(service_pid(system.proc.pid, "aggregator"), signal.SIGKILL)
        wait_for(lambda: "aggregator exited" in system.output(), timeout=10)
        wait_for(lambda: http.get(f"{system.urls['aggregator']}/readyz").status_code == 200, timeout=40)
    assert "restarting" in system.output()
