"""Field-by-field encryption of personal data at rest (AES-256-GCM), keys from ``EST_PII_KEY``.

Key format: ``EST_PII_KEY`` is a comma-separated list of keys, each 32 random bytes in URL-safe
base64 (44 characters, e.g. from ``python -m est_intake.forfeitures.pii new-key`` or ``Fernet.generate_key()``).
The FIRST key encrypts; ALL keys decrypt. To rotate: put a new key first (``EST_PII_KEY=NEW,OLD``),
restart, re-encrypt the stored rows (``POST /v1/admin/forfeitures/reencrypt`` or
``python -m est_intake.forfeitures.pii reencrypt``), then drop the old key.

A ciphertext is ``v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>``. The key id is a hash of the
key (it names the key, it reveals nothing about it), so decrypting never tries keys blindly and
re-encryption finds the rows still under an old key. Every ciphertext is bound (AES-GCM associated
data) to its row and field, e.g. ``forfeiture:<protocol id>:personal_number``: a value copied into
another row or field does not decrypt.

Without ``EST_PII_KEY`` (the embedded default) a key is generated once into ``DATA_DIR/pii.key``
(permissions 0600) and a warning is logged: that key lies next to the database it protects, which
is fine for a demo and not for production.

The cipher itself lives in ``est_shared.sealed`` (the notifier opens what the intake seals for social
services with the same keys); this module re-exports it and keeps the command line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from est_shared import sealed
from est_shared.db import make_engine, session_factory
from est_shared.sealed import (
    KEY_BYTES,
    KEY_FILE,
    NONCE_BYTES,
    VERSION,
    PiiCipher,
    PiiDecryptError,
    PiiKeyError,
    generate_key,
    key_id,
    parse_keys,
)

from est_intake.forfeitures import db as fdb
from est_intake.forfeitures.handlers import reencrypt_protocols

__all__ = ["KEY_BYTES", "KEY_FILE", "NONCE_BYTES", "VERSION", "PiiCipher", "PiiDecryptError", "PiiKeyError",
           "generate_key", "key_id", "load_cipher", "parse_keys", "reencrypt_database", "secret_text"]

log = logging.getLogger("est.intake.pii")


def load_cipher(pii_key: str | None, *, data_dir: Path) -> PiiCipher:
    """The cipher from ``EST_PII_KEY``, or (embedded default) from a key file generated in the data dir."""
    return sealed.load_cipher(pii_key, data_dir=data_dir, log=log, create=True)


async def reencrypt_database(settings: Any) -> dict[str, Any]:
    """Re-encrypt from the command line (``python -m est_intake.forfeitures.pii reencrypt``), configured like the
    service (this command line is its own small composition root)."""
    engine = make_engine(settings.db_url())
    try:
        async with engine.begin() as conn:
            await fdb.create_tables(conn)
        cipher = load_cipher(secret_text(settings.pii_key), data_dir=settings.data_dir)
        return await reencrypt_protocols(sessions=session_factory(engine), cipher=cipher)
    finally:
        await engine.dispose()


def secret_text(value: Any) -> str | None:
    """The plain text of a setting that may be a SecretStr."""
    if value is None:
        return None
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m est_intake.forfeitures.pii new-key | reencrypt``: make a key, or re-encrypt stored rows under the
    first key."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["new-key"]:
        print(generate_key())
        return 0
    if args == ["reencrypt"]:
        import asyncio
        import json

        from est_intake.settings import IntakeSettings

        print(json.dumps(asyncio.run(reencrypt_database(IntakeSettings()))))
        return 0
    print("usage: python -m est_intake.forfeitures.pii new-key | reencrypt", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
