"""The subscription API: authentication, authorisation, validation and changes."""

from __future__ import annotations

from pathlib import Path

from tests.notifier.support import Org, notifier_settings, running_notifier


def _body(org: Org, **over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "name": "Växjöhem driftcentral", "scope": {"municipality_id": org.m, "area_ids": [org.a1]},
        "events": ["picture.published", "alert.raised"],
        "channel": {"type": "webhook", "url": "https://example.org/est", "secret": "s3cret"},
        "digest": "immediate", "language": "sv"}
    body.update(over)
    return body


async def test_subscription_api_answers_401_403_422(nats_url: str, tmp_path: Path, org: Org) -> None:
    async with running_notifier(notifier_settings(nats_url, tmp_path, org), org) as n:
        http = n.http
        r = await http.post("/v1/subscriptions", json=_body(org))
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        r = await http.get("/v1/subscriptions", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401
        # outside the caller's areas
        r = await http.post("/v1/subscriptions", json=_body(org, scope={"municipality_id": org.m,
                                                                      "area_ids": [org.a2]}),
                            headers=org.auth("owner"))
        assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
        # validation
        for bad in (_body(org, channel={"type": "webhook", "url": "ftp://example.org/x", "secret": "s"}),
                    _body(org, events=[]), _body(org, events=["picture.updated"]),
                    _body(org, channel={"type": "email", "to": "not-an-address"}),
                    _body(org, channel={"type": "pigeon"}), _body(org, digest="hourly"),
                    _body(org, scope={"municipality_id": "nowhere"}),
                    _body(org, scope={"municipality_id": org.m, "area_ids": ["nowhere"]})):
            r = await http.post("/v1/subscriptions", json=bad, headers=org.auth("owner"))
            assert r.status_code == 422, (bad, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["errors"]
        r = await http.post("/v1/subscriptions", content=b"{nope", headers={**org.auth("owner"),
                                                                         "content-type": "application/json"})
        assert r.status_code == 400


async def test_subscriptions_are_private_to_their_owner(nats_url: str, tmp_path: Path, org: Org) -> None:
    async with running_notifier(notifier_settings(nats_url, tmp_path, org), org) as n:
        http = n.http
        r = await http.post("/v1/subscriptions", json=_body(org), headers=org.auth("owner"))
        assert r.status_code == 201
        sub = r.json()
        assert r.headers["location"] == f"/v1/subscriptions/{sub['id']}"
        assert sub["channel"] == {"type": "webhook", "url": "https://example.org/est", "secret_set": True}
        # default scope = the caller's areas of the municipality (a reporter subscribes by e-mail)
        r = await http.post("/v1/subscriptions", json=_body(org, scope={"municipality_id": org.m},
                                                          channel={"type": "email", "to": "ada@example.org"}),
                            headers=org.auth("other"))
        assert r.status_code == 201 and r.json()["scope"]["area_ids"] == [org.a2]
        other_id = r.json()["id"]

        mine = (await http.get("/v1/subscriptions", headers=org.auth("owner"))).json()
        assert [s["id"] for s in mine] == [sub["id"]]
        everyone = (await http.get("/v1/subscriptions", headers=org.auth("admin"))).json()
        assert {s["id"] for s in everyone} >= {sub["id"], other_id}

        assert (await http.get(f"/v1/subscriptions/{sub['id']}", headers=org.auth("other"))).status_code == 403
        assert (await http.get(f"/v1/subscriptions/{sub['id']}", headers=org.auth("admin"))).status_code == 200
        assert (await http.get("/v1/deliveries", params={"subscription_id": sub["id"]},
                               headers=org.auth("other"))).status_code == 403
        assert (await http.get("/v1/subscriptions/missing", headers=org.auth("owner"))).status_code == 404

        r = await http.patch(f"/v1/subscriptions/{sub['id']}", json={"language": "en", "min_severity": "critical",
                                                                     "channel": {"type": "webhook",
                                                                                 "url": "https://example.org/new"}},
                             headers=org.auth("owner"))
        assert r.status_code == 200, r.text
        assert r.json()["language"] == "en" and r.json()["channel"]["secret_set"] is True
        r = await http.patch(f"/v1/subscriptions/{sub['id']}", json={"scope": {"municipality_id": org.m,
                                                                               "area_ids": [org.a2]}},
                             headers=org.auth("owner"))
        assert r.status_code == 403
        r = await http.patch(f"/v1/subscriptions/{sub['id']}", json={"name": None}, headers=org.auth("owner"))
        assert r.status_code == 422

        assert (await http.delete(f"/v1/subscriptions/{sub['id']}", headers=org.auth("other"))).status_code == 403
        assert (await http.delete(f"/v1/subscriptions/{sub['id']}", headers=org.auth("owner"))).status_code == 204
        assert (await http.get(f"/v1/subscriptions/{sub['id']}", headers=org.auth("owner"))).status_code == 404
        assert (await http.get("/readyz")).status_code == 200
        assert (await http.get("/docs")).status_code == 200


async def test_a_subscription_name_with_personal_data_or_control_characters_is_refused(
        nats_url: str, tmp_path: Path, org: Org) -> None:
    """A subscription's name is seen by others (the delivery ledger, the paused notice): the free-text guard."""
    async with running_notifier(notifier_settings(nats_url, tmp_path, org), org) as n:
        created = await n.http.post("/v1/subscriptions", json=_body(org), headers=org.auth("owner"))
        assert created.status_code == 201, created.text
        for bad, field in ((_body(org, name="Ring Kim på 070-123 45 67"), "body.name"),
                           (_body(org, name="Kim 20100515-2382"), "body.name"),
                           (_body(org, name="Drift\r\nBcc: x@example.org"), "body.name"),
                           (_body(org, channel={"type": "email", "to": "a\x00b@example.org"}),
                            "body.channel.email.to")):
            r = await n.http.post("/v1/subscriptions", json=bad, headers=org.auth("owner"))
            assert r.status_code == 422, (bad, r.text)
            assert [e["field"] for e in r.json()["errors"]] == [field], r.text
            assert "070-123" not in r.text and "20100515" not in r.text and "Bcc" not in r.text
        r = await n.http.patch(f"/v1/subscriptions/{created.json()['id']}", json={"name": "Kim 20100515-2382"},
                               headers=org.auth("owner"))
        assert r.status_code == 422 and "20100515" not in r.text
