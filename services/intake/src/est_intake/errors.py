"""The intake's domain errors: the shared kinds (``est_shared.errors``) under the titles its answers carry.

A rule raises the kind that fits; the edge maps the kind to a status (``est_shared.http.STATUS``), and a
report inside a batch gets the same status and problem body as it would on its own.
"""

from __future__ import annotations

from est_shared.errors import Conflict, DomainError, Forbidden, Invalid


class ReportRejected(DomainError):
    """A report that cannot be accepted (``reason`` is the metric label)."""


class ReportInvalid(ReportRejected, Invalid):
    """A report that breaks a rule: the failing fields are in ``errors``."""

    title = "Invalid report"


class ReportForbidden(ReportRejected, Forbidden):
    """A report the caller may not send (role, area, a correction of someone else's report)."""

    title = "Forbidden"


class ReportConflict(ReportRejected, Conflict):
    """A correction of a report that was withdrawn or corrected already (or of a withdrawal)."""

    title = "Conflict"


class ForfeitureRejected(DomainError):
    """A forfeiture protocol that cannot be accepted (no personal data in the texts)."""


class ForfeitureInvalid(ForfeitureRejected, Invalid):
    """A protocol that breaks a Kronoberg rule: the failing fields are in ``errors``."""

    title = "Invalid forfeiture protocol"


class ForfeitureForbidden(ForfeitureRejected, Forbidden):
    """A protocol for a municipality the caller does not work in."""

    title = "Forbidden"
