"""``est org apply``: a running intake's organisation changed from the command line, idempotently."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import yaml
from est_cli.procs import free_port
from est_shared.natsserver import NatsServer

from tests.cli.support import est, start_intake
from tests.intake.org_support import org_events
from tests.support import e2e_org


def test_org_apply_changes_a_running_system_and_is_idempotent(tmp_path: Path, fresh_nats: NatsServer) -> None:
    org = e2e_org()
    intake, _ = start_intake(tmp_path, fresh_nats.url, org)
    try:
        assert httpx.get(f"{intake.url}/v1/me", headers={"Authorization": "Bearer t-anna"}).status_code == 200
        org["people"] = [p for p in org["people"] if p["id"] != "anna"]
        second = tmp_path / "org2.yaml"
        second.write_text(yaml.safe_dump(org, allow_unicode=True))
        out = est("org", "apply", str(second), "--url", intake.url, "--token", "t-admin")
        assert out.returncode == 0, out.stderr
        assert "person anna removed" in out.stdout
        # the removed person's token stops working at once
        assert httpx.get(f"{intake.url}/v1/me", headers={"Authorization": "Bearer t-anna"}).status_code == 401
        again = est("org", "apply", str(second), "--url", intake.url, "--token", "t-admin")
        assert again.returncode == 0
        assert "removed" not in again.stdout
        refused = est("org", "apply", str(second), "--url", intake.url, "--token", "t-lena")
        assert refused.returncode == 1
        assert "403" in refused.stderr
    finally:
        intake.stop()


def test_org_apply_finds_the_intake_as_est_up_runs_it_and_a_dry_run_changes_nothing(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    """No --url: the intake's port comes from EST_INTAKE_PORT (the environment, else .env), as ``est up`` and
    the intake read it; the command says where it sent the file."""
    org = e2e_org()
    intake, first = start_intake(tmp_path, fresh_nats.url, org)
    try:
        org["people"] = [p for p in org["people"] if p["id"] != "anna"]
        second = tmp_path / "org2.yaml"
        second.write_text(yaml.safe_dump(org, allow_unicode=True))
        here = tmp_path / "elsewhere"
        here.mkdir()
        dry = est("org", "apply", "--dry-run", str(second), "--token", "t-admin",
                  cwd=here, env={"EST_INTAKE_PORT": str(intake.port)})
        assert dry.returncode == 0, dry.stderr
        assert f"Dry run against {intake.url}: nothing was stored" in dry.stdout
        assert "would become organisation version 2" in dry.stdout and "  person anna removed" in dry.stdout
        # nothing stored, nothing announced: Anna still gets in, the organisation is at version 1
        assert httpx.get(f"{intake.url}/v1/me", headers={"Authorization": "Bearer t-anna"}).status_code == 200
        admin = {"Authorization": "Bearer t-admin"}
        assert httpx.get(f"{intake.url}/v1/admin/org", headers=admin).json()["version"] == 1
        assert len(httpx.get(f"{intake.url}/v1/admin/org/history", headers=admin).json()["versions"]) == 1
        assert [i for i, _, _ in asyncio.run(org_events(fresh_nats.url))] == ["org:v1"]
        same = est("org", "apply", "--dry-run", str(first), "--token", "t-admin",
                   cwd=here, env={"EST_INTAKE_PORT": str(intake.port)})
        assert "no changes, version 1 stays" in same.stdout, same.stderr

        (here / ".env").write_text(f"EST_INTAKE_PORT={intake.port}\n")  # as the services would read it
        out = est("org", "apply", str(second), "--token", "t-admin", cwd=here, env={})
        assert out.returncode == 0, out.stderr
        assert f"Skickade organisationsfilen till {intake.url} / Sent the organisation file to {intake.url}" \
            in out.stdout
        assert "organisation version 2" in out.stdout and "person anna removed" in out.stdout
        assert httpx.get(f"{intake.url}/v1/me", headers={"Authorization": "Bearer t-anna"}).status_code == 401

        refused = est("org", "apply", "--dry-run", str(second), "--token", "t-lena", cwd=here, env={})
        assert refused.returncode == 1 and "403" in refused.stderr
        nowhere = est("org", "apply", str(second), "--token", "t-admin",
                      cwd=here, env={"EST_INTAKE_PORT": str(free_port())})
        assert nowhere.returncode == 1 and "could not reach http://127.0.0.1:" in nowhere.stderr
    finally:
        intake.stop()
