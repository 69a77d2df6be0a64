"""What a key function's publication of a picture must confirm, and the badge a published picture carries.

A picture goes to every subscriber, who takes it for the week's situation. Published before its
deadline, or with fewer of the expected reports than the municipality's threshold, it may show a
calmer week than there was: the key function then confirms that it is to be sent as it is. A period
that has not begun has nothing to show and is never published. Publishing at the deadline has its own
rule (at least one report) and no confirmation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from est_shared.events import Completeness
from est_shared.org import OrgSnapshot
from est_shared.periods import Period

from est_aggregator.pictures.domain.reports import as_utc


def period_begun(period: Period, now: datetime, timezone: str) -> bool:
    """Whether the period's first day has begun in the municipality's timezone."""
    return as_utc(now) >= as_utc(period.start_at(timezone))


def completeness_threshold(org: OrgSnapshot, municipality_id: str, default: float) -> float:
    """The municipality's own publishing threshold (``publish_min_completeness`` in the organisation file),
    else the service's default."""
    muni = org.municipalities.get(municipality_id)
    own = muni.publish_min_completeness if muni is not None else None
    return default if own is None else own


@dataclass(frozen=True)
class PublishGate:
    """A picture about to be published by hand, against its deadline and the completeness threshold."""

    completeness: Completeness
    threshold: float
    deadline: datetime | None
    now: datetime

    @property
    def before_deadline(self) -> bool:
        return self.deadline is not None and as_utc(self.now) < as_utc(self.deadline)

    @property
    def below_threshold(self) -> bool:
        return self.completeness.rate < self.threshold

    @property
    def needs_confirmation(self) -> bool:
        return self.before_deadline or self.below_threshold

    @property
    def seconds_left(self) -> int | None:
        """Whole seconds to the deadline (None without one, 0 once it passed)."""
        if self.deadline is None:
            return None
        return max(0, int((as_utc(self.deadline) - as_utc(self.now)).total_seconds()))

    @property
    def reasons(self) -> list[str]:
        return [name for name, yes in (("before_deadline", self.before_deadline),
                                       ("below_threshold", self.below_threshold)) if yes]


def duration_text(seconds: int, lang: str) -> str:
    """``2 dygn 4 tim`` / ``2 days 4 h``: days and hours, or hours and minutes under a day."""
    days, rest = divmod(seconds, 86400)
    hours, minutes = rest // 3600, rest % 3600 // 60
    if days:
        return f"{days} dygn {hours} tim" if lang == "sv" else f"{days} days {hours} h"
    return f"{hours} tim {minutes} min" if lang == "sv" else f"{hours} h {minutes} min"


def gate_texts(gate: PublishGate) -> tuple[str, str]:
    """Why the publication needs a confirmation, Swedish and English."""
    c = gate.completeness
    pct, limit = round(c.rate * 100), round(gate.threshold * 100)
    sv = [f"{c.received} av {c.expected} förväntade {'rapportör' if c.expected == 1 else 'rapportörer'} har "
          f"rapporterat ({pct} %, gränsen är {limit} %)"]
    en = [f"{c.received} of {c.expected} expected {'reporter has' if c.expected == 1 else 'reporters have'} "
          f"reported ({pct} %, the threshold is {limit} %)"]
    if gate.before_deadline and gate.seconds_left is not None:
        sv.append(f"{duration_text(gate.seconds_left, 'sv')} kvar till deadline")
        en.append(f"{duration_text(gate.seconds_left, 'en')} left to the deadline")
    return ("Lägesbilden är inte klar att skickas: " + "; ".join(sv)
            + ". Bekräfta med confirm_incomplete för att publicera ändå.",
            "The picture is not ready to be sent: " + "; ".join(en)
            + ". Confirm with confirm_incomplete to publish it anyway.")


def badge(completeness: Completeness, threshold: float) -> dict[str, Any]:
    """The completeness badge of a published picture: all expected reports in, and the threshold it met or not."""
    return {"complete": completeness.rate >= 1.0, "threshold": threshold,
            "below_threshold": completeness.rate < threshold}
