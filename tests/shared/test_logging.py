"""Structured logs: an error's message never reaches a log line, its class and place do."""

from __future__ import annotations

import io
import json
import logging

from est_shared.observability import JsonFormatter, error_name


class Refused(ValueError):
    pass


NAME, NUMBER, PHONE = "Kim Testsson", "20100515-2382", "070-123 45 67"  # the source lines do not show them


def _log_exception() -> dict[str, object]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    log = logging.getLogger("est.test.logging")
    log.addHandler(handler)
    try:
        try:
            raise KeyError(f"{NAME} {NUMBER}")
        except KeyError as inner:
            raise Refused(f"could not store note 'ring {PHONE}'") from inner
    except Refused:
        log.exception("storing failed")
    finally:
        log.removeHandler(handler)
    line: dict[str, object] = json.loads(stream.getvalue())
    return line


def test_a_logged_exception_keeps_its_classes_and_frames_but_not_its_messages() -> None:
    line = _log_exception()
    exc = str(line["exc"])
    assert NUMBER not in exc and NAME not in exc and PHONE not in exc
    assert "KeyError" in exc and "Refused" in exc and "The above error led to:" in exc
    assert "_log_exception" in exc and "test_logging.py" in exc
    assert line["msg"] == "storing failed"


def test_error_name_names_the_class_and_its_cause_only() -> None:
    try:
        try:
            raise KeyError("Kim Testsson")
        except KeyError as inner:
            raise Refused("20100515-2382") from inner
    except Refused as exc:
        assert error_name(exc) == "Refused(KeyError)"
