"""Sealed personal data: AES-256-GCM under the keys of ``EST_PII_KEY``, shared by the services that hold it.

Key format: ``EST_PII_KEY`` is a comma-separated list of keys, each 32 random bytes in URL-safe
base64 (44 characters, e.g. from ``python -m est_intake.forfeitures.pii new-key`` or ``Fernet.generate_key()``).
The FIRST key encrypts; ALL keys decrypt (rotation: put a new key first, re-encrypt, drop the old one).

A ciphertext is ``v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>``. The key id is a hash of the
key (it names the key, it reveals nothing about it). Every ciphertext is bound (AES-GCM associated
data) to a context string, e.g. ``forfeiture:<protocol id>:personal_number`` for a stored column or
``forfeiture:<protocol id>:purpose:social_services_notification`` for the copy sent to social
services: a value copied into another row, field or purpose does not decrypt.

The intake seals and stores (``est_intake.forfeitures.pii`` adds its key tool); the notifier
only opens, and only the key file the intake made (it never creates one).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_FILE = "pii.key"
KEY_BYTES = 32
NONCE_BYTES = 12
VERSION = "v1"
NOTIFICATION_PURPOSE = "social_services_notification"

_warned: set[Path] = set()


class PiiKeyError(ValueError):
    """``EST_PII_KEY`` (or the key file) is malformed or missing; the message never contains key material."""


class PiiDecryptError(Exception):
    """A ciphertext that cannot be decrypted: its key is not configured, or it was altered or moved."""

    def __init__(self, message: str, key_id: str | None = None) -> None:
        super().__init__(message)
        self.key_id = key_id


def generate_key() -> str:
    """A new random key in the ``EST_PII_KEY`` format."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()


def key_id(key: bytes) -> str:
    """The public name of a key: 12 hex characters of a hash of it."""
    return hashlib.sha256(b"est-pii-key-id:" + key).hexdigest()[:12]


def parse_keys(text: str, *, origin: str = "EST_PII_KEY") -> list[bytes]:
    """Decode a comma-separated key list (first key encrypts); PiiKeyError if any key is malformed."""
    parts = [p.strip() for p in text.replace("\n", ",").split(",") if p.strip()]
    if not parts:
        raise PiiKeyError(f"{origin} holds no key")
    keys: list[bytes] = []
    for i, part in enumerate(parts, 1):
        try:
            raw = base64.b64decode(part + "=" * (-len(part) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise PiiKeyError(f"key {i} of {origin} is not URL-safe base64") from None
        if len(raw) != KEY_BYTES:
            raise PiiKeyError(f"key {i} of {origin} decodes to {len(raw)} bytes; {KEY_BYTES} are needed")
        if raw in keys:
            raise PiiKeyError(f"key {i} of {origin} is listed twice")
        keys.append(raw)
    return keys


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PiiCipher:
    """Encrypts with the primary key, decrypts with any configured key; bound to a context string."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise PiiKeyError("no key")
        self._aead = {key_id(k): AESGCM(k) for k in keys}
        self.primary_id = key_id(keys[0])

    def __repr__(self) -> str:
        return f"PiiCipher(primary={self.primary_id}, keys={self.key_ids})"

    @property
    def key_ids(self) -> list[str]:
        """Ids of all configured keys, the primary first."""
        return list(self._aead)

    def encrypt(self, plaintext: str | None, *, context: str) -> str | None:
        """Encrypt a value under the primary key, bound to ``context`` (None stays None)."""
        if plaintext is None:
            return None
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead[self.primary_id].encrypt(nonce, plaintext.encode(), context.encode())
        return f"{VERSION}.{self.primary_id}.{_b64(nonce + sealed)}"

    def decrypt(self, token: str | None, *, context: str) -> str | None:
        """Decrypt a value sealed by ``encrypt`` with the same context (None stays None)."""
        if token is None:
            return None
        kid = self.key_of(token)
        aead = self._aead.get(kid or "")
        if aead is None:
            raise PiiDecryptError("the key of this value is not configured in EST_PII_KEY", kid)
        try:
            blob = _unb64(token.split(".", 2)[2])
            return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], context.encode()).decode()
        except (InvalidTag, ValueError, binascii.Error, IndexError):
            raise PiiDecryptError("the value was altered or belongs to another record", kid) from None

    @staticmethod
    def key_of(token: str) -> str | None:
        """The key id a ciphertext was sealed with (None if it is not a ciphertext of ours)."""
        parts = token.split(".", 2)
        return parts[1] if len(parts) == 3 and parts[0] == VERSION else None

    def rotate(self, token: str | None, *, context: str) -> str | None:
        """The same value sealed under the primary key (unchanged if it already is)."""
        if token is None or self.key_of(token) == self.primary_id:
            return token
        return self.encrypt(self.decrypt(token, context=context), context=context)


# --- sealing a record for one purpose ------------------------------------------------------

def purpose_context(protocol_id: str, purpose: str = NOTIFICATION_PURPOSE) -> str:
    """The associated data of a protocol's personal data sealed for one purpose."""
    return f"forfeiture:{protocol_id}:purpose:{purpose}"


def seal_json(cipher: PiiCipher, value: dict[str, Any], *, context: str) -> str:
    """A JSON object sealed as one ciphertext under the primary key, bound to ``context``."""
    token = cipher.encrypt(json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")),
                           context=context)
    assert token is not None
    return token


def open_json(cipher: PiiCipher, token: str, *, context: str) -> dict[str, Any]:
    """The JSON object of ``seal_json``; PiiDecryptError if the key is missing or the value was moved."""
    text = cipher.decrypt(token, context=context)
    try:
        value = json.loads(text or "")
    except ValueError:
        raise PiiDecryptError("the sealed value is not a JSON object", cipher.key_of(token)) from None
    if not isinstance(value, dict):
        raise PiiDecryptError("the sealed value is not a JSON object", cipher.key_of(token))
    return value


# --- loading the keys ----------------------------------------------------------------------

def load_cipher(pii_key: str | None, *, data_dir: Path, log: logging.Logger, create: bool = True) -> PiiCipher:
    """The cipher from ``EST_PII_KEY``, or (embedded default) from the key file ``DATA_DIR/pii.key``.

    ``create`` makes the file (0600) when missing and warns once; without it a missing file is a
    PiiKeyError (the notifier waits for the intake to make it rather than inventing a key of its own).
    """
    if pii_key and pii_key.strip():
        return PiiCipher(parse_keys(pii_key))
    path = (data_dir / KEY_FILE).resolve()
    if not create and not path.exists():
        raise PiiKeyError("EST_PII_KEY is not set and there is no key file in the data dir")
    text = _read_or_create_key_file(path, log)
    if path not in _warned:
        _warned.add(path)
        log.warning("EST_PII_KEY is not set: personal data is encrypted with a generated key file next to the "
                    "database; back it up apart from the data and set EST_PII_KEY in production",
                    extra={"key_file": str(path)})
    return PiiCipher(parse_keys(text, origin=str(path)))


def _read_or_create_key_file(path: Path, log: logging.Logger) -> str:
    """Read the key file, creating it atomically with mode 0600 if it does not exist yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, (generate_key() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic: another replica that got there first wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("the personal-data key file was readable by others; permissions set to 0600",
                    extra={"key_file": str(path)})
        path.chmod(0o600)
    return path.read_text(encoding="utf-8")
