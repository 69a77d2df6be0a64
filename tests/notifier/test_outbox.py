"""The mail outbox without SMTP: private files (0600 in a 0700 directory) that retention deletes."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from est_notifier.adapters import outbox
from est_notifier.adapters.smtp import EmailSender

from tests.notifier.support import (
    Org,
    notifier_settings,
    picture_event,
    picture_subject,
    publish,
    running_notifier,
)
from tests.support import eventually


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that takes nothing away: what a file is created with is what it gets."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("open_umask")
async def test_an_outbox_file_is_created_readable_by_the_service_alone(tmp_path: Path) -> None:
    sender = EmailSender(smtp=None, outbox=tmp_path / "outbox")
    result = await sender.send({"id": "d1", "payload": b"Subject: x\r\n\r\nHej Anna\r\n"}, 1)
    assert result.outcome == "delivered"
    written = tmp_path / "outbox" / "d1.eml"
    assert written.read_bytes() == b"Subject: x\r\n\r\nHej Anna\r\n"
    assert mode(written) == 0o600 and mode(tmp_path / "outbox") == 0o700
    assert [p.name for p in (tmp_path / "outbox").iterdir()] == ["d1.eml"]  # no temporary file left


def test_an_outbox_an_older_version_made_open_is_narrowed(tmp_path: Path) -> None:
    box = tmp_path / "outbox"
    box.mkdir(mode=0o755)
    box.chmod(0o755)
    outbox.write(box, "new.eml", b"x")
    assert mode(box) == 0o700


def test_retention_deletes_old_outbox_files_and_narrows_the_rest(tmp_path: Path) -> None:
    box = tmp_path / "outbox"
    outbox.ensure_dir(box)
    now = time.time()
    for name, age_days, file_mode in (("old.eml", 31, 0o644), ("stale.tmp", 40, 0o600), ("recent.eml", 29, 0o644),
                                      ("fresh.eml", 0, 0o600)):
        path = box / name
        path.write_bytes(b"x")
        path.chmod(file_mode)
        os.utime(path, (now - age_days * 86400, now - age_days * 86400))
    assert outbox.prune(box, older_than_days=30, now=now) == 2
    assert sorted(p.name for p in box.iterdir()) == ["fresh.eml", "recent.eml"]
    assert mode(box / "recent.eml") == 0o600  # written by an older version, readable by others: narrowed
    assert outbox.prune(tmp_path / "none", older_than_days=30) == 0


async def test_the_running_notifier_prunes_its_outbox_and_writes_private_mails(nats_url: str, tmp_path: Path,
                                                                              org: Org) -> None:
    box = tmp_path / "outbox"
    box.mkdir()
    old = box / "from-last-year.eml"
    old.write_bytes(b"Subject: gammal\r\n\r\nHej Olle\r\n")
    os.utime(old, (time.time() - 400 * 86400,) * 2)
    settings = notifier_settings(nats_url, tmp_path, org, outbox_retention_days=365)
    async with running_notifier(settings, org) as n:
        await eventually(lambda: _gone(old))
        assert 'est_notifier_outbox_files_deleted_total 1.0' in (await n.http.get("/metrics")).text
        await n.subscribe(channel={"type": "email", "to": "olle@example.org"})
        await publish(nats_url, picture_subject(org), picture_event(org))
        (mail,) = await eventually(lambda: _mails(box))
        assert mode(mail) == 0o600 and mode(box) == 0o700


async def _gone(path: Path) -> bool:
    return not await asyncio.to_thread(path.exists)


async def _mails(box: Path) -> list[Path]:
    return await asyncio.to_thread(lambda: sorted(box.glob("*.eml")))
