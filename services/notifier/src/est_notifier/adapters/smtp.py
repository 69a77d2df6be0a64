"""The SMTP sender: e-mail over SMTP (plain, STARTTLS or implicit TLS), or to the outbox directory without it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib

from est_notifier.adapters import outbox
from est_notifier.deliveries.domain import AttemptResult, classify_smtp


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to send e-mail."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    start_tls: bool = False


def parse_smtp_url(url: str) -> SmtpConfig:
    """``smtp://user:pass@host:port`` (plain), ``smtp+starttls://…`` or ``smtps://…`` (implicit TLS)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtp+starttls", "smtps") or not parts.hostname:
        raise ValueError(f"unsupported SMTP URL scheme {scheme!r}: use smtp, smtp+starttls or smtps")
    default_port = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}[scheme]
    return SmtpConfig(
        host=parts.hostname, port=parts.port or default_port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=scheme == "smtps", start_tls=scheme == "smtp+starttls",
    )


class EmailSender:
    """Sends the frozen message over SMTP, or writes it to the outbox directory without SMTP."""

    def __init__(self, *, smtp: SmtpConfig | None, outbox: Path, timeout: float = 30.0) -> None:
        self.smtp, self.outbox, self.timeout = smtp, outbox, timeout

    async def send(self, delivery: dict[str, Any], attempt: int) -> AttemptResult:
        if self.smtp is None:
            return await asyncio.to_thread(self._write, delivery)
        target, cfg = delivery["target"], self.smtp
        try:
            await aiosmtplib.send(
                delivery["payload"], sender=target["from"], recipients=list(target["to"]), hostname=cfg.host,
                port=cfg.port, username=cfg.username, password=cfg.password, use_tls=cfg.use_tls,
                start_tls=cfg.start_tls, timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients] or [550]
            code = min(codes)
            return AttemptResult(classify_smtp(code), code=code, error="recipients refused")
        except aiosmtplib.SMTPResponseException as exc:
            return AttemptResult(classify_smtp(exc.code), code=exc.code, error=f"SMTP {exc.code}: {exc.message[:200]}")
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return AttemptResult("retry", error=f"{exc.__class__.__name__}: {str(exc)[:200]}")
        return AttemptResult("delivered", code=250)

    def _write(self, delivery: dict[str, Any]) -> AttemptResult:
        outbox.write(self.outbox, f"{delivery['id']}.eml", delivery["payload"])  # 0600, atomic
        return AttemptResult("delivered")
