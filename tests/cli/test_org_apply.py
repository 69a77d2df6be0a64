"""``est org apply``: a running intake's organisation changed from the command line, idempotently."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import yaml
from est_cli.procs import ServiceProcess
from est_shared.natsserver import NatsServer

from tests.support import e2e_org


def _est(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "est_cli.main", *args], capture_output=True, text=True, timeout=60)


def test_org_apply_changes_a_running_system_and_is_idempotent(tmp_path: Path, fresh_nats: NatsServer) -> None:
    org = e2e_org()
    first = tmp_path / "org.yaml"
    first.write_text(yaml.safe_dump(org, allow_unicode=True))
    intake = ServiceProcess("intake", {"EST_NATS_URL": fresh_nats.url, "EST_DATA_DIR": str(tmp_path / "data"),
                                       "EST_INTAKE_ORG_FILE": str(first)}, tmp_path / "intake.log").start()
    try:
        assert httpx.get(f"{intake.url}/v1/me", headers={"Authorization": "Bearer t-anna"}).status_code == 200
        org["people"] = [p for p in org["people"] if p["id"] != "anna"]
        second = tmp_path / "org2.yaml"
        second.write_text(yaml.safe_dump(org, allow_unicode=True))
        out = _est("org", "apply", str(second), "--url", intake.url, "--token", "t-admin")
        assert out.returncode == 0, out.stderr
        assert "person anna removed" in out.stdout
        # the removed person's token stops working at once
        assert httpx.get(f"{intake.url}/v1/me", headers={"Authorization": "Bearer t-anna"}).status_code == 401
        again = _est("org", "apply", str(second), "--url", intake.url, "--token", "t-admin")
        assert again.returncode == 0
        assert "removed" not in again.stdout
        refused = _est("org", "apply", str(second), "--url", intake.url, "--token", "t-lena")
        assert refused.returncode == 1
        assert "403" in refused.stderr
    finally:
        intake.stop()
