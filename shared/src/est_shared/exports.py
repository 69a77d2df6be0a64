"""Tables people take out of the system: CSV as Swedish Excel opens it, and XLSX.

Every table a person sees can be downloaded: a ``Table`` names its columns in Swedish and English and
holds plain rows; ``to_csv`` and ``to_xlsx`` write it in the reader's language.

- CSV is UTF-8 with a byte-order mark (so Excel reads å, ä, ö right), ``;``-separated with CRLF line ends
  (Excel with Swedish regional settings expects ``;``, since the comma is the decimal sign), numbers with
  a decimal comma in Swedish.
- A text that a spreadsheet would run as a formula (beginning with ``=``, ``+``, ``-``, ``@``, a tab or a
  carriage return) is written with a leading apostrophe in CSV (the OWASP advice for CSV injection) and
  as a plain string cell in XLSX, never as a formula.
- XLSX through openpyxl: one sheet, a bold header row, frozen below it, column widths by content.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

Language = Literal["sv", "en"]
Format = Literal["csv", "xlsx"]

CSV_TYPE = "text/csv; charset=utf-8"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MEDIA_TYPES: dict[str, str] = {"csv": CSV_TYPE, "xlsx": XLSX_TYPE}

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SHEET_BAD = re.compile(r"[\[\]:*?/\\]")


@dataclass(frozen=True)
class Column:
    """One column: the key of its value in each row and its heading in Swedish and English."""

    key: str
    sv: str
    en: str

    def heading(self, lang: Language) -> str:
        return self.sv if lang == "sv" else self.en


@dataclass(frozen=True)
class Table:
    """A table to export: its title (the sheet's name), columns and rows (mappings by column key)."""

    title_sv: str
    title_en: str
    columns: Sequence[Column]
    rows: Sequence[Mapping[str, Any]] = field(default_factory=list)

    def title(self, lang: Language) -> str:
        return self.title_sv if lang == "sv" else self.title_en


def _plain(value: Any, lang: Language) -> Any:
    """A cell's value as a spreadsheet holds it: numbers stay numbers, yes/no and lists become words."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return ("ja" if value else "nej") if lang == "sv" else ("yes" if value else "no")
    if isinstance(value, int | float):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        text = value.get(lang) or value.get("sv") or value.get("en")
        return "" if text is None else str(text)
    if isinstance(value, list | tuple | set):
        return ", ".join(str(_plain(v, lang)) for v in value)
    return str(value)


def neutralised(text: str) -> str:
    """A text a spreadsheet will show as text: a leading apostrophe before what would start a formula."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_cell(value: Any, lang: Language) -> str:
    v = _plain(value, lang)
    if isinstance(v, bool):  # pragma: no cover - _plain turns booleans into words
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        text = f"{v:.10g}" if not v.is_integer() else str(int(v))
        return text.replace(".", ",") if lang == "sv" else text
    return neutralised(v)


def to_csv(table: Table, lang: Language = "sv") -> bytes:
    """The table as CSV bytes (UTF-8 with BOM, ``;``, CRLF), headings in ``lang``."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=";", lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow([neutralised(c.heading(lang)) for c in table.columns])
    for row in table.rows:
        writer.writerow([_csv_cell(row.get(c.key), lang) for c in table.columns])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def sheet_name(title: str) -> str:
    """A sheet name Excel accepts: at most 31 characters, none of ``[]:*?/\\``."""
    return (_SHEET_BAD.sub(" ", title).strip() or "Tabell")[:31]


def to_xlsx(table: Table, lang: Language = "sv") -> bytes:
    """The table as an XLSX workbook with one sheet (texts as string cells, never formulas)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet_name(table.title(lang)))
    widths = [len(c.heading(lang)) for c in table.columns]
    rows: list[list[Any]] = []
    for row in table.rows:
        values = [_plain(row.get(c.key), lang) for c in table.columns]
        for i, v in enumerate(values):
            widths[i] = max(widths[i], min(60, len(str(v))))
        rows.append(values)
    for i, w in enumerate(widths):
        ws.column_dimensions[_column_letter(i)].width = w + 2
    ws.freeze_panes = "A2"
    bold = Font(bold=True)
    header = []
    for c in table.columns:
        cell = WriteOnlyCell(ws, value=c.heading(lang))
        cell.font = bold
        cell.data_type = "s"
        header.append(cell)
    ws.append(header)
    for values in rows:
        out = []
        for v in values:
            cell = WriteOnlyCell(ws, value=v)
            if isinstance(v, str):
                cell.data_type = "s"  # "=1+1" stays the text "=1+1"
            out.append(cell)
        ws.append(out)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _column_letter(index: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(index + 1)


def render(table: Table, fmt: Format, lang: Language = "sv") -> bytes:
    """The table in the asked format."""
    return to_csv(table, lang) if fmt == "csv" else to_xlsx(table, lang)


def wanted_format(format_param: str | None, accept: str | None) -> Format | None:
    """The export format a request asks for: ``?format=csv|xlsx`` first, else the Accept header; None for JSON.

    An unknown ``format`` value is a ValueError (the caller answers 400/422)."""
    if format_param:
        f = format_param.strip().lower()
        if f == "json":
            return None
        if f in MEDIA_TYPES:
            return f  # type: ignore[return-value]
        raise ValueError(f)
    for part in (accept or "").split(","):
        media = part.split(";")[0].strip().lower()
        if media == "text/csv":
            return "csv"
        if media == XLSX_TYPE:
            return "xlsx"
        if media in ("application/json", "*/*", "application/*"):
            return None
    return None


def file_name(stem: str, fmt: Format) -> str:
    """A download's file name: the stem in safe characters and the format's extension."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-") or "export"
    return f"{safe[:100]}.{fmt}"
