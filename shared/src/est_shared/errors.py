"""Domain errors: what a rule refused, in Swedish and English, without a word of HTTP.

Rules raise the kind of refusal that fits (``Invalid``, ``NotFound``, ``Forbidden``, ``Conflict``,
``Unavailable``, …), usually as a named subclass of their service (``class AreaNotFound(NotFound)``).
One map at the edge turns a kind into a status and a problem+json answer
(``est_shared.http.install_problem_handlers``); on the bus a consumer's ``Invalid`` is a poison event.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

Kind = Literal["malformed", "unauthorized", "forbidden", "not_found", "conflict", "too_large", "invalid",
               "unavailable"]


class DomainError(Exception):
    """A refusal with its reason for people (``sv``, ``en``), the failing fields and a metric reason."""

    kind: ClassVar[Kind] = "invalid"
    title: ClassVar[str] = "Invalid request"

    def __init__(self, sv: str, en: str, *, errors: list[dict[str, Any]] | None = None, reason: str | None = None,
                 retry_after: int | None = None, **extra: Any) -> None:
        super().__init__(en)
        self.sv, self.en, self.errors, self.retry_after, self.extra = sv, en, errors, retry_after, extra
        self.reason = reason or self.kind

    @property
    def detail(self) -> str:
        """Swedish first, then English, as every answer of the system says it."""
        return f"{self.sv} / {self.en}"


class Malformed(DomainError):
    """The input cannot even be read (not JSON, not YAML, an unreadable file)."""

    kind = "malformed"
    title = "Malformed request"


class Unauthorized(DomainError):
    """No valid credential."""

    kind = "unauthorized"
    title = "Unauthorized"


class Forbidden(DomainError):
    """The caller may not do this (role, area, municipality)."""

    kind = "forbidden"
    title = "Forbidden"


class NotFound(DomainError):
    """What was asked for does not exist (or the caller may not know that it does)."""

    kind = "not_found"
    title = "Not found"


class Conflict(DomainError):
    """The request contradicts what is already stored (an id used with other content, a concurrent change)."""

    kind = "conflict"
    title = "Conflict"


class TooLarge(DomainError):
    """The input is larger than the rule allows."""

    kind = "too_large"
    title = "Too large"


class Invalid(DomainError):
    """Readable but not acceptable: the fields named in ``errors`` break a rule."""

    kind = "invalid"
    title = "Invalid request"


class TextRefused(Invalid):
    """Free text that looks like personal data or holds control characters (``errors`` name each field),
    as ``est_shared.freetext`` finds it: one answer for every service that guards text leaving its author."""

    title = "Invalid text"

    def __init__(self, errors: list[dict[str, str]], *, reason: str | None = None) -> None:
        fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
        super().__init__(f"Fritext får inte innehålla personuppgifter eller kontrolltecken ({fields}).",
                         f"Free text must not contain personal data or control characters ({fields}).",
                         errors=list(errors), reason=reason)


class Unavailable(DomainError):
    """Something the rule needs does not answer now; the same request may work later (``retry_after``)."""

    kind = "unavailable"
    title = "Service unavailable"
