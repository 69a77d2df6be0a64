"""The aggregator's domain errors: ``est_shared.errors`` kinds with the aggregator's words."""

from __future__ import annotations

from typing import Any

from est_shared.errors import Conflict, Invalid, NotFound, Unavailable


class AreaNotFound(NotFound):
    """Neither the organisation nor the stored reports know the area."""

    title = "Area not found"

    def __init__(self, area_id: str) -> None:
        super().__init__(f"Området {area_id} finns inte.", f"No area {area_id}.")


class MunicipalityNotFound(NotFound):
    """The organisation does not know the municipality."""

    title = "Municipality not found"

    def __init__(self, municipality_id: str) -> None:
        super().__init__(f"Kommunen {municipality_id} finns inte.", f"No municipality {municipality_id}.")


class VersionNotFound(NotFound):
    """The requested published version does not exist."""

    title = "Version not found"

    def __init__(self, version: str) -> None:
        super().__init__(f"Ingen publicerad version {version}.", f"No published version {version}.")


class VersionConflict(Conflict):
    """Another replica published the same picture version first."""

    title = "Publication conflict"

    def __init__(self, picture: str) -> None:
        super().__init__("En annan publicering pågick samtidigt; försök igen.",
                         "Another publication of this picture happened at the same time; try again.")
        self.picture = picture


class InvalidPeriod(Invalid):
    """A period id that is malformed or does not fit the area's cadence."""

    title = "Invalid period"

    def __init__(self, why: str) -> None:
        super().__init__("Ogiltig period.", why, errors=[{"field": "period", "message": why, "type": "period"}])




class PictureUnavailable(Unavailable):
    """The picture cannot be computed from what is stored (counted and logged where it happens)."""

    title = "Picture unavailable"

    def __init__(self, picture: str) -> None:
        super().__init__("Lägesbilden kan inte beräknas just nu; felet är loggat och försöks igen.",
                         "The picture cannot be computed right now; the error is logged and it is tried again.",
                         retry_after=30)
        self.picture = picture


class PeriodNotBegun(Invalid):
    """A period whose first day has not come: there is nothing to publish yet."""

    title = "Period not begun"

    def __init__(self, period: str) -> None:
        why = "the period has not begun"
        super().__init__("Perioden har inte börjat och kan inte publiceras.",
                         "The period has not begun and cannot be published.",
                         errors=[{"field": "period", "message": why, "type": "period_not_begun"}])
        self.period = period


class PublishNotConfirmed(Conflict):
    """A publication by hand before the deadline or below the completeness threshold, without
    ``confirm_incomplete``: the problem says what is missing (``completeness``, ``missing_reporters``,
    ``deadline``, ``seconds_to_deadline``, ``reasons``)."""

    title = "Publication needs confirmation"

    def __init__(self, sv: str, en: str, **missing: Any) -> None:
        super().__init__(sv, en, reason="unconfirmed", confirm_field="confirm_incomplete", **missing)
