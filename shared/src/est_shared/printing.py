"""The port through which a document (a strategic report, a printable picture) is printed to PDF;
``est_shared.adapters.browser`` implements it with headless Chromium."""

from __future__ import annotations

from typing import Protocol


class PrintFailed(Exception):
    """The printer ran but did not produce a PDF (crash, timeout, no output)."""


class PrintingOff(Exception):
    """No printer is configured or found: PDFs are turned off, ``report.html`` has the same content."""


class Printer(Protocol):
    """Prints one self-contained HTML document to PDF."""

    def available(self) -> bool:
        """Whether a printer is configured and found."""
        ...

    async def pdf(self, html: str) -> bytes:
        """The document as PDF; raises ``PrintingOff`` or ``PrintFailed`` (or ``OSError``)."""
        ...


class NoPrinter:
    """The printer of a process that prints nothing (the rebuild, tests of the rules)."""

    def available(self) -> bool:
        return False

    async def pdf(self, html: str) -> bytes:
        raise PrintingOff
