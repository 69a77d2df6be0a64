"""The NATS users of deploy/nats/auth.conf over TLS: each service may do exactly its own work.

One real nats-server (the wheel) runs with JetStream, the deploy users/permissions file and a TLS
block using throwaway certificates; clients trust the test CA the way the image entrypoint makes
them (SSL_CERT_FILE = system CAs + the NATS CA) and put user and password in the URL.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from est_shared.bus import ensure_streams
from est_shared.testing import serve
from nats.js.api import ConsumerConfig

from tests.deploy.support import DEPLOY, SERVICES, nats_env, nats_server_bin, password


class AuthNats:
    """A single JetStream node with the deploy users and TLS on loopback ports."""

    def __init__(self, base: Path, certs: Path) -> None:
        self.base, self.certs = base, certs
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = self.monitor = 0

    def start(self) -> AuthNats:
        shutil.copy(DEPLOY / "nats" / "auth.conf", self.base / "auth.conf")
        (self.base / "ports").mkdir(exist_ok=True)
        (self.base / "nats.conf").write_text(f"""
server_name: test1
host: 127.0.0.1
port: -1
http_port: -1
ports_file_dir: "{self.base / 'ports'}"
tls {{
  cert_file: "{self.certs / 'server.pem'}"
  key_file: "{self.certs / 'server-key.pem'}"
  ca_file: "{self.certs / 'ca.pem'}"
  verify: false
}}
jetstream {{ store_dir: "{self.base / 'js'}", sync_interval: always }}
include ./auth.conf
""")
        self.proc = subprocess.Popen([nats_server_bin(), "--config", str(self.base / "nats.conf")],
                                     env=nats_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "nats-server exited"
            files = list((self.base / "ports").glob("*.ports"))
            if files:
                try:
                    ports = json.loads(files[0].read_text())
                    self.port = int(ports["nats"][0].rsplit(":", 1)[1])
                    self.monitor = int(ports["monitoring"][0].rsplit(":", 1)[1])
                    url = f"http://127.0.0.1:{self.monitor}/healthz?js-enabled-only=true"
                    with urllib.request.urlopen(url, timeout=1) as resp:
                        if resp.status == 200:
                            return self
                except (ValueError, KeyError, IndexError, OSError):
                    pass
            time.sleep(0.05)
        raise TimeoutError("nats-server with the deploy config did not start")

    def url(self, user: str, secret: str | None = None) -> str:
        """A URL as in EST_NATS_URL: tls://USER:PASSWORD@host:port ('localhost' is in the certificate)."""
        return f"tls://{user}:{secret or password(user)}@localhost:{self.port}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def auth_nats(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthNats]:
    server = AuthNats(tmp_path_factory.mktemp("authnats"), certs).start()
    yield server
    server.stop()


@pytest.fixture
def trust_ca(certs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Trust the test CA exactly as the container entrypoint does (restored after the test)."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    spec = importlib.util.spec_from_file_location("est_deploy_serve", DEPLOY / "serve.py")
    assert spec and spec.loader
    serve_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serve_module)
    bundle: str = serve_module.trust_nats_ca(str(certs / "ca.pem"), out_dir=str(tmp_path))
    return bundle


async def connect(url: str, errors: list[str] | None = None) -> Any:
    async def on_error(exc: Exception) -> None:
        if errors is not None:
            errors.append(str(exc))

    return await nats.connect(url, error_cb=on_error, max_reconnect_attempts=0, connect_timeout=3)


@pytest.fixture
async def streams(auth_nats: AuthNats, trust_ca: str) -> AsyncIterator[None]:
    nc = await connect(auth_nats.url("intake"))
    await ensure_streams(nc.jetstream(), replicas=1)
    yield
    await nc.close()


async def denied(nc: Any, errors: list[str], subject: str) -> bool:
    """True when a JetStream publish as this user gets no ack and the server reports a violation."""
    try:
        await nc.jetstream().publish(subject, b"{}", timeout=1.0)
    except Exception:
        await asyncio.sleep(0.1)
        return any("permissions violation" in e.lower() and subject in e for e in errors)
    return False


async def test_wrong_password_is_refused(auth_nats: AuthNats, trust_ca: str) -> None:
    with pytest.raises(Exception):  # noqa: B017 - nats-py raises its own authorization error
        await asyncio.wait_for(nats.connect(auth_nats.url("intake", "wrong"), allow_reconnect=False,
                                            max_reconnect_attempts=0, connect_timeout=2), 10)


async def test_intake_publishes_reports_but_not_pictures(auth_nats: AuthNats, streams: None) -> None:
    errors: list[str] = []
    nc = await connect(auth_nats.url("intake"), errors)
    js = nc.jetstream()
    ack = await js.publish("est.report.submitted.dep-m1.a1", b"{}", timeout=5, headers={"Nats-Msg-Id": "dep-1"})
    assert ack.stream == "EST_REPORTS"
    await js.publish("est.forfeiture.recorded.dep-m1", b"{}", timeout=5)
    await js.publish("est.org.deploy-check", b"{}", timeout=5)  # est.org.changed must stay valid
    await js.publish("est.dlq.intake.x", b"{}", timeout=5)
    assert await denied(nc, errors, "est.picture.published.dep-m1.a1")
    assert await denied(nc, errors, "est.alert.raised.dep-m1.a1")
    await nc.close()


@pytest.mark.parametrize(("user", "allowed", "forbidden"), [
    ("aggregator", ["est.picture.published.dep-m2.a1", "est.alert.raised.dep-m2.a1"],
     ["est.report.submitted.dep-m2.a1", "est.analysis.published.dep-m2", "est.org.deploy-check"]),
    ("analysis", ["est.alert.raised.dep-m3.a1", "est.analysis.published.dep-m3"],
     ["est.picture.published.dep-m3.a1", "est.report.submitted.dep-m3.a1"]),
    ("notifier", ["est.dlq.notifier.est.picture.published.x.y"],
     ["est.picture.published.dep-m4.a1", "est.alert.raised.dep-m4.a1", "est.analysis.published.dep-m4",
      "est.report.submitted.dep-m4.a1"]),
])
async def test_each_service_publishes_only_its_own_subjects(auth_nats: AuthNats, streams: None, user: str,
                                                            allowed: list[str], forbidden: list[str]) -> None:
    errors: list[str] = []
    nc = await connect(auth_nats.url(user), errors)
    js = nc.jetstream()
    for subject in allowed:
        await js.publish(subject, b"{}", timeout=5)
    for subject in forbidden:
        assert await denied(nc, errors, subject), f"{user} could publish {subject}"
    await nc.close()


async def test_consumer_pulls_acks_and_nacks_with_its_own_user(auth_nats: AuthNats, streams: None) -> None:
    intake = await connect(auth_nats.url("intake"))
    for i in range(3):
        await intake.jetstream().publish(f"est.report.submitted.dep-m5.a{i}", b"{}", timeout=5)
    errors: list[str] = []
    agg = await connect(auth_nats.url("aggregator"), errors)
    js = agg.jetstream()
    sub = await js.pull_subscribe("est.report.submitted.dep-m5.>", durable="dep-aggregator",
                                  stream="EST_REPORTS", config=ConsumerConfig(ack_wait=30, max_deliver=5))
    msgs = await sub.fetch(3, timeout=5)
    assert len(msgs) == 3
    await msgs[0].ack_sync(timeout=5)          # $JS.ACK.> is allowed
    await msgs[1].ack()
    await msgs[2].nak(delay=0.2)
    again = await sub.fetch(1, timeout=5)
    assert again[0].metadata.num_delivered == 2
    await again[0].ack_sync(timeout=5)
    info = await js.consumer_info("EST_REPORTS", "dep-aggregator")
    assert info.num_ack_pending == 0 and info.num_pending == 0
    assert not [e for e in errors if "permissions violation" in e.lower()]
    await agg.close()
    await intake.close()


@pytest.mark.parametrize("service", SERVICES)
async def test_service_starts_and_is_ready_with_its_nats_user_over_tls(
        service: str, auth_nats: AuthNats, trust_ca: str, tmp_path: Path) -> None:
    """The real service: streams ensured, org loaded, consumers created, all with its own permissions."""
    module = importlib.import_module(f"est_{service}.app")
    settings = module.Settings(nats_url=auth_nats.url(service), data_dir=tmp_path)
    app = module.create_app(settings)
    async with serve(app) as base:
        # close the client before the server stops: an open keep-alive connection during shutdown
        # made the broker's drain wait 30 s (DrainTimeoutError) for the aggregator
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["nats"] is True


async def test_notifier_reads_an_ordered_consumer_for_its_live_stream(auth_nats: AuthNats, streams: None) -> None:
    agg = await connect(auth_nats.url("aggregator"))
    await agg.jetstream().publish("est.picture.published.dep-m6.a1", b'{"n": 1}', timeout=5)
    errors: list[str] = []
    notifier = await connect(auth_nats.url("notifier"), errors)
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_msg(msg: Any) -> None:
        await got.put(msg.data)

    sub = await notifier.jetstream().subscribe("est.picture.published.dep-m6.>", stream="EST_PICTURES",
                                               cb=on_msg, ordered_consumer=True)
    assert await asyncio.wait_for(got.get(), 5) == b'{"n": 1}'
    await sub.unsubscribe()
    assert not [e for e in errors if "permissions violation" in e.lower()]
    await notifier.close()
    await agg.close()


async def test_only_the_intake_writes_organisation_snapshots_and_every_service_reads_them(
        auth_nats: AuthNats, streams: None) -> None:
    """The organisation's snapshots (the EST_ORG_SNAPSHOTS object store) need the intake's publish right on
    $O.EST_ORG_SNAPSHOTS.>; the other services read them through the JetStream API and their inbox."""
    from est_shared.bus import ORG_SNAPSHOTS, BusUnavailable, get_object, put_object

    snapshot = b'{"version": 1}' + b" " * 300_000  # more than one chunk
    intake = await connect(auth_nats.url("intake"))
    await put_object(intake.jetstream(), ORG_SNAPSHOTS, "v1.deploy-check", snapshot)
    await intake.close()
    for user in ("aggregator", "notifier", "analysis"):
        errors: list[str] = []
        nc = await connect(auth_nats.url(user), errors)
        assert await get_object(nc.jetstream(), ORG_SNAPSHOTS, "v1.deploy-check") == snapshot
        assert not [e for e in errors if "permissions violation" in e.lower()], (user, errors)
        with pytest.raises(BusUnavailable):
            await put_object(nc.jetstream(), ORG_SNAPSHOTS, f"v2.{user}", b"{}")
        await asyncio.sleep(0.1)
        assert any("permissions violation" in e.lower() for e in errors), (user, errors)
        await nc.close()
