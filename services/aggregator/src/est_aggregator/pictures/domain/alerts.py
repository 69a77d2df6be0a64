"""Edge-triggered alerts: which open alerts a picture raises or resolves, and their words."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from est_shared.events import ItemSummary

from est_aggregator.pictures.domain.analysis import fmt


def alert_transitions(open_alerts: Mapping[str, str], flags: Mapping[str, str | None],
                      ) -> tuple[dict[str, str], dict[str, str]]:
    """Edge-triggered alerts: (item → kind to raise, item → open kind to resolve).

    An item raises when it is flagged and has no open alert; an ongoing condition (still flagged,
    whatever the flag) raises nothing; an item with an open alert that is no longer flagged resolves.
    """
    raise_ = {item: f"flag:{flag}" for item, flag in flags.items() if flag and item not in open_alerts}
    resolve = {item: kind for item, kind in open_alerts.items() if not flags.get(item)}
    return raise_, resolve


def carried_alerts(open_alerts: Collection[str], continues: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    """Open alerts of earlier codes that an item of the picture continues (``domain.lineage``), as
    (earlier code, item): the alert goes on as the item's, so a rename neither resolves it nor raises a new
    one. A split's alert goes to its first successor without an open alert of its own."""
    taken = set(open_alerts)
    out: list[tuple[str, str]] = []
    for old in sorted(open_alerts):
        if old in continues:  # an item of the picture itself
            continue
        heir = next((code for code, olds in continues.items() if old in olds and code not in taken), None)
        if heir is not None:
            taken.add(heir)
            out.append((old, heir))
    return out


def alert_message(kind: str, summary: ItemSummary | None, item: str, *, area_name: str, period: str,
                  resolved: bool) -> dict[str, str]:
    """Swedish and English text of an alert."""
    label_sv = summary.label_sv if summary and summary.label_sv else item
    label_en = summary.label_en if summary and summary.label_en else item
    what = kind.removeprefix("flag:")
    sv_kind = {"high": "högt läge", "rising": "ökande", "new": "nytt problem"}.get(what, what)
    en_kind = {"high": "high level", "rising": "rising", "new": "new problem"}.get(what, what)
    if resolved:
        return {"sv": f"{label_sv} i {area_name} är inte längre flaggat ({sv_kind}) från {period}.",
                "en": f"{label_en} in {area_name} is no longer flagged ({en_kind}) as of {period}."}
    value = summary.value if summary else None
    return {"sv": f"{label_sv} i {area_name} {period}: {sv_kind} (värde {fmt(value, 'sv')}).",
            "en": f"{label_en} in {area_name} {period}: {en_kind} (value {fmt(value, 'en')})."}


def severity(kind: str) -> str:
    """Alert severity by kind: a high level is a warning; rising and new are information."""
    return {"flag:high": "warning"}.get(kind, "info")
