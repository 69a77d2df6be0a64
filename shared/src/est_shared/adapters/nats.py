"""What nats-py keeps to itself and the bus needs to know."""

from __future__ import annotations

from typing import Any


def max_payload(js: Any) -> int | None:
    """The largest message the connected server takes (its INFO's ``max_payload``), or None before it is known.

    nats-py keeps it on the JetStream context's private connection; read here, and only here.
    """
    limit = getattr(getattr(js, "_nc", None), "max_payload", None)
    return limit if isinstance(limit, int) and limit > 0 else None
