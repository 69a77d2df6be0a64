"""Unit tests of field-level encryption: AES-GCM bound to row and field, key lists, rotation, key file."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from est_intake.forfeitures.pii import (
    KEY_FILE,
    PiiCipher,
    PiiDecryptError,
    PiiKeyError,
    generate_key,
    load_cipher,
    parse_keys,
)


def cipher(text: str) -> PiiCipher:
    return PiiCipher(parse_keys(text))


def test_roundtrip_and_the_ciphertext_hides_the_value() -> None:
    c = cipher(generate_key())
    token = c.encrypt("20090315-2384", context="forfeiture:p1:personal_number")
    assert token is not None and "2009" not in token and token.startswith(f"v1.{c.primary_id}.")
    assert c.decrypt(token, context="forfeiture:p1:personal_number") == "20090315-2384"
    assert c.encrypt(None, context="x") is None and c.decrypt(None, context="x") is None
    again = c.encrypt("20090315-2384", context="forfeiture:p1:personal_number")
    assert again != token  # a fresh nonce every time


def test_a_value_moved_to_another_row_or_field_does_not_decrypt() -> None:
    c = cipher(generate_key())
    token = c.encrypt("Kim", context="forfeiture:p1:person_name")
    for ctx in ("forfeiture:p2:person_name", "forfeiture:p1:officer"):
        with pytest.raises(PiiDecryptError):
            c.decrypt(token, context=ctx)


def test_an_altered_value_is_refused() -> None:
    c = cipher(generate_key())
    token = c.encrypt("Kim", context="c")
    assert token is not None
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(PiiDecryptError):
        c.decrypt(flipped, context="c")


def test_first_key_encrypts_all_keys_decrypt_and_rotate_moves_to_the_first() -> None:
    a, b = generate_key(), generate_key()
    old = cipher(a)
    token_a = old.encrypt("Kim", context="c")
    rotated = cipher(f"{b}, {a}")
    assert rotated.key_ids == [rotated.primary_id, old.primary_id]
    assert rotated.decrypt(token_a, context="c") == "Kim"
    token_b = rotated.encrypt("Kim", context="c")
    assert PiiCipher.key_of(token_b) == rotated.primary_id != old.primary_id
    moved = rotated.rotate(token_a, context="c")
    assert PiiCipher.key_of(moved) == rotated.primary_id and cipher(b).decrypt(moved, context="c") == "Kim"
    with pytest.raises(PiiDecryptError) as exc:
        cipher(b).decrypt(token_a, context="c")
    assert exc.value.key_id == old.primary_id


@pytest.mark.parametrize("text", ["", " , ", "not-base64!!", "c2hvcnQ=", "{k},{k}"])
def test_malformed_key_lists_are_refused_without_echoing_them(text: str) -> None:
    key = generate_key()
    text = text.replace("{k}", key)
    with pytest.raises(PiiKeyError) as exc:
        parse_keys(text)
    assert key not in str(exc.value) and (not text.strip(" ,") or text not in str(exc.value))


def test_fernet_style_keys_with_padding_work() -> None:
    from cryptography.fernet import Fernet

    c = cipher(Fernet.generate_key().decode())
    assert c.decrypt(c.encrypt("x", context="c"), context="c") == "x"
    assert generate_key() not in repr(c)


def test_embedded_default_generates_a_private_key_file_once_and_warns_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="est.intake.pii")
    first = load_cipher(None, data_dir=tmp_path)
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = load_cipher("", data_dir=tmp_path)
    assert first.primary_id == second.primary_id
    warnings = [r for r in caplog.records if "EST_PII_KEY is not set" in r.getMessage()]
    assert len(warnings) == 1
    assert path.read_text().strip() not in caplog.text


def test_a_key_file_readable_by_others_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE
    path.write_text(generate_key())
    path.chmod(0o644)
    load_cipher(None, data_dir=tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_explicit_key_wins_over_the_key_file(tmp_path: Path) -> None:
    key = generate_key()
    assert load_cipher(key, data_dir=tmp_path).primary_id == cipher(key).primary_id
    assert not (tmp_path / KEY_FILE).exists()
