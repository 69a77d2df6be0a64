"""The whole system as users run it (`est up`, every service a process of its own) with `EST_OIDC_ISSUER` and
`EST_OIDC_AUDIENCE` in the environment: each service and the web gateway take the provider's access tokens,
and a service refuses to start with an http:// issuer that is not on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from est_shared.periods import current_period

from tests.oidc.support import OidcProvider, oidc_provider
from tests.support import System, e2e_org, start_system, wait_for

__all__ = ["oidc_provider"]

pytestmark = pytest.mark.e2e


@pytest.fixture
def system(tmp_path: Path, oidc_provider: OidcProvider) -> Iterator[System]:
    org = tmp_path / "org.yaml"
    org.write_text(yaml.safe_dump(e2e_org(), allow_unicode=True), encoding="utf-8")
    s = start_system(tmp_path / "var", org, extra_env=oidc_provider.env())
    yield s
    s.stop()


def _reads(system: System) -> dict[str, str]:
    """One read per service that Lena (key function of Växjö) may make, and the gateway's."""
    week = current_period("weekly", datetime.now(UTC), "Europe/Stockholm").id
    return {"intake": f"{system.urls['intake']}/v1/me",
            "aggregator": f"{system.urls['aggregator']}/v1/municipalities/vaxjo/pictures/{week}",
            "notifier": f"{system.urls['notifier']}/v1/subscriptions",
            "analysis": f"{system.urls['analysis']}/v1/measures?area_id=araby",
            "web": f"{system.urls['web']}/api/intake/v1/me"}


def _statuses(reads: dict[str, str], token: str) -> dict[str, int]:
    return {name: httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code
            for name, url in reads.items()}


def test_every_service_process_takes_the_providers_tokens(system: System, oidc_provider: OidcProvider) -> None:
    reads = _reads(system)
    wait_for(lambda: set(_statuses(reads, "t-lena").values()) == {200}, timeout=60)  # the organisation is known
    lena = oidc_provider.user_token("lena")
    assert _statuses(reads, lena) == dict.fromkeys(reads, 200)
    me = httpx.get(reads["web"], headers={"Authorization": f"Bearer {lena}"}, timeout=10).json()
    assert (me["id"], me["roles"]) == ("lena", ["key_function"])
    assert _statuses(reads, oidc_provider.user_token("olof")) == dict.fromkeys(reads, 403)
    expired = oidc_provider.forge(email="lena@example.org", exp=int(time.time()) - 60)
    assert _statuses(reads, expired) == dict.fromkeys(reads, 401)


def test_a_service_refuses_to_start_with_an_issuer_off_loopback_over_http(tmp_path: Path) -> None:
    env = {**os.environ, "EST_OIDC_ISSUER": "http://idp.example.org", "EST_OIDC_AUDIENCE": "https://est/api",
           "EST_DATA_DIR": str(tmp_path), "EST_NATS_URL": "nats://127.0.0.1:1"}
    done = subprocess.run([sys.executable, "-m", "est_cli.main", "run", "aggregator"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "EST_OIDC_ISSUER must be an https:// URL" in done.stdout + done.stderr
