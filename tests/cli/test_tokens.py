"""``est token``: an admin issues a person's token from the command line (printed once), lists and revokes it."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from est_shared.natsserver import NatsServer

from tests.cli.support import est, start_intake
from tests.support import e2e_org


def test_est_token_issues_lists_and_revokes_a_persons_token(tmp_path: Path, fresh_nats: NatsServer) -> None:
    intake, _ = start_intake(tmp_path, fresh_nats.url, e2e_org())
    env = {"EST_INTAKE_PORT": str(intake.port), "EST_TOKEN": "t-admin"}  # as est up runs it, the token as org apply
    try:
        last_day = (date.today() + timedelta(days=10)).isoformat()
        out = est("token", "issue", "anna", "--name", "rapportappen", "--expires", last_day, cwd=tmp_path, env=env)
        assert out.returncode == 0, out.stderr
        token = out.stdout.strip()
        assert "\n" not in token and len(token) >= 40  # the token alone on standard output
        assert "shown only now" in out.stderr and token not in out.stderr
        me = httpx.get(f"{intake.url}/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["id"] == "anna"

        listed = est("token", "list", "anna", cwd=tmp_path, env=env)
        assert listed.returncode == 0 and "rapportappen" in listed.stdout and token not in listed.stdout
        token_id = listed.stdout.split()[0]
        ends = datetime.combine(date.today() + timedelta(days=11), time(0), ZoneInfo("Europe/Stockholm"))
        assert token_id.startswith("tok-") and f"expires {ends.isoformat()}" in listed.stdout  # through the last day

        refused = est("token", "issue", "anna", "--name", "x", cwd=tmp_path, env={**env, "EST_TOKEN": "t-lena"})
        assert refused.returncode == 1 and "403" in refused.stderr
        bad = est("token", "issue", "anna", "--name", "x", "--expires", "2030-01-01T10:00", cwd=tmp_path, env=env)
        assert bad.returncode == 2 and "timezone" in bad.stderr

        out = est("token", "revoke", "anna", token_id, cwd=tmp_path, env=env)
        assert out.returncode == 0, out.stderr
        assert f"revoked {token_id}" in out.stdout
        assert httpx.get(f"{intake.url}/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        again = est("token", "revoke", "anna", token_id, cwd=tmp_path, env=env)
        assert again.returncode == 1 and "404" in again.stderr
    finally:
        intake.stop()
