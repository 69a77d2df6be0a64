"""Every service follows the organisation from est.org.changed: the snapshot the event names is read from the
object store (retried until it is there and matches its digest), an inline snapshot of the older form is
still read, and the newest announced version wins."""

from __future__ import annotations

import asyncio
import time

import nats
from est_shared.bus import ORG_SNAPSHOTS, encode, ensure_streams, put_object
from est_shared.events import OrgChanged, new_event
from est_shared.natsserver import NatsServer
from est_shared.org import Area, Municipality, OrgSnapshot, SnapshotBlob
from est_shared.runtime import ServiceRuntime
from est_shared.settings import ServiceSettings
from est_shared.subjects import ORG_CHANGED
from est_shared.testing import serve


def _snapshot(version: int) -> OrgSnapshot:
    return OrgSnapshot(version=version, municipalities={"m": Municipality(id="m", name="M", area_ids=["a"])},
                       areas={"a": Area(id="a", name=f"Område v{version}", municipality_id="m")})


def _announce(blob: SnapshotBlob, sha256: str | None = None) -> bytes:
    return encode(new_event(type="se.est.org.changed", source="/test", id=f"org:v{blob.version}", subject="org",
                            data=OrgChanged(version=blob.version, snapshot_object=blob.name,
                                            snapshot_sha256=sha256 or blob.sha256, snapshot_bytes=len(blob.data))))


async def _version(runtime: ServiceRuntime, want: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while runtime.directory.snapshot.version != want:
        assert time.monotonic() < deadline, f"still at version {runtime.directory.snapshot.version}, want {want}"
        await asyncio.sleep(0.05)


async def test_a_service_applies_the_announced_snapshot_once_it_is_in_the_object_store(
        fresh_nats: NatsServer) -> None:
    nc = await nats.connect(fresh_nats.url)
    js = nc.jetstream()
    await ensure_streams(js)
    v1 = SnapshotBlob.of(_snapshot(1))
    await js.publish(ORG_CHANGED, _announce(v1))  # announced before its object exists (not the intake's order)
    runtime = ServiceRuntime(name="t", title="T", description="t",
                             settings=ServiceSettings(nats_url=fresh_nats.url, log_level="WARNING"))
    try:
        async with serve(runtime.app):
            await asyncio.sleep(0.5)
            assert runtime.directory.snapshot.version == 0  # nothing to read yet: still retrying
            await put_object(js, ORG_SNAPSHOTS, v1.name, v1.data)
            await _version(runtime, 1)

            v2, v3 = SnapshotBlob.of(_snapshot(2)), SnapshotBlob.of(_snapshot(3))
            await put_object(js, ORG_SNAPSHOTS, v2.name, v2.data)
            await js.publish(ORG_CHANGED, _announce(v2, sha256="0" * 64))  # its digest does not match
            await asyncio.sleep(0.5)
            assert runtime.directory.snapshot.version == 1
            await put_object(js, ORG_SNAPSHOTS, v3.name, v3.data)
            await js.publish(ORG_CHANGED, _announce(v3))  # a newer version replaces the one that cannot be read
            await _version(runtime, 3)
            assert runtime.directory.snapshot.areas["a"].name == "Område v3"

            old_form = new_event(type="se.est.org.changed", source="/test", id="org:v4", subject="org",
                                 data=OrgChanged(version=4, snapshot=_snapshot(4).model_dump(mode="json")))
            await js.publish(ORG_CHANGED, encode(old_form))
            await _version(runtime, 4)
    finally:
        await nc.close()
