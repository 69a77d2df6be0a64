"""The organisation as it was: each version the aggregator applies is recorded (``est_shared.orghistory``), so
a past period's picture, recomputed later, expects the reporters of that period, not today's."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from est_shared.org import OrgSnapshot
from est_shared.orghistory import record_org
from est_shared.periods import Period

from est_aggregator.pictures import db
from est_aggregator.pictures.compute import timezone_of
from est_aggregator.pictures.deps import Deps

log = logging.getLogger("est.aggregator")


async def record_org_version(*, deps: Deps, snapshot: OrgSnapshot, now: datetime) -> int:
    """Record what ``snapshot`` holds from when it took effect (its ``applied_at``, else ``now``); returns how
    many stretches of areas and reporters began or ended. When any did, the open pictures of periods still
    running then are marked dirty: the refresher recomputes them (their expected reporters may have changed)
    and says so with picture.updated. Published pictures stay as they were sent."""
    at = snapshot.applied_at or now
    at = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    keys: list[tuple[str, str, str]] = []
    async with deps.units.transaction() as s:
        changed = await record_org(snapshot, at, session=s, table=db.org_history)
        if changed:
            for row in await db.open_pictures(s):
                try:
                    period = Period.parse(row.period)
                except ValueError:  # a period id no date has
                    continue
                if period.end_at(timezone_of(snapshot, row.municipality_id)) > at:
                    keys.append((row.area_id, row.period, row.municipality_id))
            await db.mark_dirty(s, keys, token=uuid.uuid4().hex)
    if changed:
        log.info("organisation version recorded",
                 extra={"org_version": snapshot.version, "changed": changed, "pictures": len(keys)})
        if keys:
            deps.wake_refresher()
    return changed
