"""Headless Chromium for the report tests, and a tiny pure-Python PNG reader to judge screenshots."""

from __future__ import annotations

import os
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


def require_chromium() -> str:
    """The browser path; skips when it is missing outside CI, fails in CI."""
    if CHROMIUM.exists():
        return str(CHROMIUM)
    if os.environ.get("CI"):
        pytest.fail(f"CI needs {CHROMIUM} for the report rendering tests (apt-get install chromium)")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); the report is not rendered in a browser")


def chromium(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with a throw-away profile and the flags the project uses."""
    with tempfile.TemporaryDirectory(prefix="est-chromium-") as profile:
        cmd = [require_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def screenshot(url: str, out: Path, *, width: int = 1280, height: int = 2400) -> bytes:
    """A PNG of the page at ``url`` (file:// or http://)."""
    chromium(f"--screenshot={out}", f"--window-size={width},{height}", url)
    assert out.exists(), "chromium wrote no screenshot"
    return out.read_bytes()


def dump_dom(url: str) -> str:
    """The page's DOM after layout, as serialised by the browser."""
    return chromium("--dump-dom", url).stdout


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of raw pixel bytes) of an 8-bit RGB/RGBA PNG, unfiltered."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    width = height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8: pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and colour in (2, 6) and interlace == 0, "only 8-bit RGB(A), non-interlaced"
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat.append(chunk)
        elif kind == b"IEND":
            break
        pos += 12 + length
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1: (y + 1) * (stride + 1)])
        if f == 1:
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 255
        elif f == 2:
            line = bytearray(map(lambda a, b: (a + b) & 255, line, prev))
        elif f == 3:
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b = prev[i]
                c = prev[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, [r for r in rows] if channels == 3 else [_rgb(r) for r in rows]


def _rgb(row: bytes) -> bytes:
    return bytes(b for i, b in enumerate(row) if i % 4 != 3)


def colour_stats(data: bytes) -> dict[str, float]:
    """Distinct colours, share of non-background pixels and coloured (non-grey) pixels of a PNG."""
    width, height, rows = png_pixels(data)
    colours: set[bytes] = set()
    background = rows[-1][:3] if rows else b""
    painted = chroma = 0
    for row in rows:
        for i in range(0, len(row), 3):
            px = row[i:i + 3]
            colours.add(px)
            if px != background:
                painted += 1
                if max(px) - min(px) > 40:
                    chroma += 1
    total = max(1, width * height)
    return {"width": width, "height": height, "colours": len(colours), "painted": painted / total,
            "chroma": chroma / total}
