"""The gateway's sign-in sessions, kept server-side (SQLAlchemy: a SQLite file in the web's data dir by
default, PostgreSQL through ``EST_WEB_SESSION_DATABASE_URL`` for several replicas).

The browser holds only the session id, 32 random bytes; the table keys a session by the SHA-256 of
it, so a copy of the database does not give anyone a cookie. The credential (the bearer token the
gateway adds when it forwards) is sealed with AES-256-GCM (``est_shared.sealed``), bound to the
session's key, and is never logged. A session ends at its idle or its absolute expiry, whichever
comes first, or when it is signed out (the row is deleted).

Failed sign-ins are kept in the same database (``web_sign_in_failures``: when, and the SHA-256 of the
client's address, not the address), so that every replica counts the same tries (``sessions.Throttle``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from est_shared.clock import Clock
from est_shared.db import make_engine
from est_shared.sealed import PiiCipher
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

metadata = MetaData()
sessions_table = Table(
    "web_sessions", metadata,
    Column("key", String(64), primary_key=True),  # sha256 hex of the session id
    Column("csrf", String(64), nullable=False),
    Column("credential", Text, nullable=False),  # sealed: the bearer token
    Column("me", Text, nullable=False),  # the intake's /v1/me answer at sign-in, JSON
    Column("kind", String(16), nullable=False),  # token | demo | oidc
    Column("extra", Text, nullable=True),  # sealed JSON: the provider's refresh token, expiry and ID token
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
)
failures_table = Table(
    "web_sign_in_failures", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client", String(64), nullable=False, index=True),  # sha256 hex of the client's address
    Column("at", DateTime(timezone=True), nullable=False, index=True),
)


@dataclass(frozen=True)
class WebSession:
    """A live session: its key, the CSRF token, the credential (opened), who signed in and how."""

    key: str
    csrf: str
    credential: str
    me: dict[str, Any]
    kind: str
    created_at: datetime
    extra: dict[str, Any] | None = None


def session_key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def client_key(client: str) -> str:
    """What the failures table keeps of a client's address."""
    return hashlib.sha256(f"est-web-sign-in:{client}".encode()).hexdigest()


class SessionStore:
    """Sessions with idle and absolute expiry (see the module docstring)."""

    def __init__(self, url: str, *, cipher: PiiCipher, clock: Clock, idle_seconds: int,
                 absolute_seconds: int) -> None:
        self.url = url
        self.cipher = cipher
        self.clock = clock
        self.idle = timedelta(seconds=idle_seconds)
        self.absolute = timedelta(seconds=absolute_seconds)
        self.engine: AsyncEngine | None = None

    async def start(self) -> None:
        self.engine = make_engine(self.url)
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()

    def _engine(self) -> AsyncEngine:
        assert self.engine is not None, "the store is started in the app's lifespan"
        return self.engine

    async def create(self, credential: str, me: dict[str, Any], *, kind: str,
                     extra: dict[str, Any] | None = None) -> tuple[str, WebSession]:
        """A new session for ``credential``; returns the session id (for the cookie only) and the session."""
        session_id = secrets.token_urlsafe(32)
        key = session_key(session_id)
        now = self.clock.now()
        csrf = secrets.token_urlsafe(32)
        sealed = self.cipher.encrypt(credential, context=f"web-session:{key}")
        async with self._engine().begin() as conn:
            await conn.execute(sessions_table.insert().values(
                key=key, csrf=csrf, credential=sealed, me=json.dumps(me), kind=kind, created_at=now, seen_at=now,
                extra=self._seal_extra(key, extra)))
            await conn.execute(delete(sessions_table).where(
                (sessions_table.c.seen_at < now - self.idle) | (sessions_table.c.created_at < now - self.absolute)))
        return session_id, WebSession(key, csrf, credential, me, kind, now, extra)

    async def get(self, session_id: str) -> WebSession | None:
        """The live session of ``session_id`` (its idle time starts again), or None (unknown, expired: deleted)."""
        if not session_id or len(session_id) > 100:
            return None
        key = session_key(session_id)
        now = self.clock.now()
        async with self._engine().begin() as conn:
            row = (await conn.execute(select(sessions_table).where(sessions_table.c.key == key))).mappings().first()
            if row is None:
                return None
            created, seen = _aware(row["created_at"]), _aware(row["seen_at"])
            if now - seen > self.idle or now - created > self.absolute:
                await conn.execute(delete(sessions_table).where(sessions_table.c.key == key))
                return None
            await conn.execute(update(sessions_table).where(sessions_table.c.key == key).values(seen_at=now))
        credential = self.cipher.decrypt(row["credential"], context=f"web-session:{key}") or ""
        extra = self.cipher.decrypt(row["extra"], context=f"web-session:{key}:extra") if row["extra"] else None
        return WebSession(key, row["csrf"], credential, json.loads(row["me"]), row["kind"], created,
                          json.loads(extra) if extra else None)

    def _seal_extra(self, key: str, extra: dict[str, Any] | None) -> str | None:
        return self.cipher.encrypt(json.dumps(extra), context=f"web-session:{key}:extra") if extra else None

    async def renew(self, key: str, credential: str, extra: dict[str, Any] | None) -> None:
        """A refreshed credential (and its refresh token, expiry) for the session ``key``."""
        async with self._engine().begin() as conn:
            await conn.execute(update(sessions_table).where(sessions_table.c.key == key).values(
                credential=self.cipher.encrypt(credential, context=f"web-session:{key}"),
                extra=self._seal_extra(key, extra)))

    async def failures_since(self, client: str, since: datetime) -> list[datetime]:
        """When ``client`` (an address) failed to sign in after ``since``, oldest first, on any replica."""
        t = failures_table
        async with self._engine().connect() as conn:
            rows = await conn.execute(select(t.c.at).where(t.c.client == client_key(client), t.c.at > since)
                                      .order_by(t.c.at))
            return [_aware(at) for (at,) in rows]

    async def add_failure(self, client: str, *, forget_before: datetime) -> None:
        """A failed sign-in of ``client`` now; the failures of every client before ``forget_before`` go."""
        t = failures_table
        async with self._engine().begin() as conn:
            await conn.execute(t.insert().values(client=client_key(client), at=self.clock.now()))
            await conn.execute(delete(t).where(t.c.at < forget_before))

    async def delete(self, session_id: str) -> None:
        async with self._engine().begin() as conn:
            await conn.execute(delete(sessions_table).where(sessions_table.c.key == session_key(session_id)))


def _aware(value: datetime) -> datetime:
    """SQLite gives back naive datetimes of what was stored in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
