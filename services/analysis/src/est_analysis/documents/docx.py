"""The strategic analysis as a Word document (DOCX), for steering groups who edit in Word: the same content
and charts as the HTML and PDF report (summary and key figures, areas by need, per area its persistent
problems, a chart per item, the flags by item and period, completeness, the measures in force with their
decisions and effect, and how the analysis is made).

Written with python-docx; the charts are drawn with matplotlib as PNG images (Word shows them everywhere,
LibreOffice too), in the report's colours.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from docx import Document
from docx.document import Document as DocumentObject
from docx.shared import Cm, Pt, RGBColor
from docx.table import Table as DocxTable

from est_analysis.documents import charts
from est_analysis.documents.report import (
    TEXT,
    action_plan,
    decisions,
    document_title,
    local_time,
    money,
    number,
    period_runs,
)

BRAND = RGBColor(0x1F, 0x5F, 0x8B)
WIDTH_CM = 16.5


def _label(entry: dict[str, Any], lang: str) -> str:
    return str(entry.get(f"label_{lang}") or entry.get("label_sv") or entry.get("item"))


def _short(period: str) -> str:
    return period.split("-", 1)[-1]


def _png(fig: Any) -> io.BytesIO:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    buf.seek(0)
    return buf


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def need_chart(ranked: Sequence[dict[str, Any]]) -> io.BytesIO:
    """Areas by need score, highest first, red where a persistent problem is."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * max(2, len(ranked)) + 0.4))
    names = [a["area_name"] for a in ranked][::-1]
    scores = [float(a["score"]) for a in ranked][::-1]
    colours = [("#c0392b" if a["persistent_problems"] else "#e9a23b" if a["score"] else "#9fb3c8")
               for a in ranked][::-1]
    ax.barh(names, scores, color=colours)
    for i, v in enumerate(scores):
        ax.text(v, i, f" {number(v)}", va="center")
    ax.set_xlim(0, max([*scores, 1.0]) * 1.15)
    return _png(fig)


def multiples_chart(periods: Sequence[str], series: Sequence[dict[str, Any]], lang: str) -> io.BytesIO:
    """One small chart per item on shared axes, markers coloured by flag, gaps where there was no picture."""
    plt = _pyplot()
    cols = 3 if len(series) > 4 else max(1, min(2, len(series)))
    rows = -(-len(series) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5, 1.5 * rows + 0.2), sharey=True, squeeze=False)
    vmax = charts.shared_max(series)
    xs = list(range(len(periods)))
    for k, ax in enumerate(axes.flat):
        if k >= len(series):
            ax.axis("off")
            continue
        sr = series[k]
        values = [p["value"] for p in sr["points"]]
        ax.plot(xs, [float("nan") if v is None else v for v in values], color="#1f5f8b", linewidth=1.2)
        for x, p in zip(xs, sr["points"], strict=False):
            if p["value"] is not None:
                ax.plot([x], [p["value"]], marker="o", markersize=3.5,
                        color=charts.FLAG_COLOURS.get(p.get("flag") or "", "#ffffff"), markeredgecolor="#1f5f8b")
        ax.set_title(sr["label"], fontsize=8, loc="left")
        ax.set_ylim(0, vmax * 1.05)
        marks = sorted({0, len(periods) // 2, len(periods) - 1}) if periods else []
        ax.set_xticks(marks, [_short(periods[i]) for i in marks])
    fig.tight_layout()
    return _png(fig)


def heat_chart(periods: Sequence[str], rows: Sequence[dict[str, Any]], lang: str) -> io.BytesIO:
    """Flags by item and period: a cell per period coloured by its flag, blank where no picture."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 0.28 * max(2, len(rows)) + 0.6))
    for r, row in enumerate(rows):
        for c, cell in enumerate(row["points"]):
            if cell["value"] is None:
                colour, edge = "#ffffff", "#cfd6de"
            else:
                colour, edge = charts.FLAG_COLOURS.get(cell.get("flag") or "", charts.NO_FLAG), "#ffffff"
            ax.add_patch(plt.Rectangle((c, r), 0.92, 0.85, facecolor=colour, edgecolor=edge))
    ax.set_xlim(0, max(1, len(periods)))
    ax.set_ylim(len(rows), 0)
    ax.set_yticks([r + 0.42 for r in range(len(rows))], [row["label"] for row in rows])
    step = max(1, len(periods) // 6)
    ax.set_xticks([c + 0.46 for c in range(0, len(periods), step)], [_short(p) for p in periods[::step]])
    ax.tick_params(length=0)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    return _png(fig)


def completeness_chart(per_period: Sequence[dict[str, Any]]) -> io.BytesIO:
    """Share of expected reporters who reported, per period (grey where there was no picture)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 1.2))
    xs = list(range(len(per_period)))
    ax.bar(xs, [100 * (p["rate"] or 0) if p["picture"] else 0 for p in per_period],
           color=["#2a9d8f" if p["picture"] else "#dfe7ee" for p in per_period])
    ax.set_ylim(0, 100)
    ax.set_yticks([0, 50, 100], ["0 %", "50 %", "100 %"])
    step = max(1, len(per_period) // 6)
    ax.set_xticks(xs[::step], [_short(p["period"]) for p in per_period[::step]])
    return _png(fig)


def _table(doc: DocumentObject, head: Sequence[str], rows: Sequence[Sequence[str]]) -> DocxTable:
    table = doc.add_table(rows=1, cols=len(head))
    table.style = "Light List Accent 1"
    for cell, text in zip(table.rows[0].cells, head, strict=True):
        cell.text = text
        for run in cell.paragraphs[0].runs:
            run.bold = True
    for values in rows:
        cells = table.add_row().cells
        for cell, text in zip(cells, values, strict=True):
            cell.text = text
    return table


def _heading(doc: DocumentObject, text: str, level: int) -> None:
    h = doc.add_heading(text, level=level)
    for run in h.runs:
        run.font.color.rgb = BRAND


def _muted(doc: DocumentObject, text: str) -> None:
    run = doc.add_paragraph().add_run(text)
    run.font.size = Pt(8.5)
    run.font.color.rgb = RGBColor(0x6B, 0x77, 0x85)


def _legend(doc: DocumentObject, t: dict[str, str]) -> None:
    """What the marker colours mean: a coloured square before each flag's name."""
    para = doc.add_paragraph()
    for flag in ("high", "rising", "new", "none"):
        colour = charts.FLAG_COLOURS.get(flag, charts.NO_FLAG).lstrip("#")
        mark = para.add_run("■ ")
        mark.font.color.rgb = RGBColor.from_string(colour.upper())
        label = para.add_run(f"{t['legend_' + flag]}   ")
        label.font.size = Pt(8.5)


def _measures(doc: DocumentObject, area: dict[str, Any], t: dict[str, str], lang: str, tz: str) -> None:
    names = {tr["item"]: _label(tr, lang) for tr in area["trends"]}
    rows = []
    for m in area["measures"]:
        labels = {code: str(lab.get(lang) or code) for code, lab in (m.get("item_labels") or {}).items()}
        said = decisions(m, t, lang=lang, tz=tz, items={**labels, **names})
        story = "; ".join(f"{d['day']} {d['action']}" + (f" {t['by']} {d['by']}" if d["by"] else "")
                          + (f": {', '.join(d['changes'])}" if d["changes"] else "")
                          + (f" ({t['reason']}: {d['reason']})" if d["reason"] else "") for d in said)
        res = m.get("resources") or {}
        resources = ", ".join(x for x in (
            f"{number(res['hours'], lang)} {t['hours']}" if res.get("hours") else "",
            f"{money(res['money_sek'], lang)} {t['sek']}" if res.get("money_sek") else "") if x)
        effect = "; ".join(
            f"{names.get(e['item'], e['item'])}: {number(e['before_mean'], lang, 2)} → "
            f"{number(e['after_mean'], lang, 2)} {t[e['direction']]}" if e.get("periods_compared")
            else f"{names.get(e['item'], e['item'])}: {t['insufficient_data']}" for e in m.get("effect", []))
        rows.append([f"{m['title']} ({t.get(m['status'], m['status'])}). {story}",
                     m.get("responsible_actor_name") or m["responsible_actor"],
                     f"{m['start']} – {m.get('end') or ''}", resources, effect])
    _table(doc, [t["measure"], t["responsible"], t["period"], t["resources"], t["effect"]], rows)


def render_docx(body: dict[str, Any], *, lang: str = "sv") -> bytes:
    """The analysis as a DOCX document in Swedish (default) or English."""
    lang = lang if lang in TEXT else "sv"
    t = TEXT[lang]
    tz = body.get("timezone") or "Europe/Stockholm"
    doc = Document()
    for section in doc.sections:
        section.left_margin = section.right_margin = Cm(2.2)
    title = document_title(body, t)
    doc.core_properties.title = f"{title} {body.get('municipality_name')} {body.get('period')}"
    doc.core_properties.language = lang
    _heading(doc, f"{title}: {body.get('municipality_name')} — {body.get('period')}", 0)
    _muted(doc, f"{t.get(body.get('kind', ''), '').capitalize()} {body.get('period_start')} – {body.get('period_end')}"
                f" · {t['compiled']} {local_time(str(body.get('compiled_at', '')), tz)} ({t['local_time']}) · "
                f"{t['revision']} {body.get('revision')}")

    _heading(doc, t["summary"], 1)
    doc.add_paragraph(str((body.get("summary") or {}).get(lang, "")))
    areas = body.get("areas", [])
    exp = sum(a["completeness"]["expected"] for a in areas)
    rec = sum(a["completeness"]["received"] for a in areas)
    ranked = body.get("areas_ranked", [])
    _table(doc, [t["key_persistent"], t["key_areas"], t["key_measures"], t["key_completeness"]],
           [[str(len(body.get("persistent_problems", []))),
             f"{sum(1 for a in ranked if a['persistent_problems'])} / {len(ranked)}",
             str(len(body.get("measures", []))), f"{round(100 * rec / exp)} %" if exp else "–"]])

    _heading(doc, t["ranking"], 1)
    if ranked:
        doc.add_picture(need_chart(ranked), width=Cm(WIDTH_CM))
    _table(doc, [t["rank"], t["area"], t["score"], t["persistent"], t["high"], t["other"]],
           [[str(r["rank"]), r["area_name"], str(r["score"]), str(r["persistent_problems"]), str(r["high_flags"]),
             str(r["other_flags"])] for r in ranked])
    _muted(doc, str((body.get("rule") or {}).get(f"need_score_{lang}", "")))

    for area in areas:
        _heading(doc, str(area["area_name"]), 1)
        periods = area.get("periods_begun", area["reporting_periods"])
        _muted(doc, f"{t['reporting_periods']}: {', '.join(period_runs(area['reporting_periods'], lang))} "
                    f"({len(area['reporting_periods'])}, {t.get(area.get('cadence', ''), area.get('cadence', ''))})")
        _heading(doc, t["persistent"], 2)
        if area["persistent_problems"]:
            _table(doc, [t["item"], t["kofn"], t["flagged_periods"], t["held_at"], t["ongoing"]],
                   [[_label(p, lang), f"{p['k']} / {p['n']}", ", ".join(period_runs(p["periods_flagged"], lang)),
                     ", ".join(period_runs(p["held_at"], lang)), t["yes"] if p["ongoing"] else t["no"]]
                    for p in area["persistent_problems"]])
        else:
            _muted(doc, t["no_problems"])
        _heading(doc, t["trends"], 2)
        series = [{"label": _label(tr, lang), "points": tr["points"]} for tr in area["trends"]]
        if series:
            doc.add_picture(multiples_chart(periods, series, lang), width=Cm(WIDTH_CM))
            _legend(doc, t)
            _heading(doc, t["heatmap"], 2)
            doc.add_picture(heat_chart(periods, series, lang), width=Cm(WIDTH_CM))
        else:
            _muted(doc, t["no_trends"])
        _heading(doc, t["completeness"], 2)
        comp = area["completeness"]
        if comp.get("per_period"):
            doc.add_picture(completeness_chart(comp["per_period"]), width=Cm(WIDTH_CM))
        rate = f" ({round(comp['rate'] * 100)} %)" if comp.get("rate") is not None else ""
        _muted(doc, f"{comp['pictures']} / {comp['periods']} {t['pictures']} · {comp['received']} / "
                    f"{comp['expected']} {t['received']}{rate}")
        _heading(doc, t["measures"], 2)
        if area["measures"]:
            _measures(doc, area, t, lang, tz)
        else:
            _muted(doc, t["no_measures"])

    if body.get("kind") == "year":
        _heading(doc, t["plan"], 1)
        doc.add_paragraph(f"{t['law']} {t['plan_intro']}")
        plan = action_plan(body, t, lang)
        if plan:
            _table(doc, [t["plan_what"], t["plan_where"], t["plan_problems"], t["responsible"], t["resources"],
                         t["plan_when"], t["plan_followup"], t["plan_effect"]],
                   [[r["what"], r["where"], r["problems"], r["who"], r["resources"], r["when"], r["followup"],
                     r["effect"]] for r in plan])
        else:
            _muted(doc, t["no_plan"])

    _heading(doc, t["rules"], 1)
    rule = body.get("rule") or {}
    for text in ((body.get("thursday_rule") or {}).get(lang, ""),
                 t["kofn_rule"].format(k=rule.get("k"), n=rule.get("n"), r=rule.get("resolve_after")),
                 rule.get(f"flagged_{lang}", ""), rule.get(f"need_score_{lang}", "")):
        if text:
            doc.add_paragraph(str(text), style="List Bullet")
    _muted(doc, f"EST Lägesbild · {body.get('id')}")
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()
