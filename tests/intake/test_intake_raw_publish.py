"""The intake's own HPUB commands (``RawPublish``) carry exactly what nats-py's ``publish`` would send."""

from __future__ import annotations

import uuid
from typing import Any

import nats
from est_intake.adapters.hpub import RawPublish
from est_intake.adapters.jetstream import JetStreamReports
from est_shared.subjects import report_submitted


async def test_raw_commands_arrive_as_publish_sends_them(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        base = f"rawtest.{uuid.uuid4().hex[:8]}"
        sub = await nc.subscribe(f"{base}.>")
        reports = JetStreamReports(runtime=None, metrics=None)  # type: ignore[arg-type]
        subject = report_submitted("vaxjo", "araby")
        block = reports._header_block(subject)
        headers = {**reports._header(subject), "Nats-Msg-Id": "r-1:x.y"}
        payload = '{"note":"åäö \\" \\\\"}'.encode()
        raw = RawPublish.of(nc)
        assert raw is not None
        for i in range(3):
            assert raw.add(f"{base}.a", "_INBOX.abc.", str(i).encode(), block, "r-1:x.y", payload)
        await raw.send()
        for i in range(3):
            await nc.publish(f"{base}.a", payload, reply=f"_INBOX.abc.{i}", headers=headers)
        got: list[Any] = [await sub.next_msg(timeout=2) for _ in range(6)]
        seen = [(m.subject, m.reply, m.data, m.headers) for m in got]
        assert seen[:3] == seen[3:]
        assert seen[0][3] == headers and seen[2][1] == "_INBOX.abc.2"
        # what cannot go this way is refused, for publish to check (and raise) as it always did
        assert not raw.add(f"{base}.a b", "_INBOX.abc.", b"9", block, "r-2", payload)
        assert not raw.add(f"{base}.a\r\nPUB x 1", "_INBOX.abc.", b"9", block, "r-2", payload)
        assert not raw.add(f"{base}.a", "_INBOX.abc.", b"9", block, "r-2\r\nPUB x 1", payload)
        assert not raw.add(f"{base}.a", "_INBOX.abc.", b"9", block, "r-2", b"x" * (nc.max_payload + 1))
        assert raw.cmds == []
    finally:
        await nc.close()


async def test_no_raw_publish_on_a_closed_connection(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    await nc.close()
    assert RawPublish.of(nc) is None
