"""Fixtures for the browser tests of the web front end: the whole system started with ``est up``,
headless Chromium from Debian (``/usr/bin/chromium``) driven by Playwright, and signing in as people do: the
personal-token form, or the demo's picker on the demo system.

What costs time is shared where no test can see another's doings: one Chromium per module (a fresh browser
context, its own storage and cookies, for every page a test opens; not per package, as Playwright's sync API
holds an event loop that the async tests between the browser modules would find running), one demo system for
the modules that read only what the demo seeded or what they made themselves by name (the steering tests have
one of their own), and each test's own fresh system of the test organisation, started while the test before
it runs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.support import System, e2e_org, spawn_system, start_system

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = os.environ.get("EST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def chromium() -> str:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)")
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    return CHROMIUM


def _own_system(item: pytest.Item) -> bool:
    """Whether the test takes this package's ``system`` (not one of its module's own)."""
    defs = getattr(item, "_fixtureinfo", None)
    found = defs.name2fixturedefs.get("system") if defs else None
    return found is not None and len(found) > 0 and not found[-1].baseid.endswith(".py")


@pytest.hookimpl(trylast=True)  # after -k/-m have deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    config.stash[_WANTED] = sum(_own_system(item) for item in items)


_WANTED = pytest.StashKey[int]()


class _Systems:
    """Systems of the test organisation, one per test: the next test's ``est up`` is started as soon as the
    current one runs, so a test waits for its system only if the test before it was quicker than a start."""

    def __init__(self, root: Path, wanted: int) -> None:
        self.root, self.wanted, self.made = root, wanted, 0
        self.next: System | None = None

    def _spawn(self) -> System:
        self.made += 1
        base = self.root / f"system-{self.made}"
        base.mkdir()
        org = base / "org.yaml"
        org.write_text(yaml.safe_dump(e2e_org(), allow_unicode=True), encoding="utf-8")
        return spawn_system(base / "var", org)

    def take(self) -> System:
        s, self.next = self.next or self._spawn(), None
        self.wanted -= 1
        try:
            s.ready(90)
        finally:
            if self.wanted > 0:
                self.next = self._spawn()
        return s

    def close(self) -> None:
        if self.next:
            self.next.stop()


@pytest.fixture(scope="package")
def _systems(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Systems]:
    systems = _Systems(tmp_path_factory.mktemp("systems"), request.config.stash.get(_WANTED, 1))
    yield systems
    systems.close()


@pytest.fixture
def system(_systems: _Systems) -> Iterator[System]:
    """A fresh system of ``e2e_org`` (``est up``) of the test's own."""
    s = _systems.take()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    """Chromium for the module; every page ``sign_in`` opens is in a new context of its own."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            yield b
        finally:
            b.close()


# every Content-Security-Policy violation of a document, kept across reloads (the console keeps them too)
_RECORD_CSP = """document.addEventListener("securitypolicyviolation", (e) => console.error(
    `CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`));"""


def csp_violations(page: Page) -> list[str]:
    """The CSP violations and script errors a page signed in with ``sign_in`` has reported so far."""
    return page.csp_log  # type: ignore[attr-defined, no-any-return]


def _signer(browser: Browser, system: System) -> tuple[Callable[..., Page], list[Page]]:
    pages: list[Page] = []

    def open_as(token: str, ready: str, *, viewport: dict[str, int], **context_options: Any) -> Page:
        context = browser.new_context(viewport=viewport, **context_options)
        context.add_init_script(_RECORD_CSP)
        page = context.new_page()
        log: list[str] = []
        page.csp_log = log  # type: ignore[attr-defined]
        page.on("console", lambda m: log.append(m.text) if m.type == "error" and (
            "CSP violation" in m.text or "Content Security Policy" in m.text) else None)
        page.on("pageerror", lambda e: log.append(f"uncaught: {e}"))
        pages.append(page)
        page.goto(f"{system.urls['web']}/app/")
        page.wait_for_selector("#token, .demo-people")
        if page.locator(".demo-people").count():  # the demo's picker: the person whose token it is
            page.click(f"button[data-person='{token.removeprefix('demo-')}']")
        else:
            page.fill("#token", token)
            page.click("button[type=submit]")
        page.wait_for_selector(ready)
        return page

    return open_as, pages


def _no_csp_violations(pages: list[Page]) -> None:
    """No page broke the policy; their contexts are closed (the browser outlives the test)."""
    reported = [line for page in pages for line in csp_violations(page)]
    for page in pages:
        page.context.close()
    assert not reported, "the app broke its Content-Security-Policy:\n" + "\n".join(reported)


@pytest.fixture
def sign_in(browser: Browser, system: System) -> Iterator[Callable[..., Page]]:
    """``sign_in(token, ready_selector, viewport=..., **context_options)``: a new browser context on the
    app, signed in with ``token``, once ``ready_selector`` shows. Every page it opened must end the test
    without a Content-Security-Policy violation or an uncaught script error (the app runs under its
    strict policy)."""
    open_as, pages = _signer(browser, system)
    yield open_as
    _no_csp_violations(pages)


def own_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """The demo municipality of ``est up --demo`` (months of history, the demo tokens), for a fixture."""
    s = start_system(tmp_path_factory.mktemp("demo") / "var", None, demo=True, timeout=300)
    yield s
    s.stop()


@pytest.fixture(scope="package")
def demo_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """The demo, seeded once and shared by the package: its tests read what the demo seeded and find what they
    made themselves by name."""
    yield from own_demo(tmp_path_factory)


@pytest.fixture
def demo_sign_in(browser: Browser, demo_system: System) -> Iterator[Callable[..., Page]]:
    """``sign_in`` on the demo system."""
    open_as, pages = _signer(browser, demo_system)
    yield open_as
    _no_csp_violations(pages)


SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def screenshot_dir(tmp_path: Path) -> Path:
    """Where a test saves its screenshots: the README's folder when asked (``EST_SAVE_SCREENSHOTS=1``), else
    the test's temporary folder."""
    out = SCREENSHOTS if os.environ.get("EST_SAVE_SCREENSHOTS") else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    return out
