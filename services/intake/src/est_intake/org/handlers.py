"""Organisation use cases: apply a document as a new version, the start-up file, the version's event."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from est_shared.db import add_to_outbox, transaction
from est_shared.events import MAX_ORG_CHANGES, CloudEvent, OrgChanged, new_event
from est_shared.org import OrgSnapshot, SnapshotBlob
from est_shared.subjects import ORG_CHANGED
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from est_intake.metrics import IntakeMetrics
from est_intake.org import db
from est_intake.org.domain import StartupOutcome, build_snapshot, startup_file_may_apply

log = logging.getLogger("est.intake")

SOURCE = "/est/intake"
ORG_CHANGED_TYPE = "se.est.org.changed"
RETRY_AFTER = "5"


@dataclass
class OrgApplied:
    """Result of applying an organisation document (``outcome`` for a start-up file, see domain)."""

    snapshot: OrgSnapshot
    changes: list[str]
    changed: bool
    outcome: StartupOutcome = "applied"


StoreSnapshot = Callable[[OrgSnapshot], Awaitable[SnapshotBlob]]
"""Writes a version's snapshot where ``est.org.changed`` points (the object store) and returns its stored form;
raises ``BusUnavailable`` when it cannot."""


@dataclass(frozen=True)
class StartupFile:
    """A start-up organisation file: its content's digest and its name (see the start-up file rule)."""

    sha256: str
    name: str

    @classmethod
    def of(cls, raw: bytes, name: str) -> StartupFile:
        return cls(sha256=hashlib.sha256(raw).hexdigest(), name=name)


def org_event(blob: SnapshotBlob, changes: list[str], at: datetime) -> CloudEvent[OrgChanged]:
    """The ``se.est.org.changed`` event of a version (id ``org:v{version}``): where its snapshot is, and the
    first ``MAX_ORG_CHANGES`` changes."""
    return new_event(type=ORG_CHANGED_TYPE, source=SOURCE, id=f"org:v{blob.version}", subject="org", time=at,
                     data=OrgChanged(version=blob.version, snapshot_object=blob.name, snapshot_sha256=blob.sha256,
                                     snapshot_bytes=len(blob.data), changes=changes[:MAX_ORG_CHANGES],
                                     changes_total=len(changes)))


Build = Callable[[OrgSnapshot | None, datetime], tuple[OrgSnapshot, list[str]]]
"""Makes the next organisation version from the latest one (or None) at a moment: the snapshot and its changes
(the latest itself, with no changes, when nothing changes)."""


class OrgChangedMeanwhile(Exception):
    """The organisation is no longer at the version the change was made on (``If-Match``): another
    administrator's change came first, and applying this one would silently undo it."""

    def __init__(self, current: int) -> None:
        super().__init__(f"the organisation is at version {current}")
        self.current = current


def _on_version(previous: OrgSnapshot | None, expected: int | None) -> None:
    current = previous.version if previous else 0
    if expected is not None and current != expected:
        raise OrgChangedMeanwhile(current)


async def apply_org(doc: dict[str, Any], *, sessions: async_sessionmaker[AsyncSession], applied_by: str,
                    on_applied: Callable[[OrgSnapshot], Awaitable[None]], wake: Callable[[], None],
                    store: StoreSnapshot, metrics: IntakeMetrics | None = None,
                    startup: StartupFile | None = None, expected_version: int | None = None) -> OrgApplied:
    """Validate and store a new organisation version with its event in the outbox (idempotent).

    The snapshot goes to ``store`` first, then the version and its event commit together: an event never
    names a snapshot that is not there. With ``startup``, the start-up file rule decides (``est_intake.org.domain``).
    With ``expected_version``, the document applies only on top of that version (else OrgChangedMeanwhile),
    checked on the version it is built on, so also when another replica stored a version meanwhile.
    Building runs in a thread: a large organisation takes seconds, which the loop spends serving.
    """
    def build(previous: OrgSnapshot | None, at: datetime) -> tuple[OrgSnapshot, list[str]]:
        _on_version(previous, expected_version)
        return build_snapshot(doc, previous, at)

    applied = await change_org(build, sessions=sessions, applied_by=applied_by, on_applied=on_applied, wake=wake,
                               store=store, startup=startup)
    if metrics:
        metrics.org_applies.labels("changed" if applied.changed else "unchanged").inc()
    return applied


async def preview_org(doc: dict[str, Any], *, sessions: async_sessionmaker[AsyncSession],
                      expected_version: int | None = None) -> OrgApplied:
    """What applying a document would do (the version it would make and its changes), storing and announcing
    nothing (``PUT /v1/admin/org?dry_run=true``); raises OrgInvalid and OrgChangedMeanwhile as ``apply_org`` does."""
    async with sessions() as s:
        previous = await db.latest_org(s)
    _on_version(previous, expected_version)
    snapshot, changes = await asyncio.to_thread(build_snapshot, doc, previous, datetime.now(UTC))
    return OrgApplied(snapshot=snapshot, changes=changes,
                      changed=previous is None or snapshot.version != previous.version)


async def change_org(build: Build, *, sessions: async_sessionmaker[AsyncSession], applied_by: str,
                     on_applied: Callable[[OrgSnapshot], Awaitable[None]], wake: Callable[[], None],
                     store: StoreSnapshot, startup: StartupFile | None = None) -> OrgApplied:
    """Make and store the next organisation version ``build`` describes, with its event in the outbox: the one
    way every organisation change (a file, an issued or revoked token) becomes a version the services learn.

    ``build`` runs in a thread on the latest stored version; when another replica stored the same version
    number first it runs again on top of that one.
    """
    for attempt in range(3):
        async with sessions() as s:
            previous = await db.latest_org(s)
            _, last_file_version = await db.last_startup_file(s) if startup else (None, 0)
        at = datetime.now(UTC)
        snapshot, changes = await asyncio.to_thread(build, previous, at)
        latest = previous.version if previous else 0
        changed = previous is None or snapshot.version != previous.version
        outcome: StartupOutcome = "applied"
        if startup is not None and not changed:
            outcome = "current"
            async with transaction(sessions) as s:
                await db.record_startup_file(s, sha256=startup.sha256, file_name=startup.name, version=latest,
                                             outcome=outcome)
        if startup is not None and changed and not startup_file_may_apply(
                latest_version=latest, last_file_version=last_file_version):
            log.warning("the start-up organisation file was not applied: the organisation was changed since a "
                        "start-up file last took effect; to apply it, run `est org apply FILE`",
                        extra={"file": startup.name, "org_version": latest, "file_version": last_file_version})
            return OrgApplied(snapshot=previous or snapshot, changes=[], changed=False, outcome="skipped")
        if not changed:
            break
        blob = await store(snapshot)
        try:
            async with transaction(sessions) as s:
                await db.add_org_version(s, snapshot, applied_by=applied_by, changes=changes, applied_at=at,
                                         snapshot_json=blob.data.decode())
                await add_to_outbox(s, db.outbox, ORG_CHANGED, org_event(blob, changes, at))
                if startup is not None:
                    await db.record_startup_file(s, sha256=startup.sha256, file_name=startup.name,
                                                 version=snapshot.version, outcome="applied")
            break
        except IntegrityError:  # another replica stored the same version number first: rebuild on top
            if attempt == 2:
                raise
    if changed:
        wake()
        log.info("organisation applied", extra={"version": snapshot.version, "changes": len(changes),
                                                "applied_by": applied_by})
    await on_applied(snapshot)
    return OrgApplied(snapshot=snapshot, changes=changes, changed=changed, outcome=outcome)


async def unchanged_startup_file(startup: StartupFile, *, sessions: async_sessionmaker[AsyncSession]) -> bool:
    """Whether a start-up file has the content of the start-up file that last took effect (then it is not read)."""
    async with sessions() as s:
        last_sha, _ = await db.last_startup_file(s)
    return last_sha == startup.sha256


