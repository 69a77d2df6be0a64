"""Exports as their readers open them: CSV read back with Python's csv module the way Swedish Excel splits it
(UTF-8 with BOM, ``;``), XLSX opened with openpyxl; a text that would run as a formula stays text."""

from __future__ import annotations

import csv
import io

import httpx
import openpyxl
import pytest
from est_shared import exports
from est_shared.exports import Column, Table
from est_shared.http import export_response, install_problem_handlers
from fastapi import FastAPI, Request
from hypothesis import given, settings
from hypothesis import strategies as st

COLUMNS = [Column("area", "Område", "Area"), Column("item", "Punkt", "Item"), Column("value", "Värde", "Value"),
           Column("flagged", "Flaggad", "Flagged")]
HOSTILE = ["=HYPERLINK(\"http://evil\",\"x\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


def _table(rows: list[dict[str, object]]) -> Table:
    return Table("Lägesbild v. 49", "Picture w. 49", COLUMNS, rows)


def _read_csv(data: bytes) -> list[list[str]]:
    assert data.startswith("\ufeff".encode())
    text = data.decode("utf-8-sig")
    assert "\r\n" in text
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))


def test_csv_is_what_swedish_excel_expects() -> None:
    data = exports.to_csv(_table([{"area": "Araby", "item": "Klotter; tagg", "value": 2.5, "flagged": True},
                                  {"area": "Öster", "item": "Skadegörelse", "value": 3, "flagged": False}]))
    rows = _read_csv(data)
    assert rows == [["Område", "Punkt", "Värde", "Flaggad"], ["Araby", "Klotter; tagg", "2,5", "ja"],
                    ["Öster", "Skadegörelse", "3", "nej"]]
    assert _read_csv(exports.to_csv(_table([{"value": 2.5}]), "en"))[1][2] == "2.5"


@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_formula_stays_text(hostile: str) -> None:
    rows = _read_csv(exports.to_csv(_table([{"area": hostile, "value": -4}])))
    assert rows[1][0] == "'" + hostile and rows[1][2] == "-4"  # a negative number is a number, not a formula
    wb = openpyxl.load_workbook(io.BytesIO(exports.to_xlsx(_table([{"area": hostile, "value": -4}]))))
    ws = wb.active
    assert ws is not None
    # an XML parser may read a CR as LF (the standard library's does, lxml does not)
    assert ws["A2"].value in (hostile, hostile.replace("\r", "\n")) and ws["A2"].data_type == "s"
    assert ws["C2"].value == -4


def test_xlsx_opens_with_headings_numbers_and_words() -> None:
    data = exports.to_xlsx(_table([{"area": "Araby", "item": "Klotter", "value": 2, "flagged": True}]), "sv")
    wb = openpyxl.load_workbook(io.BytesIO(data))
    ws = wb.active
    assert ws is not None and ws.title == "Lägesbild v. 49"
    assert [c.value for c in ws[1]] == ["Område", "Punkt", "Värde", "Flaggad"]
    assert [c.value for c in ws[2]] == ["Araby", "Klotter", 2, "ja"]
    assert ws["A1"].font.bold and ws.freeze_panes == "A2"


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40))
def test_any_text_reads_back(text: str) -> None:
    [_, row] = _read_csv(exports.to_csv(_table([{"area": text}])))
    assert row[0] == exports.neutralised(text)


def test_sheet_names_and_file_names_are_safe() -> None:
    assert exports.sheet_name("a/b:c*d?e[f]g\\h" * 3) == "a b c d e f g ha b c d e f g ha "[:31]
    assert exports.file_name("Lägesbild araby 2026-W49", "csv") == "L-gesbild-araby-2026-W49.csv"


async def test_format_is_asked_by_query_or_accept() -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/t")
    async def t(request: Request) -> object:
        return export_response(request, lambda: _table([{"area": "Araby", "value": 1}]), "tabell") or {"json": 1}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await c.get("/t")).json() == {"json": 1}
        r = await c.get("/t", params={"format": "csv"})
        assert r.headers["content-type"] == "text/csv; charset=utf-8"
        assert r.headers["content-disposition"] == 'attachment; filename="tabell.csv"'
        assert _read_csv(r.content)[0][0] == "Område"
        r = await c.get("/t", headers={"Accept": exports.XLSX_TYPE, "Accept-Language": "en-GB,en;q=0.8"})
        ws = openpyxl.load_workbook(io.BytesIO(r.content)).active
        assert ws is not None and ws["A1"].value == "Area"
        r = await c.get("/t", params={"format": "pdf"})
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
