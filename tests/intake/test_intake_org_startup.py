"""The start-up organisation file never undoes changes made since it was last applied.

The rule (est_intake.domain): applied at start only when its content changed since a start-up file last took
effect, and then only if no version was made since by other means; a skipped file is said out loud (log,
est_intake_org_file_skipped, /readyz degraded) until it is applied on purpose (`est org apply FILE`)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from est_intake.org import db
from est_intake.org.handlers import StartupFile, apply_org, unchanged_startup_file
from est_shared.db import make_engine, session_factory, transaction
from est_shared.natsserver import NatsServer
from est_shared.org import OrgSnapshot, SnapshotBlob
from sqlalchemy import update

from tests.intake.support import auth, make_org, running, settings_for


class Org:
    """The intake's organisation tables on SQLite, with the apply use case and a fake snapshot store."""

    def __init__(self, tmp_path: Path) -> None:
        self.engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}")
        self.sessions = session_factory(self.engine)
        self.stored: list[int] = []

    async def __aenter__(self) -> Org:
        async with self.engine.begin() as conn:
            await conn.run_sync(db.metadata.create_all)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.engine.dispose()

    async def apply(self, doc: dict[str, Any], startup: StartupFile | None = None) -> Any:
        async def store(snapshot: OrgSnapshot) -> SnapshotBlob:
            self.stored.append(snapshot.version)
            return SnapshotBlob.of(snapshot)

        async def applied(_snapshot: OrgSnapshot) -> None:
            pass

        return await apply_org(doc, sessions=self.sessions, applied_by=f"file:{startup.name}" if startup else "admin",
                               on_applied=applied, wake=lambda: None, store=store, startup=startup)

    async def unchanged(self, startup: StartupFile) -> bool:
        return await unchanged_startup_file(startup, sessions=self.sessions)


def _file(doc: dict[str, Any]) -> StartupFile:
    return StartupFile.of(yaml.safe_dump(doc, allow_unicode=True).encode(), "org.yaml")


def _without(doc: dict[str, Any], person: str) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out["people"] = [p for p in out["people"] if p["id"] != person]
    return out


async def test_a_start_up_file_applies_once_and_never_over_changes_made_since(tmp_path: Path) -> None:
    async with Org(tmp_path) as org:
        doc = make_org()
        first = await org.apply(doc, _file(doc))
        assert first.outcome == "applied" and first.snapshot.version == 1
        assert await org.unchanged(_file(doc))  # the same content again is not even read

        await org.apply(_without(doc, "anna"))  # through the API: version 2
        edited = copy.deepcopy(doc)
        edited["people"][1]["name"] = "Bo Bergström"
        skipped = await org.apply(edited, _file(edited))
        assert skipped.outcome == "skipped" and skipped.snapshot.version == 2 and not skipped.changed
        assert "anna" not in skipped.snapshot.people and org.stored == [1, 2]
        assert not await org.unchanged(_file(edited))  # still waiting: skipped again at the next start
        async with org.sessions() as s:
            assert await db.org_version_number(s) == 2


async def test_a_start_up_file_that_describes_the_organisation_as_it_is_takes_effect_without_a_version(
        tmp_path: Path) -> None:
    """After `est org apply FILE` (or an API change that matches the file) the file is in effect: a later edit
    of it applies again."""
    async with Org(tmp_path) as org:
        doc = make_org()
        await org.apply(doc, _file(doc))
        current = _without(doc, "anna")
        await org.apply(current)  # version 2 through the API
        now = await org.apply(current, _file(current))
        assert now.outcome == "current" and now.snapshot.version == 2 and not now.changed
        assert await org.unchanged(_file(current))
        later = _without(current, "bo")
        applied = await org.apply(later, _file(later))
        assert applied.outcome == "applied" and applied.snapshot.version == 3


async def test_a_database_from_before_the_rule_counts_versions_made_by_a_file(tmp_path: Path) -> None:
    """Older intakes applied the file at every start (applied_by file:…) and recorded no digest."""
    async with Org(tmp_path) as org:
        doc = make_org()
        await org.apply(doc, _file(doc))
        async with transaction(org.sessions) as s:  # as an older intake left it
            await s.execute(db.org_startup_files.delete())
        edited = _without(doc, "bo")
        assert (await org.apply(edited, _file(edited))).outcome == "applied"  # the newest version was a file's
        async with transaction(org.sessions) as s:
            await s.execute(db.org_startup_files.delete())
            await s.execute(update(db.org_versions).where(db.org_versions.c.version == 2)
                            .values(applied_by="admin"))  # …but made through the API
        again = _without(edited, "lena")
        assert (await org.apply(again, _file(again))).outcome == "skipped"


async def test_a_skipped_start_up_file_leaves_readyz_degraded_until_applied_on_purpose(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    settings = settings_for(tmp_path, fresh_nats.url, make_org())
    assert settings.org_file is not None
    async with running(settings) as (client, _app):
        r = await client.put("/v1/admin/org", json=_without(make_org(), "anna"), headers=auth("admin"))
        assert r.json()["version"] == 2
    edited = make_org()
    edited["people"][1]["name"] = "Bo Bergström"
    text = yaml.safe_dump(edited, allow_unicode=True)
    settings.org_file.write_text(text, encoding="utf-8")
    async with running(settings) as (client, _app):
        assert (await client.get("/v1/me", headers=auth("anna"))).status_code == 401  # the API change stands
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert "est org apply org.yaml" in ready.json()["degraded"]["org_file"]
        assert "est_intake_org_file_skipped 1.0" in (await client.get("/metrics")).text
        # `est org apply org.yaml` sends the file's bytes: now it is in effect
        r = await client.put("/v1/admin/org", content=text, headers={**auth("admin"),
                                                                     "Content-Type": "application/yaml"})
        assert r.status_code == 200 and r.json()["version"] == 3
        assert (await client.get("/readyz")).json()["status"] == "ok"
        assert "est_intake_org_file_skipped 0.0" in (await client.get("/metrics")).text
    async with running(settings) as (client, _app):
        assert (await client.get("/readyz")).json()["status"] == "ok"
        h = (await client.get("/v1/admin/org/history", headers=auth("admin"))).json()["versions"]
        assert h[0]["version"] == 3


async def test_the_demo_organisation_is_not_applied_again_when_est_up_demo_restarts(tmp_path: Path) -> None:
    """`est up --demo` writes its organisation file at every start: the same bytes, so the restart leaves the
    organisation (and changes made to it through the API) as it is."""
    from est_cli.demo import write_demo_org

    path = write_demo_org(tmp_path / "demo-org.yaml")
    first = StartupFile.of(path.read_bytes(), path.name)
    async with Org(tmp_path) as org:
        demo = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert (await org.apply(demo, first)).outcome == "applied"
        await org.apply(_without(demo, "sara"))  # changed through the API
        path = write_demo_org(tmp_path / "demo-org.yaml")  # the next start
        assert await org.unchanged(StartupFile.of(path.read_bytes(), path.name))


@pytest.mark.postgres
async def test_intake_replicas_started_together_with_one_start_up_file_make_one_version(
        tmp_path: Path, fresh_nats: NatsServer, postgres_url: str) -> None:
    """Three replicas on one database, started at once with the same file: one applies it, the others find it
    in effect; a restart of all three changes nothing."""
    replicas = []
    for i in range(3):
        (tmp_path / str(i)).mkdir()
        replicas.append(settings_for(tmp_path / str(i), fresh_nats.url, make_org(), database_url=postgres_url))
    for _ in range(2):
        async with contextlib.AsyncExitStack() as stack:
            started = await asyncio.gather(*(stack.enter_async_context(running(s)) for s in replicas))
            for client, _app in started:
                assert (await client.get("/v1/me", headers=auth("anna"))).status_code == 200
                assert (await client.get("/readyz")).json()["status"] == "ok"
            client = started[0][0]
            h = (await client.get("/v1/admin/org/history", headers=auth("admin"))).json()["versions"]
            assert [v["version"] for v in h] == [1]
