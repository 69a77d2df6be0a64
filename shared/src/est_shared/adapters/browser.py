"""Headless Chromium as a print engine: a readable document as PDF (no Python package needed).

``ChromiumPrinter`` is the ``est_shared.printing.Printer`` of the services that print: it looks the binary up
for every document (an operator may install or remove a browser while the service runs) and lets at most
``concurrency`` browsers run at once, since each one is a whole Chromium process.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path

from est_shared.printing import PrintFailed, PrintingOff

log = logging.getLogger("est.printing")

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
OFF = ("", "none", "off", "false", "disabled")


class BrowserFailed(PrintFailed):
    """The browser ran but did not produce a PDF (crash, timeout)."""


def find_browser(setting: str) -> str | None:
    """The browser binary to use: 'auto' searches PATH, a path or name is used as given, 'none' disables."""
    value = (setting or "").strip()
    if value.lower() in OFF:
        return None
    if value.lower() == "auto":
        return next((p for name in CANDIDATES if (p := shutil.which(name))), None)
    path = shutil.which(value)
    return path if path else None


def headless_args(user_data_dir: Path) -> list[str]:
    """Flags for a quiet, offline, sandbox-free headless run (containers have no user namespaces)."""
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--disable-dev-shm-usage", "--mute-audio", f"--user-data-dir={user_data_dir}"]


async def run_browser(binary: str, args: list[str], *, timeout: float) -> None:
    """Run the browser once; kill it (and only it) if it outlives ``timeout`` seconds."""
    proc = await asyncio.create_subprocess_exec(binary, *args, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                                                start_new_session=True)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError):
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        tail = (err or b"").decode(errors="replace").strip().splitlines()[-3:]
        raise BrowserFailed(f"browser exited with {proc.returncode}: {' | '.join(tail)}")


async def html_to_pdf(html: str, *, binary: str, timeout: float = 60.0) -> bytes:
    """Print a self-contained HTML document to PDF (A4, backgrounds, no header/footer)."""
    with tempfile.TemporaryDirectory(prefix="est-pdf-") as tmp:
        page, pdf = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        page.write_text(html, encoding="utf-8")
        args = [*headless_args(Path(tmp) / "profile"), f"--print-to-pdf={pdf}", "--no-pdf-header-footer",
                "--print-to-pdf-no-header", page.as_uri()]
        try:
            await run_browser(binary, args, timeout=timeout)
        except TimeoutError as exc:
            raise BrowserFailed(f"browser did not finish within {timeout:.0f} s") from exc
        data = pdf.read_bytes() if pdf.exists() else b""
    if not data.startswith(b"%PDF"):
        raise BrowserFailed("browser produced no PDF")
    return data


class ChromiumPrinter:
    """Prints with the browser ``setting`` names (``EST_ANALYSIS_BROWSER``), within ``timeout`` seconds."""

    def __init__(self, setting: str, *, timeout: float, concurrency: int) -> None:
        self.setting, self.timeout = setting, timeout
        self._printing = asyncio.Semaphore(max(1, concurrency))

    def available(self) -> bool:
        return find_browser(self.setting) is not None

    async def pdf(self, html: str) -> bytes:
        binary = find_browser(self.setting)
        if binary is None:
            raise PrintingOff
        async with self._printing:
            return await html_to_pdf(html, binary=binary, timeout=self.timeout)
