"""Inline SVG charts for the readable report, generated in Python (no JavaScript, no external assets)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

PALETTE = ("#1f5f8b", "#c0392b", "#2a9d8f", "#e9a23b", "#6c4f9e", "#8c6d46", "#d35d9b", "#4a7c59")
FLAG_COLOURS = {"high": "#c0392b", "rising": "#e67e22", "new": "#2e86c1"}
NO_FLAG = "#dfe7ee"
ZERO = "#f3f5f7"
DIGIT = 5.6  # the advance of a digit at font-size 10 (tabular figures), for text placed digit by digit
FONT = "font-family='system-ui,-apple-system,Segoe UI,Roboto,sans-serif'"


def _short(period: str) -> str:
    """``2026-W48`` -> ``W48``."""
    return period.split("-", 1)[-1]


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:.1f}"


def shared_max(series: Sequence[dict[str, Any]]) -> float:
    """The top of a shared value axis for several small charts: the highest value, rounded up (at least 1)."""
    values = [p["value"] for s in series for p in s["points"] if p["value"] is not None]
    return float(math.ceil(max([*values, 1.0])))


def _grid(x1: float, x2: float, ys: Sequence[float]) -> str:
    """A chart's horizontal grid lines as one path."""
    return "<path d='" + "".join(f"M{x1},{yy:.1f}H{x2}" for yy in ys) + "' stroke='#e5e9ee'/>"


def _say(words: Mapping[str, str] | None, key: str) -> str:
    """What a reader is told for a period id or a flag (``words``: dated weeks, flags in their language)."""
    return (words or {}).get(key, key)


def small_multiple(periods: Sequence[str], series: dict[str, Any], *, vmax: float, width: int = 300,
                   height: int = 130, words: Mapping[str, str] | None = None, tips: bool = True) -> Markup:
    """One item's values over periods on a shared axis (``vmax``), markers coloured by flag, gaps where no
    picture. It has no legend: the figure around it carries the item's name, so no label is ever cut.
    ``tips=False`` (print): no tooltip per marker, and the markers of one colour are one path."""
    left, right, top, bottom = 26, 8, 8, 20
    pw, ph = width - left - right, height - top - bottom
    n = max(1, len(periods) - 1)

    def x(i: int) -> float:
        return left + pw * i / n if len(periods) > 1 else left + pw / 2

    def y(v: float) -> float:
        return top + ph - ph * v / vmax

    label = escape(str(series["label"]))
    out = [f"<svg class='multiple' xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' width='100%' "
           f"role='img' aria-label='{label}' {FONT} font-size='10'>"]
    out.append(_grid(left, width - right, [y(v) for v in (0.0, vmax / 2, vmax)]))
    for v in (0.0, vmax / 2, vmax):
        out.append(f"<text x='{left - 4}' y='{y(v) + 3:.1f}' text-anchor='end' fill='#6b7785'>{_fmt(v)}</text>")
    marks = {0, len(periods) // 2, len(periods) - 1} if periods else set()
    for i in sorted(marks):
        out.append(f"<text x='{x(i):.1f}' y='{height - 5}' text-anchor='middle' fill='#6b7785'>"
                   f"{escape(_short(periods[i]))}</text>")
    segments: list[list[str]] = [[]]
    for i, p in enumerate(series["points"]):
        if p["value"] is None:
            segments.append([])
        else:
            segments[-1].append(f"{x(i):.1f},{y(p['value']):.1f}")
    for seg in segments:
        if seg:
            out.append(f"<polyline points='{' '.join(seg)}' fill='none' stroke='{PALETTE[0]}' stroke-width='2' "
                       "stroke-linejoin='round' stroke-linecap='round'/>")
    if not tips:
        dots: dict[str, list[str]] = {}
        for i, p in enumerate(series["points"]):
            if p["value"] is not None:
                r = 3.4 if p.get("flag") else 2.2
                dots.setdefault(FLAG_COLOURS.get(p.get("flag") or "", "#ffffff"), []).append(
                    f"M{x(i) - r:.1f},{y(p['value']):.1f}a{r},{r} 0 1,0 {2 * r:.1f},0a{r},{r} 0 1,0 {-2 * r:.1f},0")
        out += [f"<path d='{''.join(d)}' fill='{fill}' stroke='{PALETTE[0]}' stroke-width='1.2'/>"
                for fill, d in dots.items()]
        out.append("</svg>")
        return Markup("".join(out))
    for i, p in enumerate(series["points"]):
        if p["value"] is None:
            continue
        fill = FLAG_COLOURS.get(p.get("flag") or "", "#ffffff")
        flag = f" ({escape(_say(words, p['flag']))})" if p.get("flag") else ""
        out.append(f"<circle cx='{x(i):.1f}' cy='{y(p['value']):.1f}' r='{3.4 if p.get('flag') else 2.2}' "
                   f"fill='{fill}' stroke='{PALETTE[0]}' stroke-width='1.2'><title>{label} "
                   f"{escape(_say(words, p['period']))}: {_fmt(p['value'])}{flag}</title></circle>")
    out.append("</svg>")
    return Markup("".join(out))


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1].rstrip(" ,(") + "…"


def heat_map(periods: Sequence[str], rows: Sequence[dict[str, Any]], *, width: int = 680,
             missing_label: str = "", words: Mapping[str, str] | None = None, tips: bool = True) -> Markup:
    """Items × periods; each cell coloured by the item's flag that period and labelled with its value.
    ``tips=False`` (print): no tooltips, and the cells of one colour are one path."""
    label_w, top, cell_h = 200, 22, 20
    cw = max(12.0, (width - label_w - 4) / max(1, len(periods)))
    height = top + cell_h * len(rows) + 6
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' width='100%' role='img' "
           f"{FONT} font-size='10'>"]
    step = 1 if cw >= 26 else max(1, int(26 // cw) + 1)
    for i, p in enumerate(periods):
        if i % step == 0:
            tip = f"<title>{escape(_say(words, p))}</title>" if tips else ""
            out.append(f"<text x='{label_w + cw * i + cw / 2:.1f}' y='14' text-anchor='middle' fill='#6b7785'>"
                       f"{tip}{escape(_short(p))}</text>")
    cells: dict[tuple[str, str], list[str]] = {}
    under_labels = len(out)  # where the cell paths go when ``tips`` is off: under every label
    for r, row in enumerate(rows):
        yy = top + cell_h * r
        tip = f"<title>{escape(str(row['label']))}</title>" if tips else ""
        out.append(f"<text x='{label_w - 8}' y='{yy + 14}' text-anchor='end' fill='#33404d' font-size='11'>"
                   f"{tip}{escape(_clip(str(row['label']), 32))}</text>")
        row_text: dict[str, tuple[list[str], list[str]]] = {}
        for i, cell in enumerate(row["cells"]):
            xx = label_w + cw * i
            if cell["value"] is None:
                fill, text_fill = "#ffffff", "#9aa5b1"
                extra = " stroke='#cfd6de' stroke-dasharray='2 2'"
            else:
                fill = FLAG_COLOURS.get(cell.get("flag") or "", NO_FLAG if cell["value"] else ZERO)
                text_fill = "#ffffff" if cell.get("flag") else "#33404d"
                extra = ""
            if tips:
                tip = (f"{row['label']} {_say(words, cell['period'])}: "
                       f"{missing_label if cell['value'] is None else _fmt(cell['value'])}"
                       f"{' (' + _say(words, cell['flag']) + ')' if cell.get('flag') else ''}")
                out.append(f"<rect x='{xx + 1:.1f}' y='{yy + 1}' width='{cw - 2:.1f}' height='{cell_h - 2}' "
                           f"rx='3' fill='{fill}'{extra}><title>{escape(tip)}</title></rect>")
            else:
                cells.setdefault((fill, extra), []).append(f"M{xx + 1:.1f},{yy + 1}h{cw - 2:.1f}v{cell_h - 2}"
                                                           f"h{2 - cw:.1f}z")
            if cell["value"] is not None and cw >= 20 and cell["value"]:
                if tips:
                    out.append(f"<text x='{xx + cw / 2:.1f}' y='{yy + 14}' text-anchor='middle' fill='{text_fill}'>"
                               f"{_fmt(cell['value'])}</text>")
                else:
                    digits = _fmt(cell["value"])
                    left = xx + cw / 2 - DIGIT * len(digits) / 2
                    row_text.setdefault(text_fill, ([], []))[0].extend(
                        f"{left + DIGIT * k:.1f}" for k in range(len(digits)))
                    row_text[text_fill][1].append(digits)
        for fill, (xs, texts) in row_text.items():  # one text per row and colour, each digit placed
            out.append(f"<text x='{' '.join(xs)}' y='{yy + 14}' fill='{fill}'>{''.join(texts)}</text>")
    out[under_labels:under_labels] = [f"<path d='{''.join(d)}' fill='{fill}'{extra}/>"
                                      for (fill, extra), d in cells.items()]
    out.append("</svg>")
    return Markup("".join(out))


def bars(rows: Sequence[tuple[str, float, str]], *, width: int = 680, vmax: float | None = None,
         fmt: str = "{:.0f}") -> Markup:
    """Horizontal bars: (label, value, colour)."""
    label_w, bar_h, gap = 170, 18, 8
    height = (bar_h + gap) * len(rows) + 4
    top = max([vmax or 0.0, *(v for _, v, _ in rows), 1.0])
    pw = width - label_w - 60
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' width='100%' role='img' "
           f"{FONT} font-size='11'>"]
    for i, (label, v, colour) in enumerate(rows):
        yy = i * (bar_h + gap) + 2
        w = pw * v / top
        out.append(f"<text x='{label_w - 8}' y='{yy + 13}' text-anchor='end' fill='#33404d'>"
                   f"{escape(_clip(label, 26))}</text>"
                   f"<rect x='{label_w}' y='{yy}' width='{pw}' height='{bar_h}' rx='4' fill='#eef2f6'/>"
                   f"<rect x='{label_w}' y='{yy}' width='{max(w, 0):.1f}' height='{bar_h}' rx='4' fill='{colour}'/>"
                   f"<text x='{label_w + max(w, 0) + 6:.1f}' y='{yy + 13}' fill='#33404d'>"
                   f"{escape(fmt.format(v))}</text>")
    out.append("</svg>")
    return Markup("".join(out))


def completeness_columns(per_period: Sequence[dict[str, Any]], *, width: int = 680, height: int = 90,
                         tips: bool = True) -> Markup:
    """Reporting rate per period as columns (grey dashed where no picture); ``tips=False`` (print): no tooltips."""
    left, bottom, top = 34, 18, 8
    ph = height - top - bottom
    cw = (width - left - 4) / max(1, len(per_period))
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' width='100%' role='img' "
           f"{FONT} font-size='10'>"]
    out.append(_grid(left, width - 4, [top + ph - ph * frac for frac in (0.0, 0.5, 1.0)]))
    for frac in (0.0, 0.5, 1.0):
        yy = top + ph - ph * frac
        out.append(f"<text x='{left - 4}' y='{yy + 3:.1f}' text-anchor='end' fill='#6b7785'>{int(frac * 100)}%</text>")
    step = 1 if cw >= 26 else max(1, int(26 // cw) + 1)
    for i, p in enumerate(per_period):
        xx = left + cw * i
        rate = p.get("rate")
        if not p.get("picture"):
            out.append(f"<rect x='{xx + 2:.1f}' y='{top}' width='{cw - 4:.1f}' height='{ph}' fill='none' "
                       "stroke='#cfd6de' stroke-dasharray='2 2'/>")
        elif rate is not None:
            h = ph * min(1.0, rate)
            colour = "#2a9d8f" if rate >= 0.8 else ("#e9a23b" if rate >= 0.5 else "#c0392b")
            out.append(f"<rect x='{xx + 2:.1f}' y='{top + ph - h:.1f}' width='{cw - 4:.1f}' height='{h:.1f}' "
                       f"rx='2' fill='{colour}'>" + (f"<title>{escape(p['period'])}: {p['received']}/"
                                                     f"{p['expected']}</title>" if tips else "") + "</rect>")
        if i % step == 0:
            out.append(f"<text x='{xx + cw / 2:.1f}' y='{height - 4}' text-anchor='middle' fill='#6b7785'>"
                       f"{escape(_short(p['period']))}</text>")
    out.append("</svg>")
    return Markup("".join(out))
