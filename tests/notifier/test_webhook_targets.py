"""Where webhooks may go: internal targets refused in every spelling when subscribing and again when sending
(DNS rebinding, subscriptions made before the rules), the connection pinned to the checked address, no
redirects followed, the operator's allow list (EST_NOTIFIER_WEBHOOK_ALLOW), and who may subscribe webhooks."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from est_notifier.deliveries import handlers as deliveries
from est_notifier.settings import NotifierSettings
from est_notifier.subscriptions import handlers
from est_notifier.subscriptions.domain import WEBHOOK_URL_MAX, caller_for
from est_notifier.subscriptions.egress import AllowList, address_refusal, literal_address
from est_shared.natsserver import NatsServer
from est_shared.org import Person, hash_token
from pydantic import ValidationError

from tests.notifier.support import (
    Org,
    Running,
    make_org,
    notifier_db,
    notifier_settings,
    picture_event,
    picture_subject,
    publish,
    receiver,
    running_notifier,
    store_subscription,
)
from tests.support import eventually

PUBLIC = "93.184.215.14"  # a public internet address; no test connects to it

INTERNAL = {
    "loopback": "http://127.0.0.1/hook",
    "localhost": "http://localhost/hook",
    "localhost with the root's dot": "http://localhost./hook",
    "a subdomain of localhost": "http://hooks.localhost/hook",
    "short form 127.1": "http://127.1/hook",
    "hexadecimal": "http://0x7f000001/hook",
    "one decimal number": "http://2130706433/hook",
    "octal": "http://0177.0.0.1/hook",
    "zero-padded": "http://127.000.000.001/hook",
    "IPv6 loopback": "http://[::1]/hook",
    "IPv4-mapped IPv6": "http://[::ffff:127.0.0.1]/hook",
    "IPv4-compatible IPv6": "http://[::127.0.0.1]/hook",
    "NAT64": "http://[64:ff9b::7f00:1]/hook",
    "6to4": "http://[2002:7f00:1::]/hook",
    "unspecified": "http://0.0.0.0/hook",
    "zero": "http://0/hook",
    "the machine's own host name": f"http://{socket.gethostname()}/hook",
    "cloud metadata": "http://169.254.169.254/latest/meta-data/",
    "cloud metadata over IPv6": "http://[fd00:ec2::254]/latest/meta-data/",
    "Azure wire server": "http://168.63.129.16/machine",
    "RFC 1918 10/8": "http://10.0.0.1/hook",
    "RFC 1918 172.16/12": "http://172.16.5.4/hook",
    "RFC 1918 192.168/16": "http://192.168.1.1/hook",
    "shared 100.64/10": "http://100.64.0.1/hook",
    "IPv6 unique local": "http://[fd12:3456::1]/hook",
    "link-local": "http://169.254.10.10/hook",
    "IPv6 link-local": "http://[fe80::1]/hook",
    "multicast": "http://224.0.0.1/hook",
    "documentation range": "http://192.0.2.10/hook",
    "the intake's port": "http://127.0.0.1:8000/v1/reports",
    "the aggregator's port": "http://127.0.0.1:8001/v1/areas/araby/alerts",
    "the web gateway's port": "http://127.0.0.1:8080/api/intake/v1/me",
    "the NATS monitor": "http://127.0.0.1:8222/varz",
}
MALFORMED = {
    "user and password (sent as Basic auth)": "http://user:pw@example.org/hook",
    "user only": "http://user@example.org/hook",
    "user-info in front of loopback": "http://example.org@127.0.0.1/hook",
    "CR/LF": "http://example.org/hook\r\nX-Injected: 1",
    "NUL": "http://example.org/hook\x00",
    "a space": "http://example.org/ho ok",
    "a tab": "http://example.org/\thook",
    "a backslash": "http://example.org\\@127.0.0.1/hook",
    "a zero-width space": "http://example.org/\u200bhook",
    "percent-encoded host": "http://%31%32%37.0.0.1/hook",
    "IPv6 zone id": "http://[fe80::1%25eth0]/hook",
    "ftp": "ftp://example.org/hook",
    "file": "file:///etc/passwd",
    "gopher": "gopher://127.0.0.1:6379/_INFO",
    "javascript": "javascript:alert(1)",
    "no host": "https:///hook",
    "port out of range": "http://example.org:70000/hook",
    "longer than 590 characters": "https://example.org/" + "a" * 571,
}


def _body(org: Org, url: str) -> dict[str, Any]:
    return {"name": "Driftcentral", "scope": {"municipality_id": org.m, "area_ids": [org.a1]},
            "events": ["picture.published"], "channel": {"type": "webhook", "url": url, "secret": "s3cret"}}


@pytest.fixture(scope="module")
def module_org() -> Org:
    return make_org()


@pytest_asyncio.fixture(scope="module")
async def default_policy(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory,
                         module_org: Org) -> AsyncIterator[Running]:
    """One notifier with the default egress policy (no allow list) for the module's refusals."""
    settings = notifier_settings(nats_server.url, tmp_path_factory.mktemp("policy"), module_org, webhook_allow="")
    async with running_notifier(settings, module_org) as n:
        yield n


async def _refused(n: Running, org: Org, url: str) -> dict[str, Any]:
    """Subscribe a webhook to ``url``: a 422 problem, whose body is returned."""
    r = await n.http.post("/v1/subscriptions", json=_body(org, url), headers=org.auth("owner"))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    return r.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("url", list(INTERNAL.values()), ids=list(INTERNAL))
async def test_a_webhook_to_an_internal_address_is_refused_at_subscription(
        default_policy: Running, module_org: Org, url: str) -> None:
    problem = await _refused(default_policy, module_org, url)
    assert [e["field"] for e in problem["errors"]] == ["channel.url"]
    assert "The webhook target is refused" in problem["detail"] and "Webhookens mål nekas" in problem["detail"]


@pytest.mark.parametrize("url", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_a_webhook_url_of_a_refused_form_is_refused_at_subscription(
        default_policy: Running, module_org: Org, url: str) -> None:
    problem = await _refused(default_policy, module_org, url)
    assert any(e["field"].endswith("url") for e in problem["errors"]), problem
    assert "pw" not in str(problem) and "X-Injected" not in str(problem)  # the URL is not echoed


async def test_the_private_range_message_says_it_points_into_the_internal_network(
        default_policy: Running, module_org: Org) -> None:
    detail = (await _refused(default_policy, module_org, "https://10.1.2.3/est"))["detail"]
    assert "adressen pekar in i det interna nätet" in detail and "points into the internal network" in detail
    assert "EST_NOTIFIER_WEBHOOK_ALLOW" in detail  # where an operator may allow it
    metrics = (await default_policy.http.get("/metrics")).text
    assert 'est_notifier_webhook_targets_refused_total{reason="private",stage="subscribe"}' in metrics


async def test_a_public_target_is_accepted_and_an_internal_one_refused_on_patch(
        default_policy: Running, module_org: Org) -> None:
    n, auth = default_policy, module_org.auth("owner")
    for url in (f"https://{PUBLIC}/est", "https://[2606:4700::1111]/est"):
        r = await n.http.post("/v1/subscriptions", json=_body(module_org, url), headers=auth)
        assert r.status_code == 201, r.text
    sub_id = r.json()["id"]
    r = await n.http.patch(f"/v1/subscriptions/{sub_id}", json={"channel": {"type": "webhook",
                                                                            "url": "http://127.1:8000/"}},
                           headers=auth)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "channel.url", r.text
    r = await n.http.get(f"/v1/subscriptions/{sub_id}", headers=auth)
    assert r.json()["channel"]["url"] == "https://[2606:4700::1111]/est"


# --- at sending ---------------------------------------------------------------------------------------


class Names:
    """A resolver of our own: the answers a DNS server would give, changeable during a test."""

    def __init__(self, **answers: list[str]) -> None:
        self.answers = {name.replace("_", "."): list(a) for name, a in answers.items()}
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers[host]


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


async def _ledger_row(n: Running, sub_id: str, status: str) -> dict[str, Any] | None:
    rows = await n.ledger("admin", subscription_id=sub_id)
    return rows[0] if rows and rows[0]["status"] == status else None


async def _subscription(n: Running, sub_id: str) -> dict[str, Any]:
    r = await n.http.get(f"/v1/subscriptions/{sub_id}", headers=n.org.auth("admin"))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _assert_refused_not_probed(row: dict[str, Any], reason_text: str) -> None:
    """The ledger says refused and why, and nothing that tells whether something listens there."""
    assert row["attempts"] == 1 and row["last_status_code"] is None
    (attempt,) = row["attempt_log"]
    assert attempt["status"] == "refused" and attempt["response_code"] is None
    assert attempt["error"].startswith("refused: ") and reason_text in attempt["error"]
    for probe in ("Connect", "connection", "timeout", "HTTP "):
        assert probe not in attempt["error"]


@pytest.mark.parametrize("at_sending", [["127.0.0.1"], [PUBLIC, "127.0.0.1"]], ids=["loopback", "one of two"])
async def test_a_name_that_resolves_to_loopback_at_sending_is_refused_and_nothing_reaches_it(
        nats_url: str, tmp_path: Path, org: Org, at_sending: list[str]) -> None:
    names = Names(hooks_rebind_example=[PUBLIC])
    settings = notifier_settings(nats_url, tmp_path, org, webhook_allow="")
    async with receiver() as rx, running_notifier(settings, org, resolver=names) as n:
        url = f"http://hooks.rebind.example:{_port(rx.url)}/hook"
        sub = await n.subscribe(channel={"type": "webhook", "url": url, "secret": "k"})  # public at subscription
        names.answers["hooks.rebind.example"] = at_sending  # DNS rebinding
        await publish(nats_url, picture_subject(org), picture_event(org))
        row = await eventually(lambda: _ledger_row(n, sub["id"], "refused"))
        _assert_refused_not_probed(row, "loopback")
        assert rx.requests == []
        assert names.asked.count("hooks.rebind.example") == 2  # checked at subscription and again at sending
        paused = await _subscription(n, sub["id"])
        assert paused["status"] == "paused" and "refused" in paused["paused_reason"]
        metrics = (await n.http.get("/metrics")).text
        assert 'est_notifier_webhook_targets_refused_total{reason="loopback",stage="send"} 1.0' in metrics
        assert 'est_notifier_deliveries_total{channel="webhook",outcome="refused"} 1.0' in metrics
        # paused: the next picture makes no delivery; resuming checks the target again
        await publish(nats_url, picture_subject(org), picture_event(org, version=2))
        await asyncio.sleep(0.5)
        assert len(await n.ledger("admin", subscription_id=sub["id"])) == 1
        r = await n.http.patch(f"/v1/subscriptions/{sub['id']}", json={"paused": False}, headers=org.auth("owner"))
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "channel.url", r.text
        assert rx.requests == []


async def test_a_subscription_made_before_the_rules_is_refused_at_sending(nats_url: str, tmp_path: Path,
                                                                          org: Org) -> None:
    """A webhook to the notifier's own port, stored before targets were checked (or declared in an
    organisation file applied before), is refused when sending: the ledger does not become a port scanner."""
    settings = notifier_settings(nats_url, tmp_path, org, webhook_allow="")
    async with running_notifier(settings, org) as n:
        state = n.app.state.notifier
        owner = next(p for p in org.snapshot.people if p.startswith("owner"))
        sub_id = await store_subscription(state["sessions"], state["tables"], owner_id=owner, municipality_id=org.m,
                                          area_ids=[org.a1], channel={"type": "webhook", "secret": "k",
                                                                      "url": f"{n.base}/v1/subscriptions"})
        await publish(nats_url, picture_subject(org), picture_event(org))
        row = await eventually(lambda: _ledger_row(n, sub_id, "refused"))
        _assert_refused_not_probed(row, "loopback")
        assert (await _subscription(n, sub_id))["status"] == "paused"


@pytest.mark.parametrize("spoil", [lambda u: u.replace("http://", "http://user:pw@"),
                                   lambda u: u + "\r\nX-Injected: 1"], ids=["user-info", "CR/LF"])
async def test_a_stored_url_of_a_refused_form_is_refused_at_sending_not_retried(
        nats_url: str, tmp_path: Path, org: Org, spoil: Any) -> None:
    """Basic auth from user-info never leaves, and a URL with CR/LF is not retried forever."""
    async with receiver() as rx, running_notifier(notifier_settings(nats_url, tmp_path, org), org) as n:
        state = n.app.state.notifier
        owner = next(p for p in org.snapshot.people if p.startswith("owner"))
        url = spoil(rx.url)
        sub_id = await store_subscription(state["sessions"], state["tables"], owner_id=owner, municipality_id=org.m,
                                          area_ids=[org.a1], channel={"type": "webhook", "url": url, "secret": "k"})
        await publish(nats_url, picture_subject(org), picture_event(org))
        row = await eventually(lambda: _ledger_row(n, sub_id, "refused"))
        _assert_refused_not_probed(row, "form")
        assert rx.requests == []


async def test_an_allowed_host_name_is_reached_at_the_checked_address_with_its_own_host_header(
        nats_url: str, tmp_path: Path, org: Org) -> None:
    names = Names(hooks_partner_example=["127.0.0.1"])
    settings = notifier_settings(nats_url, tmp_path, org, webhook_allow="hooks.partner.example")
    async with receiver() as rx, running_notifier(settings, org, resolver=names) as n:
        host = f"hooks.partner.example:{_port(rx.url)}"
        sub = await n.subscribe(channel={"type": "webhook", "url": f"http://{host}/hook", "secret": "k"})
        await publish(nats_url, picture_subject(org), picture_event(org))
        await eventually(lambda: _ledger_row(n, sub["id"], "delivered"))
        (headers, _body_bytes), = rx.requests
        assert headers["host"] == host  # connected to 127.0.0.1, the name kept for Host (and TLS)
        # the name is allowed, not what it resolves to: another name for the same address is refused
        r = await n.http.post("/v1/subscriptions", json=_body(org, rx.url.replace("127.0.0.1", "localhost")),
                              headers=org.auth("owner"))
        assert r.status_code == 422, r.text


async def test_a_redirect_to_loopback_is_not_followed(nats_url: str, tmp_path: Path, org: Org) -> None:
    names = Names(hooks_partner_example=["127.0.0.1"])
    settings = notifier_settings(nats_url, tmp_path, org, webhook_allow="hooks.partner.example,127.0.0.1/32")
    async with receiver() as inner, receiver([302], headers={"Location": inner.url}) as outer, \
            running_notifier(settings, org, resolver=names) as n:
        url = f"http://hooks.partner.example:{_port(outer.url)}/hook"
        sub = await n.subscribe(channel={"type": "webhook", "url": url, "secret": "k"})
        await publish(nats_url, picture_subject(org), picture_event(org))
        row = await eventually(lambda: _ledger_row(n, sub["id"], "failed"))
        assert [(a["status"], a["response_code"]) for a in row["attempt_log"]] == [("failed", 302)]
        await asyncio.sleep(0.3)
        assert len(outer.requests) == 1 and inner.requests == []


async def test_an_allowed_range_admits_only_its_own_addresses(nats_url: str, tmp_path: Path, org: Org) -> None:
    settings = notifier_settings(nats_url, tmp_path, org, webhook_allow="10.20.0.0/16")
    async with receiver() as rx, running_notifier(settings, org) as n:
        auth = org.auth("owner")
        assert (await n.http.post("/v1/subscriptions", json=_body(org, "http://10.20.3.4:9000/est"),
                                  headers=auth)).status_code == 201
        for url in ("http://10.21.0.1/est", rx.url):
            r = await n.http.post("/v1/subscriptions", json=_body(org, url), headers=auth)
            assert r.status_code == 422, (url, r.text)
    settings = notifier_settings(nats_url, tmp_path / "allowed", org, webhook_allow="127.0.0.1/32")
    async with receiver() as rx, running_notifier(settings, org) as n:
        sub = await n.subscribe(channel={"type": "webhook", "url": rx.url, "secret": "k"})
        await publish(nats_url, picture_subject(org), picture_event(org))
        await eventually(lambda: _ledger_row(n, sub["id"], "delivered"))
        assert len(rx.requests) == 1


def test_an_allow_list_entry_that_is_neither_range_nor_name_stops_the_start() -> None:
    for bad in ("10.0.0.0/33", "127.0.0.1/8/8", "hooks example", "http://hooks.example"):
        with pytest.raises(ValidationError, match="EST_NOTIFIER_WEBHOOK_ALLOW"):
            NotifierSettings(webhook_allow=bad)
    allow = NotifierSettings(webhook_allow=" 127.0.0.1 , ::1, 10.20.0.0/16, Hooks.Example. ").webhook_allow_list
    assert [str(n) for n in allow.networks] == ["127.0.0.1/32", "::1/128", "10.20.0.0/16"]
    assert allow.hosts == frozenset({"hooks.example"})


def test_every_spelling_of_an_address_is_judged_by_the_address_it_reaches() -> None:
    for host in ("127.1", "0x7f000001", "2130706433", "0177.0.0.1", "127.000.000.001", "[::ffff:127.0.0.1]"):
        addr = literal_address(host)
        assert addr is not None and address_refusal(addr, AllowList()) == "loopback", host
    assert literal_address("abc.de") is None  # a name made of hex letters stays a name
    allow = AllowList.parse("127.0.0.1/32")
    assert address_refusal(literal_address("[::ffff:127.0.0.1]"), allow) is None  # type: ignore[arg-type]
    assert address_refusal(literal_address("[64:ff9b::a00:1]"), allow) == "private"  # type: ignore[arg-type]
    assert address_refusal(literal_address(PUBLIC), AllowList()) is None  # type: ignore[arg-type]


# --- who may subscribe webhooks ---------------------------------------------------------------------------

ROLES = ["reporter", "key_function", "police", "social_services", "beredningsgrupp", "styrgrupp", "admin"]
WEBHOOK_ROLES = {"key_function", "police", "social_services", "admin"}


def _with_roles(org: Org) -> Iterator[tuple[str, Person]]:
    for role in ROLES:
        token = f"tok-{role}-{org.m}"
        org.tokens[role] = token
        yield role, Person(id=f"{role}-{org.m}", name=role.title(), actor="kommun", roles=[role],  # type: ignore[list-item]
                           areas=[org.a1], municipalities=[org.m], token_sha256=hash_token(token))


@pytest.mark.parametrize("role", ROLES)
async def test_only_key_functions_police_social_services_and_admins_subscribe_webhooks(
        nats_url: str, tmp_path: Path, org: Org, role: str) -> None:
    people = dict(_with_roles(org))
    org.snapshot = org.snapshot.model_copy(update={"people": {**org.snapshot.people,
                                                              **{p.id: p for p in people.values()}}})
    async with receiver() as rx, running_notifier(notifier_settings(nats_url, tmp_path, org), org) as n:
        auth = org.auth(role)
        r = await n.http.post("/v1/subscriptions", json=_body(org, rx.url), headers=auth)
        mail = {**_body(org, rx.url), "channel": {"type": "email", "to": "lagesbild@example.org"}}
        by_mail = await n.http.post("/v1/subscriptions", json=mail, headers=auth)
        assert by_mail.status_code == 201, by_mail.text
        switched = await n.http.patch(f"/v1/subscriptions/{by_mail.json()['id']}", headers=auth,
                                      json={"channel": {"type": "webhook", "url": rx.url, "secret": "k"}})
        if role in WEBHOOK_ROLES:
            assert r.status_code == 201, r.text
            assert switched.status_code == 200, switched.text
        else:
            assert r.status_code == 403 and "med e-post" in r.json()["detail"], r.text
            assert switched.status_code == 403, switched.text


async def test_a_declared_webhook_of_a_reporter_is_skipped_and_a_stored_one_ends_visibly(
        nats_url: str, tmp_path: Path, org: Org) -> None:
    reporter = next(p for p in org.snapshot.people if p.startswith("other"))
    owner = next(p for p in org.snapshot.people if p.startswith("owner"))
    declared = [{"id": "reporter-hook", "owner": reporter, "name": "Rapportörens webhook",
                 "scope": {"municipality_id": org.m, "area_ids": [org.a2]}, "events": ["picture.published"],
                 "channel": {"type": "webhook", "url": "https://example.org/hook", "secret": "k"}},
                {"id": "internal-hook", "owner": owner, "name": "Intern webhook",
                 "scope": {"municipality_id": org.m, "area_ids": [org.a1]}, "events": ["picture.published"],
                 "channel": {"type": "webhook", "url": "http://10.0.0.7/hook", "secret": "k"}}]
    async with running_notifier(notifier_settings(nats_url, tmp_path, org), org) as n:
        state = n.app.state.notifier
        stored = await store_subscription(state["sessions"], state["tables"], owner_id=reporter,
                                          municipality_id=org.m, area_ids=[org.a2],
                                          channel={"type": "webhook", "url": "https://example.org/old", "secret": "k"})
        await n.app.state.runtime.apply_org(org.snapshot.model_copy(update={"version": 2, "subscriptions": declared}))

        async def ended() -> dict[str, Any] | None:
            sub = await _subscription(n, stored)
            return sub if sub["status"] == "ended" else None

        sub = await eventually(ended)
        assert sub["ended_reason"].startswith("subscription ended: owner may not use webhooks")
        for key in ("reporter-hook", "internal-hook"):
            r = await n.http.get(f"/v1/subscriptions/{handlers.declared_id(key)}", headers=org.auth("admin"))
            assert r.status_code == 404, r.text
        metrics = (await n.http.get("/metrics")).text
        assert 'est_notifier_declared_subscriptions_invalid_total{reason="webhook_role"} 1.0' in metrics
        assert 'est_notifier_declared_subscriptions_invalid_total{reason="webhook_target"} 1.0' in metrics
        assert 'est_notifier_subscriptions_ended_total{reason="webhook_role_lost"} 1.0' in metrics


@pytest.mark.postgres
async def test_the_longest_webhook_url_allowed_is_stored_and_delivered_on_postgresql(postgres_url: str) -> None:
    """The URL bound fits the delivery ledger's target column: no 5xx from PostgreSQL at the bound."""
    org = make_org()
    engine, sessions, tables = await notifier_db(postgres_url)
    try:
        url = f"https://{PUBLIC}/" + "a" * (WEBHOOK_URL_MAX - len(f"https://{PUBLIC}/"))
        assert len(url) == WEBHOOK_URL_MAX
        owner = next(p for p in org.snapshot.people.values() if "key_function" in p.roles)
        caller = caller_for(org.snapshot, owner.id)
        assert caller is not None
        sub = await handlers.create_subscription(
            sessions=sessions, tables=tables, caller=caller, snapshot=org.snapshot, spec={
                "name": "lång", "scope": {"municipality_id": org.m, "area_ids": [org.a1]},
                "events": ["picture.published"], "channel": {"type": "webhook", "url": url, "secret": "s"},
                "digest": "immediate", "language": "sv"})
        assert await deliveries.fan_out(picture_event(org), sessions=sessions, tables=tables, consumer="c",
                                        sender="a@b.se", snapshot=org.snapshot) == ["webhook"]
        assert sub["channel"]["url"] == url
    finally:
        await engine.dispose()
