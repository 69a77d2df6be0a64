"""NATS HPUB commands written out and handed to nats-py's connection (its private members)."""

from __future__ import annotations

import re
from typing import Any


class RawPublish:
    """The HPUB commands of one ``publish_many`` call, written out and handed to nats-py's connection at once.

    ``nats.aio.client.Client.publish`` encodes the headers of every message field by field (a regular
    expression, a strip and an encode per header): with three headers that was the largest single
    cost of a batch report's publish. The intake's headers are the same for every report of a
    stream but the ``Nats-Msg-Id``, so their block is written once and the command is formed here,
    then queued with the client's own ``_send_command`` and flush (the path ``publish`` ends in).
    These are nats-py internals (pinned in ``uv.lock``); ``of`` returns None if they are missing, and
    ``add`` refuses what it cannot send this way (a subject or id with whitespace or a line break, a
    payload over the server's limit, a connection that is not up): the caller then uses ``publish``,
    which checks and raises as it always did. Tests hold what arrives to ``publish``'s encoding.
    """

    __slots__ = ("_subjects", "cmds", "nc", "payload_bytes")

    _BAD = re.compile(r"[\s]")

    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self.cmds: list[bytes] = []
        self.payload_bytes = 0
        self._subjects: dict[str, bytes | None] = {}

    @classmethod
    def of(cls, nc: Any) -> RawPublish | None:
        ok = all(hasattr(nc, a) for a in ("_send_command", "_flush_queue", "_flush_pending", "_max_payload")) \
            and isinstance(getattr(nc, "stats", None), dict)
        return cls(nc) if ok and nc.is_connected and not nc.is_closed and not nc.is_draining_pubs else None

    def add(self, subject: str, prefix: str, token: bytes, block: bytes, msg_id: str, payload: bytes) -> bool:
        """Queue one message (False: not this way; send it with ``publish``)."""
        subj = self._subjects.get(subject, b"")
        if subj == b"":
            subj = self._subjects[subject] = None if not subject or self._BAD.search(subject) else subject.encode()
        if subj is None or "\r" in msg_id or "\n" in msg_id or len(payload) > self.nc._max_payload:
            return False
        hdr = block + msg_id.encode() + b"\r\n\r\n"
        self.cmds.append(b"HPUB %b %b%b %d %d\r\n%b%b\r\n" % (subj, prefix.encode(), token, len(hdr),
                                                                 len(hdr) + len(payload), hdr, payload))
        self.payload_bytes += len(payload)
        return True

    async def send(self) -> None:
        """Hand the queued commands to the connection (one write) and flush as ``publish`` does."""
        if not self.cmds:
            return
        nc, cmds, size = self.nc, self.cmds, self.payload_bytes
        self.cmds, self.payload_bytes = [], 0
        nc.stats["out_msgs"] += len(cmds)
        nc.stats["out_bytes"] += size
        await nc._send_command(b"".join(cmds))
        if nc._flush_queue is not None and nc._flush_queue.empty():
            await nc._flush_pending()
