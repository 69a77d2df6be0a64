"""The mail outbox without SMTP: ``.eml`` files in ``DATA_DIR/outbox/``, readable only by the service, and
deleted after a retention period.

E-mails name people (reminders greet their recipient, every message carries an address), so the outbox
is private like a mailbox: the directory is 0700 and every file is created 0600 (with that mode from
the start, not changed afterwards, so no other user can open it in between). Files are written under a
temporary name and renamed, so a reader never sees half a message and a retry rewrites the same name.
``prune`` deletes files older than the retention period and narrows the mode of any file an older
version left readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
import uuid
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("est.notifier")

DIR_MODE = 0o700
FILE_MODE = 0o600


def ensure_dir(outbox: Path) -> None:
    """Make the outbox directory (0700), or narrow an existing one to 0700."""
    outbox.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if stat.S_IMODE(outbox.stat().st_mode) != DIR_MODE:
        outbox.chmod(DIR_MODE)


def write(outbox: Path, name: str, data: bytes) -> Path:
    """Write ``data`` as ``outbox/name`` atomically, created 0600."""
    ensure_dir(outbox)
    final = outbox / name
    tmp = outbox / f".{name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.replace(tmp, final)
    return final


def prune(outbox: Path, *, older_than_days: float, now: float | None = None) -> int:
    """Delete outbox files last written more than ``older_than_days`` ago; narrow the rest to 0600.
    Returns how many were deleted."""
    if not outbox.is_dir():
        return 0
    ensure_dir(outbox)
    cutoff = (now if now is not None else time.time()) - older_than_days * 86400
    deleted = 0
    for path in outbox.iterdir():
        try:
            st = path.lstat()
            if not stat.S_ISREG(st.st_mode):
                continue
            if st.st_mtime < cutoff:
                path.unlink()
                deleted += 1
            elif stat.S_IMODE(st.st_mode) & 0o077:
                path.chmod(FILE_MODE)
        except FileNotFoundError:  # another replica pruned it first
            continue
    return deleted


async def retention_loop(outbox: Path, *, older_than_days: float, interval: float = 3600.0,
                         on_pruned: Callable[[int], None] | None = None) -> None:
    """Prune the outbox at start and then every ``interval`` seconds."""
    while True:
        try:
            deleted = await asyncio.to_thread(prune, outbox, older_than_days=older_than_days)
            if deleted:
                log.info("outbox files deleted after the retention period",
                         extra={"deleted": deleted, "retention_days": older_than_days})
                if on_pruned is not None:
                    on_pruned(deleted)
        except OSError:
            log.exception("could not prune the mail outbox")
        await asyncio.sleep(interval)
