"""axe-core in headless Chromium for the browser tests: a page's WCAG 2.1 AA violations, described."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Page

WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def _axe_violations(page: Page) -> list[dict[str, Any]]:
    from axe_playwright_python.sync_playwright import Axe

    options = {"runOnly": {"type": "tag", "values": WCAG_21_AA}, "resultTypes": ["violations"]}
    return Axe().run(page, options=options).response["violations"]  # type: ignore[no-any-return]


def axe_script() -> str:
    from axe_playwright_python.base import AXE_SCRIPT

    return AXE_SCRIPT


def _target(node: dict[str, Any]) -> str:
    # a target is a list of selectors, one per frame; a selector in a shadow root is itself a list
    return " ".join(t if isinstance(t, str) else " >>> ".join(t) for t in node["target"])


def _describe(violations: list[dict[str, Any]], targets: int = 4) -> str:
    lines = [f"{len(violations)} axe violation(s) of {', '.join(WCAG_21_AA)}:"]
    for v in violations:
        nodes = v["nodes"]
        more = f" (+{len(nodes) - targets} more)" if len(nodes) > targets else ""
        lines.append(f"- {v['id']} [{v['impact']}]: {v['help']} — "
                     f"{'; '.join(_target(n) for n in nodes[:targets])}{more} ({v['helpUrl']})")
    return "\n".join(lines)


def assert_no_axe_violations(page: Page) -> None:
    violations = _axe_violations(page)
    assert not violations, _describe(violations)
