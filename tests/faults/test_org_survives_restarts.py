"""Organisation changes made through the API survive a crashed intake and a restarted `est up`: the start-up
organisation file (``--org``, the demo's) is not applied again over them (the start-up file rule)."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from est_cli.procs import ServiceProcess
from est_shared.natsserver import NatsServer
from est_shared.periods import current_period

from tests.support import System, e2e_org, service_pid, start_system, wait_for

pytestmark = pytest.mark.e2e

NILS = {"id": "nils", "name": "Nils Nyström", "actor": "kommunen", "email": "nils@example.org",
        "roles": ["key_function"], "areas": ["vaxjo"], "token": "t-nils"}


def _with_nils(org: dict[str, Any]) -> dict[str, Any]:
    return {**org, "people": [*org["people"], NILS]}


def _put(intake_url: str, doc: dict[str, Any], token: str = "t-admin") -> dict[str, Any]:
    r = httpx.put(f"{intake_url}/v1/admin/org", content=yaml.safe_dump(doc, allow_unicode=True), timeout=30,
                  headers={"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _me(url: str, token: str) -> int:
    return httpx.get(f"{url}/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code


def _history(intake_url: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{intake_url}/v1/admin/org/history", headers={"Authorization": "Bearer t-admin"}, timeout=10)
    return r.json()["versions"]  # type: ignore[no-any-return]


@pytest.mark.timeout(120)
def test_a_key_function_added_through_the_api_keeps_access_after_the_intake_is_killed(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    org_file = tmp_path / "org.yaml"
    org_file.write_text(yaml.safe_dump(e2e_org(), allow_unicode=True), encoding="utf-8")
    intake = ServiceProcess("intake", {"EST_NATS_URL": fresh_nats.url, "EST_DATA_DIR": str(tmp_path / "var"),
                                       "EST_INTAKE_ORG_FILE": str(org_file), "EST_LOG_LEVEL": "INFO"},
                            tmp_path / "intake.log").start()
    try:
        assert _put(intake.url, _with_nils(e2e_org()))["version"] == 2
        assert _me(intake.url, "t-nils") == 200
        for _ in range(2):  # SIGKILL, as a crash; the restart reads the same start-up file
            intake.kill()
            intake.start()
            assert _me(intake.url, "t-nils") == 200
            assert [v["version"] for v in _history(intake.url)] == [2, 1]
        assert "organisation file unchanged since it last took effect" in intake.log.read_text()
    except BaseException:
        print(intake.log.read_text()[-3000:])
        raise
    finally:
        intake.stop()


def _picture(aggregator_url: str, token: str) -> int:
    """The status of the municipality's picture for a caller (401: the aggregator does not know the token)."""
    week = current_period("weekly", datetime.now(UTC), "Europe/Stockholm").id
    return httpx.get(f"{aggregator_url}/v1/municipalities/vaxjo/pictures/{week}", timeout=10,
                     headers={"Authorization": f"Bearer {token}"}).status_code


@pytest.mark.timeout(300)
def test_est_up_keeps_api_changes_over_a_killed_intake_and_a_restart(tmp_path: Path) -> None:
    org_file = tmp_path / "org.yaml"
    org_file.write_text(yaml.safe_dump(e2e_org(), allow_unicode=True), encoding="utf-8")
    data = tmp_path / "var"
    system: System = start_system(data, org_file)
    ports = {name: int(url.rsplit(":", 1)[1]) for name, url in system.urls.items()}
    try:
        intake = system.urls["intake"]
        assert _put(intake, _with_nils(e2e_org()))["version"] == 2
        os.kill(service_pid(system.proc.pid, "intake"), signal.SIGKILL)
        wait_for(lambda: "intake exited" in system.output(), timeout=15)
        wait_for(lambda: _me(intake, "t-nils") == 200, timeout=60)  # restarted by `est up`, the change kept
        wait_for(lambda: _picture(system.urls["aggregator"], "t-nils") == 200, timeout=30)
    finally:
        assert system.stop() == 0
    again = start_system(data, org_file, ports=ports)
    try:
        assert _me(again.urls["intake"], "t-nils") == 200
        assert [v["version"] for v in _history(again.urls["intake"])] == [2, 1]
        wait_for(lambda: _picture(again.urls["aggregator"], "t-nils") == 200, timeout=30)
    finally:
        assert again.stop() == 0
